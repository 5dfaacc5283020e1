"""Fixtures for the charts tests: the real helm client, a throwaway GnuPG key, isolated homes."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from charts_support import GpgKey, Helm
from helm_build import ensure_helm


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """Built once per machine into ~/.cache/flotilla/tools; a no-op afterwards."""
    return ensure_helm()


@pytest.fixture
def helm(helm_binary: Path, tmp_path: Path) -> Helm:
    env = dict(os.environ)
    for kind in ("CACHE", "CONFIG", "DATA"):
        home = tmp_path / f"helm-{kind.lower()}"
        home.mkdir()
        env[f"HELM_{kind}_HOME"] = str(home)
    return Helm(helm_binary, env)


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    name = "Flotilla Charts Test <charts-test@example.com>"

    def gpg(*args: str) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", *args], env=env, check=True, capture_output=True
        ).stdout

    gpg("--passphrase", "", "--quick-gen-key", name, "ed25519", "sign", "never")
    secret = home / "secring.gpg"
    public = home / "pubring.gpg"
    secret.write_bytes(gpg("--export-secret-keys", name))
    public.write_bytes(gpg("--export", name))
    yield GpgKey(name, secret, public, home)
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False, capture_output=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Serve directories over HTTP on loopback; returns a function dir -> base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
