"""The client side of Omaha v3, shaped exactly like Flatcar's update_engine. No I/O.

:func:`build_request` renders what ``omaha_request_action.cc`` sends (same attributes, braces on
the app id, ``machinealias``, ping ``active="1"``, and next to every updatecheck the 3/2 event
with ``previousversion``: the version before the reboot, ``""`` afterwards, ``"0.0.0.0"`` on a
machine that never updated; or 3/0 with error 44 after a rollback); :func:`parse_response`
reads an answer the way ``ParseResponse`` does: the first package, the postinstall sha256
(required), ``PollInterval``, and ``noupdate``/``ok`` only.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from flotilla.updates.models import FLATCAR_APP_ID

UPDATER_VERSION = "update_engine-0.4.10"

# Event types and results (omaha_request_action.h: OmahaEvent).
EVENT_UPDATE_COMPLETE = 3
EVENT_DOWNLOAD_STARTED = 13
EVENT_DOWNLOAD_FINISHED = 14
EVENT_INSTALLED = 800
"""Not update_engine's: the CoreRoller/Nebraska "installed, waiting for the reboot" event, sent
after 3/1 so that Nebraska moves the machine to Installed (it ignores 3/1 for Flatcar)."""
RESULT_ERROR = 0
RESULT_SUCCESS = 1
RESULT_SUCCESS_REBOOT = 2

# Error codes (action_processor.h: ActionExitCode); HTTP failures are 2000 + status.
ERROR_GENERIC = 1
ERROR_DOWNLOAD_TRANSFER = 9
ERROR_PAYLOAD_HASH_MISMATCH = 10
ERROR_PAYLOAD_SIZE_MISMATCH = 11
ERROR_DOWNLOAD_WRITE = 20
ERROR_OMAHA_RESPONSE_INVALID = 34
ERROR_ROLLBACK = 44
"""kActionCodeRollbackError: still running the version an update was applied from."""
PREVIOUS_INITIAL = "0.0.0.0"
"""``previousversion`` when update_engine has no previous-version pref yet ("initial")."""
ERROR_HTTP_BASE = 2000


class ResponseError(ValueError):
    """An answer update_engine would reject (its error 34, OmahaResponseInvalid)."""


@dataclass(frozen=True)
class ClientEvent:
    """An ``<event>`` to send."""

    type: int
    result: int
    error_code: int | None = None
    previous_version: str | None = None


@dataclass(frozen=True)
class Identity:
    """Who the machine is: what update.conf, /etc/machine-id and the release files say."""

    machine_id: str
    version: str
    track: str = "stable"
    app_id: str = FLATCAR_APP_ID
    boot_id: str = ""
    machine_alias: str = ""
    oem: str = ""
    oem_version: str = ""
    aleph_version: str = ""
    board: str = "amd64-usr"


@dataclass(frozen=True)
class Update:
    """An offered update: where to fetch it and how to check it."""

    version: str
    urls: tuple[str, ...]
    name: str
    size: int
    sha256_hex: str
    """From ``actions/action[@event="postinstall"]@sha256`` (base64 on the wire)."""

    def payload_urls(self) -> tuple[str, ...]:
        """Each codebase with a ``/`` appended when missing, then the package name."""
        return tuple((u if u.endswith("/") else u + "/") + self.name for u in self.urls)


@dataclass(frozen=True)
class Answer:
    """The parsed response for our app: an update or not, and an optional poll interval."""

    update: Update | None
    poll_interval: int | None = None
    """Seconds, from ``updatecheck@PollInterval``; update_engine honours it."""


def update_check_event(version: str, previous: str | None) -> ClientEvent:
    """The event update_engine puts next to every updatecheck (``GetAppBody``).

    3/2 with the previous-version pref ``previous`` (None: already reported, sent as ``""``),
    or 3/0 with error 44 when the machine still runs that version (a rollback).
    """
    prev = previous or ""
    if prev and prev == version:
        return ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_ERROR, ERROR_ROLLBACK)
    return ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_SUCCESS_REBOOT, previous_version=prev)


def _arch(board: str) -> str:
    return "aarch64" if board.startswith("arm64") else "x86_64"


def _enc(value: str) -> str:
    """Attribute text as update_engine's XmlEncode leaves it, plus ``"`` (kept well-formed)."""
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def build_request(
    ident: Identity,
    *,
    update_check: bool = True,
    events: tuple[ClientEvent, ...] = (),
    interactive: bool = False,
) -> bytes:
    """The request body update_engine would send for this machine, byte for byte.

    Same text as ``GetRequestXml``/``GetAppXml``/``GetAppBody``: attribute order, indentation,
    explicit closing tags. A ping goes with every updatecheck and alone when there is neither an
    updatecheck nor an event (the ping-only round while a reboot waits); event reports are bare.
    """
    body = ""
    if update_check or not events:
        body += '        <ping active="1"></ping>\n'
    if update_check:
        body += "        <updatecheck></updatecheck>\n"
    for ev in events:
        attrs = f'eventtype="{ev.type}" eventresult="{ev.result}"'
        if ev.error_code is not None:
            attrs += f' errorcode="{ev.error_code}"'
        if ev.previous_version is not None:
            attrs += f' previousversion="{_enc(ev.previous_version)}"'
        body += f"        <event {attrs}></event>\n"
    bootid = "{" + ident.boot_id.strip("{}") + "}" if ident.boot_id else ""
    app = (
        f'    <app appid="{_enc("{" + ident.app_id.strip("{}") + "}")}" '
        f'version="{_enc(ident.version)}" track="{_enc(ident.track)}" bootid="{_enc(bootid)}" '
        f'oem="{_enc(ident.oem)}" oemversion="{_enc(ident.oem_version)}" '
        f'alephversion="{_enc(ident.aleph_version or ident.version)}" '
        f'machineid="{_enc(ident.machine_id)}" machinealias="{_enc(ident.machine_alias)}" '
        f'lang="en-US" board="{_enc(ident.board)}" hardware_class="" delta_okay="false" >\n'
        f"{body}    </app>\n"
    )
    source = "ondemandupdate" if interactive else "scheduler"
    sp = f"{ident.version}_{_arch(ident.board)}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<request protocol="3.0" version="{UPDATER_VERSION}" '
        f'updaterversion="{UPDATER_VERSION}" installsource="{source}" ismachine="1">\n'
        f'    <os version="Chateau" platform="CoreOS" sp="{_enc(sp)}"></os>\n'
        f"{app}</request>\n"
    ).encode()


def _b64_sha256_to_hex(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ResponseError("postinstall sha256 is not base64") from None
    if len(raw) != 32:
        raise ResponseError("postinstall sha256 is not 32 bytes")
    return raw.hex()


def parse_response(body: bytes, app_id: str = FLATCAR_APP_ID) -> Answer:
    """Read the answer for ``app_id``; raise :class:`ResponseError` where update_engine would."""
    try:
        root = defused_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ET.ParseError, ValueError) as e:
        raise ResponseError(f"unparsable response: {e}") from None
    if root.tag != "response":
        raise ResponseError(f"root element is <{root.tag[:40]}>")
    want = app_id.strip("{}").lower()
    app = next(
        (a for a in root.findall("app") if a.get("appid", "").strip("{}").lower() == want), None
    )
    if app is None:
        raise ResponseError("no <app> for our app id in the response")
    uc = app.find("updatecheck")
    if uc is None:
        raise ResponseError("no <updatecheck> in the response")
    poll: int | None = None
    raw_poll = uc.get("PollInterval")
    if raw_poll and raw_poll.isdigit() and int(raw_poll) > 0:
        poll = int(raw_poll)
    status = uc.get("status", "")
    if status == "noupdate":
        return Answer(None, poll)
    if status != "ok":
        raise ResponseError(f"updatecheck status {status[:40]!r}")
    manifest = uc.find("manifest")
    if manifest is None or not manifest.get("version"):
        raise ResponseError("no manifest version")
    urls = tuple(u.get("codebase", "") for u in uc.findall("urls/url") if u.get("codebase"))
    if not urls:
        raise ResponseError("no url codebase")
    pkg = manifest.find("packages/package")
    if pkg is None or not pkg.get("name"):
        raise ResponseError("no package")
    name = pkg.get("name", "")
    if "/" in name or name in (".", ".."):
        raise ResponseError("package name must be a plain file name")
    try:
        size = int(pkg.get("size", "0"))
    except ValueError:
        raise ResponseError("package size is not an integer") from None
    if size <= 0:
        raise ResponseError("package size must be positive")
    post = next(
        (a for a in manifest.findall("actions/action") if a.get("event") == "postinstall"), None
    )
    if post is None or not post.get("sha256"):
        raise ResponseError("no postinstall sha256")
    return Answer(
        Update(
            version=manifest.get("version", ""),
            urls=urls,
            name=name,
            size=size,
            sha256_hex=_b64_sha256_to_hex(post.get("sha256", "")),
        ),
        poll,
    )
