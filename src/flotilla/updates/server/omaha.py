"""Omaha v3 as Flatcar's update_engine speaks it: parse requests, render responses. No I/O.

Parsing goes through defusedxml with DTDs forbidden (Omaha never needs one), so entity expansion
and external entities are refused before any processing. Every problem is an :class:`OmahaError`,
which the HTTP adapter turns into a 400. A well-formed request for an app, track or arch the
server cannot serve gets an Omaha error status in a 200 instead, as Nebraska answers it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from flotilla.updates.models import (
    Event,
    InvalidVersionError,
    Package,
    Version,
    is_valid_app_id,
    normalize_app_id,
    track_of,
)

MAX_BODY = 64 * 1024
"""Largest request body accepted, in bytes (Nebraska's limit; real requests are < 2 KiB)."""
MAX_APPS = 16
MAX_EVENTS = 16
_MAX_ATTR = 256
_MAX_ID = 100  # machine ids, versions and tracks: the width of their database columns


class OmahaError(ValueError):
    """A request that is not a valid Omaha v3 request from an update client (HTTP 400)."""


# Statuses as Nebraska 3.0.0 sends them (backend/pkg/omaha/omaha.go), inside an HTTP 200: a
# valid request the server cannot serve is not a transport error. update_engine logs the
# updatecheck's status ("Unknown Omaha response status: error-internal") and tries again later.
STATUS_UNKNOWN_APP_OR_TRACK = "error-failedToRetrieveUpdatePackageInfo"
"""App status for an unknown appid or track (Nebraska's answer to both)."""
STATUS_NO_PACKAGE = "error-noPackageFound"
"""App status when the channel's version has no package for the machine's arch."""
UPDATECHECK_INTERNAL_ERROR = "error-internal"
"""The updatecheck status that goes with either app status."""


@dataclass(frozen=True)
class AppRequest:
    """One ``<app>`` of a request, with everything the server acts on."""

    app_id: str
    raw_app_id: str
    version: str
    track: str
    machine_id: str
    boot_id: str = ""
    machine_alias: str = ""
    oem: str = ""
    oem_version: str = ""
    aleph_version: str = ""
    board: str = ""
    arch: str = "amd64"
    ping: bool = False
    update_check: bool = False
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Request:
    """A parsed ``<request protocol="3.0">``."""

    apps: tuple[AppRequest, ...]
    platform: str = ""
    sp: str = ""
    install_source: str = ""
    updater_version: str = ""


def _attr(el: ET.Element, name: str, default: str = "") -> str:
    value = el.get(name, default)
    if len(value) > _MAX_ATTR:
        raise OmahaError(f"attribute {el.tag}@{name} is longer than {_MAX_ATTR} characters")
    return value


def arch_of(board: str, sp: str) -> str:
    """The payload architecture: from ``board`` (``arm64-usr``), else from ``os@sp``'s suffix."""
    b = board.lower()
    if b.startswith(("arm64", "aarch64")):
        return "arm64"
    if b.startswith(("amd64", "x86_64", "x86-64")):
        return "amd64"
    suffix = sp.rsplit("_", 1)[-1].lower() if "_" in sp else ""
    if suffix in ("aarch64", "arm64"):
        return "arm64"
    return "amd64"


def _int(el: ET.Element, name: str, required: bool) -> int | None:
    raw = el.get(name)
    if raw is None or raw == "":
        if required:
            raise OmahaError(f"<event> lacks {name}")
        return None
    try:
        value = int(raw, 10)
    except ValueError:
        raise OmahaError(f"<event {name}={raw[:20]!r}> is not an integer") from None
    if not -(2**63) <= value < 2**63:
        raise OmahaError(f"<event {name}> is out of range")
    return value


def _event(el: ET.Element) -> Event:
    etype = _int(el, "eventtype", True)
    result = _int(el, "eventresult", True)
    assert etype is not None and result is not None
    prev = el.get("previousversion")
    if prev is not None and len(prev) > _MAX_ATTR:
        raise OmahaError("previousversion is too long")
    return Event(etype, result, _int(el, "errorcode", False), prev)


def _app(el: ET.Element, sp: str) -> AppRequest:
    raw_id = _attr(el, "appid")
    app_id = normalize_app_id(raw_id)
    if not app_id or not is_valid_app_id(app_id):
        raise OmahaError(f"invalid appid {raw_id[:70]!r}")
    version = _attr(el, "version")
    if len(version) > _MAX_ID:
        raise OmahaError(f"app {app_id}: version is longer than {_MAX_ID} characters")
    try:
        Version.parse(version)
    except InvalidVersionError as e:
        raise OmahaError(f"app {app_id}: {e}") from None
    machine_id = _attr(el, "machineid").strip().strip("{}")
    if not machine_id:
        raise OmahaError(f"app {app_id}: machineid is missing")
    if len(machine_id) > _MAX_ID:
        raise OmahaError(f"app {app_id}: machineid is longer than {_MAX_ID} characters")
    if not all(c.isalnum() or c in "-_." for c in machine_id):
        raise OmahaError(f"app {app_id}: machineid has invalid characters")
    track = track_of(_attr(el, "track").strip())
    if not track:
        raise OmahaError(f"app {app_id}: track is missing")
    if len(track) > _MAX_ID:
        raise OmahaError(f"app {app_id}: track is longer than {_MAX_ID} characters")
    events: list[Event] = []
    ping = update_check = False
    for child in el:
        if child.tag == "event":
            events.append(_event(child))
        elif child.tag == "ping":
            ping = True
        elif child.tag == "updatecheck":
            update_check = True
    if len(events) > MAX_EVENTS:
        raise OmahaError(f"more than {MAX_EVENTS} events in one app")
    board = _attr(el, "board")
    return AppRequest(
        app_id=app_id,
        raw_app_id=raw_id,
        version=version,
        track=track,
        machine_id=machine_id,
        boot_id=_attr(el, "bootid").strip("{}"),
        machine_alias=_attr(el, "machinealias"),
        oem=_attr(el, "oem"),
        oem_version=_attr(el, "oemversion"),
        aleph_version=_attr(el, "alephversion"),
        board=board,
        arch=arch_of(board, sp),
        ping=ping,
        update_check=update_check,
        events=tuple(events),
    )


def parse_request(body: bytes) -> Request:
    """Parse and validate a request body; raise :class:`OmahaError` for anything unacceptable."""
    if len(body) > MAX_BODY:
        raise OmahaError(f"request body larger than {MAX_BODY} bytes")
    if not body.strip():
        raise OmahaError("empty request body")
    try:
        root = defused_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise OmahaError(f"forbidden XML construct: {type(e).__name__}") from None
    except ET.ParseError as e:
        raise OmahaError(f"malformed XML: {e}") from None
    except (ValueError, UnicodeError, LookupError) as e:  # odd or unknown declared encodings
        raise OmahaError(f"undecodable XML: {e}") from None
    if root.tag != "request":
        raise OmahaError(f"root element is <{root.tag[:40]}>, not <request>")
    if root.get("protocol") != "3.0":
        raise OmahaError(f"unsupported protocol {root.get('protocol', '')[:20]!r}; need 3.0")
    os_el = root.find("os")
    sp = _attr(os_el, "sp") if os_el is not None else ""
    platform = _attr(os_el, "platform") if os_el is not None else ""
    app_els = root.findall("app")
    if not app_els:
        raise OmahaError("request has no <app>")
    if len(app_els) > MAX_APPS:
        raise OmahaError(f"more than {MAX_APPS} apps in one request")
    apps = tuple(_app(el, sp) for el in app_els)
    return Request(
        apps=apps,
        platform=platform,
        sp=sp,
        install_source=_attr(root, "installsource"),
        updater_version=_attr(root, "updaterversion") or _attr(root, "version"),
    )


# --- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppResponse:
    """What to answer for one app: ``package`` set means an update, else ``noupdate``."""

    raw_app_id: str
    events: int = 0
    ping: bool = False
    update_check: bool = False
    package: Package | None = None
    status: str = "ok"
    update_error: str = ""
    """An updatecheck error status; set, it is sent even without an ``<updatecheck>`` asked."""

    @classmethod
    def unknown(cls, raw_app_id: str) -> AppResponse:
        """The answer for an appid or track this server does not know, as Nebraska's."""
        return cls(
            raw_app_id,
            status=STATUS_UNKNOWN_APP_OR_TRACK,
            update_error=UPDATECHECK_INTERNAL_ERROR,
        )


def _b64_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def render_response(apps: list[AppResponse], elapsed_seconds: int = 0) -> bytes:
    """Render the ``<response>``; the update shape is exactly what update_engine parses."""
    root = ET.Element("response", protocol="3.0", server="flotilla")
    ET.SubElement(root, "daystart", elapsed_seconds=str(elapsed_seconds))
    for a in apps:
        app_el = ET.SubElement(root, "app", appid=a.raw_app_id, status=a.status)
        for _ in range(a.events):
            ET.SubElement(app_el, "event", status="ok")
        if a.ping:
            ET.SubElement(app_el, "ping", status="ok")
        if a.update_error:
            ET.SubElement(app_el, "updatecheck", status=a.update_error)
            continue
        if not a.update_check:
            continue
        pkg = a.package
        if pkg is None:
            ET.SubElement(app_el, "updatecheck", status="noupdate")
            continue
        uc = ET.SubElement(app_el, "updatecheck", status="ok")
        urls = ET.SubElement(uc, "urls")
        ET.SubElement(urls, "url", codebase=pkg.url if pkg.url.endswith("/") else pkg.url + "/")
        manifest = ET.SubElement(uc, "manifest", version=pkg.version)
        packages = ET.SubElement(manifest, "packages")
        ET.SubElement(
            packages,
            "package",
            name=pkg.filename,
            hash=_b64_hex(pkg.sha1 or pkg.sha256),
            hash_sha256=pkg.sha256,
            size=str(pkg.size),
            required="true",
        )
        for extra in pkg.extra_files:
            ET.SubElement(
                packages,
                "package",
                name=extra.name,
                hash=_b64_hex(extra.sha256),
                hash_sha256=extra.sha256,
                size=str(extra.size),
                required="false",
            )
        actions = ET.SubElement(manifest, "actions")
        ET.SubElement(
            actions,
            "action",
            event="postinstall",
            sha256=_b64_hex(pkg.sha256),
            DisablePayloadBackoff="true",
        )
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()
    )
