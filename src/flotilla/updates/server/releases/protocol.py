"""What the syncer says to an upstream Omaha server and how it reads the answer. No I/O.

The request is the one Nebraska's syncer sends (``backend/pkg/syncer/syncer.go``): update_engine's
shape with ``installsource="scheduler"``, the channel as the track, the version the channel
serves here as the app version (so upstream offers only something newer), and a machine id that
is stable per upstream, channel and architecture, so the upstream counts one machine for each,
not one per poll. The answer is read in full: every package of the manifest (the first is the
payload, the rest extra files), sha1 from ``package@hash``, sha256 from the postinstall action.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from flotilla.updates.models import ExtraFile

SYNC_UPDATER = "CoreOSUpdateEngine-0.1.0.0"
"""The updater version Nebraska's syncer sends; Nebraska recognises syncers by it."""

FIRST_VERSION = "0.0.0"
"""The version a channel with no package here claims, so that upstream offers its current one."""

MAX_ANSWER = 1 << 20
"""Bytes of an upstream answer we read at most; a Flatcar answer is about 2 KiB."""

_BOARDS = {"amd64": ("amd64-usr", "x86_64"), "arm64": ("arm64-usr", "aarch64")}
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")
_NAMESPACE = uuid.UUID("8f0b5c1e-3c1f-4d8e-9a57-5d6a7c2f1b90")


class SyncError(ValueError):
    """An upstream answer the syncer cannot import (it is logged, and the next poll tries again)."""


@dataclass(frozen=True)
class UpstreamRelease:
    """One version as upstream offers it for one channel and architecture."""

    version: str
    codebase: str
    """Base URL of the files (ends with ``/``)."""
    name: str
    size: int
    sha256_hex: str
    sha1_hex: str = ""
    extra_files: tuple[ExtraFile, ...] = ()

    @property
    def url(self) -> str:
        """Where the main payload is downloaded from."""
        return self.codebase + self.name


def supported_arches() -> tuple[str, ...]:
    """The architectures the syncer can ask for."""
    return tuple(_BOARDS)


def sync_machine_id(upstream: str, channel: str, arch: str) -> str:
    """A machine id that stays the same across polls, restarts and replicas of this server."""
    return "{" + str(uuid.uuid5(_NAMESPACE, f"{upstream}|{channel}|{arch}")) + "}"


def sync_request(app_id: str, channel: str, arch: str, version: str, machine_id: str) -> bytes:
    """The update check Nebraska's syncer would send for ``channel`` on ``arch``."""
    if arch not in _BOARDS:
        raise SyncError(f"unsupported architecture {arch!r}; use one of {', '.join(_BOARDS)}")
    board, machine = _BOARDS[arch]
    root = ET.Element(
        "request",
        protocol="3.0",
        version=SYNC_UPDATER,
        updaterversion=SYNC_UPDATER,
        installsource="scheduler",
        ismachine="1",
    )
    ET.SubElement(root, "os", version="Chateau", platform="CoreOS", sp=f"{version}_{machine}")
    app = ET.SubElement(
        root,
        "app",
        appid="{" + app_id.strip("{}") + "}",
        version=version,
        track=channel,
        bootid=machine_id,
        machineid=machine_id,
        lang="en-US",
        board=board,
        hardware_class="",
        delta_okay="false",
    )
    ET.SubElement(app, "updatecheck")
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()
    )


def _digest(value: str, size: int, what: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SyncError(f"{what} is not base64") from None
    if len(raw) != size:
        raise SyncError(f"{what} is {len(raw)} bytes, not {size}")
    return raw.hex()


def _hex256(value: str, what: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise SyncError(f"{what} is not 64 hex digits")
    return value.lower()


def _size(el: ET.Element, what: str) -> int:
    raw = el.get("size", "")
    if not raw.isdigit() or not 0 < int(raw) < 1 << 40:
        raise SyncError(f"{what} has no valid size ({raw[:20]!r})")
    return int(raw)


def _name(el: ET.Element, what: str) -> str:
    name = el.get("name", "")
    if not _NAME.fullmatch(name):
        raise SyncError(f"{what} name {name[:60]!r} is not a plain file name")
    return name


def parse_offer(body: bytes, app_id: str) -> UpstreamRelease | None:
    """The release upstream offers for ``app_id``, or None for ``noupdate``."""
    if len(body) > MAX_ANSWER:
        raise SyncError(f"upstream answer larger than {MAX_ANSWER} bytes")
    try:
        root = defused_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ET.ParseError, ValueError) as e:
        raise SyncError(f"unparsable upstream answer: {e}") from None
    want = app_id.strip("{}").lower()
    app = next(
        (a for a in root.findall("app") if a.get("appid", "").strip("{}").lower() == want), None
    )
    if app is None:
        raise SyncError("upstream answer has no <app> for our application")
    if app.get("status", "ok") != "ok":
        raise SyncError(f"upstream refused: app status {app.get('status', '')[:80]!r}")
    check = app.find("updatecheck")
    if check is None:
        raise SyncError("upstream answer has no <updatecheck>")
    status = check.get("status", "")
    if status == "noupdate":
        return None
    if status != "ok":
        raise SyncError(f"upstream updatecheck status {status[:80]!r}")
    manifest = check.find("manifest")
    version = manifest.get("version", "") if manifest is not None else ""
    if manifest is None or not _VERSION.fullmatch(version):
        raise SyncError(f"upstream manifest version {version[:40]!r} is not a version")
    codebase = next((u.get("codebase", "") for u in check.findall("urls/url")), "")
    if not codebase.startswith(("http://", "https://")):
        raise SyncError(f"upstream codebase {codebase[:80]!r} is not an http(s) URL")
    files = manifest.findall("packages/package")
    if not files:
        raise SyncError(f"upstream manifest {version} has no package")
    main = files[0]
    action = next(
        (a for a in manifest.findall("actions/action") if a.get("event") == "postinstall"), None
    )
    if action is None or not action.get("sha256"):
        raise SyncError(f"upstream manifest {version} has no postinstall sha256")
    sha256 = _digest(action.get("sha256", ""), 32, "postinstall sha256")
    if main.get("hash_sha256") and _hex256(main.get("hash_sha256", ""), "hash_sha256") != sha256:
        raise SyncError(f"upstream manifest {version}: hash_sha256 and postinstall sha256 differ")
    raw_sha1 = main.get("hash", "")
    sha1 = _digest(raw_sha1, 20, "package hash") if len(raw_sha1) == 28 else ""
    extras = tuple(
        ExtraFile(
            name=_name(f, "extra file"),
            size=_size(f, "extra file"),
            sha256=_hex256(f.get("hash_sha256", ""), "extra file hash_sha256"),
        )
        for f in files[1:]
    )
    return UpstreamRelease(
        version=version,
        codebase=codebase if codebase.endswith("/") else codebase + "/",
        name=_name(main, "package"),
        size=_size(main, "package"),
        sha256_hex=sha256,
        sha1_hex=sha1,
        extra_files=extras,
    )
