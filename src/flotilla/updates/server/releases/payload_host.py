"""Payload files this server downloads, verifies and serves itself (``--host-packages DIR``).

Nebraska's ``-host-flatcar-packages`` in Flotilla's form: the syncer streams each payload into
``DIR/incoming`` while hashing it, and only a file whose size and sha256 (and sha1, when upstream
gives one) match is moved into ``DIR/files/ARCH/VERSION/NAME``. Only ``DIR/files`` is served, by
Starlette's ``StaticFiles`` (streamed, ``Range``, ``ETag``/``If-None-Match``, no path escapes), so
a partial or corrupt download is never offered.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import httpx
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

PACKAGES_PATH = "/packages"
_SEGMENT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")
_CHUNK = 1 << 20


class PayloadError(ValueError):
    """A payload that could not be fetched or does not match what upstream announced."""


class PayloadHost:
    """Verified payloads under ``root/files``, published at ``public_url`` + ``/packages/``."""

    def __init__(self, root: Path, public_url: str) -> None:
        if not public_url.startswith(("http://", "https://")):
            raise PayloadError(
                f"--public-url {public_url!r} must be the http(s) URL machines reach this server "
                "at (hosted payload URLs are built from it)"
            )
        self.root = root
        self.files = root / "files"
        self.incoming = root / "incoming"
        self.public_url = public_url.rstrip("/")

    def prepare(self) -> None:
        """Create the directories (at start-up, so a read-only DIR fails early and clearly)."""
        self.files.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)

    def base_url(self, arch: str, version: str) -> str:
        """The ``codebase`` machines get for a hosted version."""
        return f"{self.public_url}{PACKAGES_PATH}/{_safe(arch)}/{_safe(version)}/"

    def path(self, arch: str, version: str, name: str) -> Path:
        return self.files / _safe(arch) / _safe(version) / _safe(name)

    def fetch(
        self,
        client: httpx.Client,
        url: str,
        dest: Path,
        size: int,
        sha256_hex: str,
        sha1_hex: str = "",
    ) -> bool:
        """Make ``dest`` hold the verified file from ``url``; False when it already did."""
        if dest.is_file() and _matches(dest, size, sha256_hex, sha1_hex):
            return False
        self.prepare()
        part = self.incoming / f"{dest.name}.{uuid.uuid4().hex}.part"
        try:
            got256, got1, written = hashlib.sha256(), hashlib.sha1(), 0
            with client.stream("GET", url) as response, part.open("wb") as out:
                if response.status_code != 200:
                    raise PayloadError(f"GET {url}: HTTP {response.status_code}")
                for chunk in response.iter_bytes(_CHUNK):
                    written += len(chunk)
                    if written > size:
                        raise PayloadError(f"{url} is larger than the announced {size} bytes")
                    got256.update(chunk)
                    got1.update(chunk)
                    out.write(chunk)
            if written != size:
                raise PayloadError(f"{url}: got {written} bytes, upstream announced {size}")
            if got256.hexdigest() != sha256_hex:
                raise PayloadError(f"{url}: sha256 {got256.hexdigest()} != announced {sha256_hex}")
            if sha1_hex and got1.hexdigest() != sha1_hex:
                raise PayloadError(f"{url}: sha1 {got1.hexdigest()} != announced {sha1_hex}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, dest)
            return True
        except httpx.HTTPError as e:
            raise PayloadError(f"GET {url}: {e}") from None
        finally:
            part.unlink(missing_ok=True)

    def routes(self) -> list[BaseRoute]:
        """``GET /packages/...``: the verified files only."""
        self.prepare()
        return [Mount(PACKAGES_PATH, StaticFiles(directory=self.files), name="packages")]


def _safe(segment: str) -> str:
    if not _SEGMENT.fullmatch(segment):
        raise PayloadError(f"{segment[:60]!r} is not a safe path segment")
    return segment


def _matches(path: Path, size: int, sha256_hex: str, sha1_hex: str) -> bool:
    if path.stat().st_size != size:
        return False
    got256, got1 = hashlib.sha256(), hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            got256.update(chunk)
            got1.update(chunk)
    return got256.hexdigest() == sha256_hex and (not sha1_hex or got1.hexdigest() == sha1_hex)
