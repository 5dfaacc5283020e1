"""Fixtures for the update server: a throwaway PostgreSQL, uvicorn servers, request builders."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
import yaml

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.api import create_app
from flotilla.updates.server.catalog import apply_fleet
from flotilla.updates.server.fleetspec import parse_fleet
from flotilla.updates.server.schema import make_engine, migrate
from flotilla.updates.server.settings import ServerSettings

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ADMIN = "admin-secret-for-tests"
READER = "read-secret-for-tests"
SHA = "b4" * 32
OLD, MID, NEW = "3510.2.0", "3602.2.0", "3760.2.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL cluster of its own in a temp dir on a loopback port, stopped at the end."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            "PostgreSQL 15 is missing: run scripts/bootstrap.sh (Debian package postgresql)"
        )
    root = Path(tempfile.mkdtemp(prefix="flotilla-pg-"))
    data, log = root / "data", root / "log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'updates.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both backends, for tests that must hold on each."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


def fleet(
    *groups: dict[str, Any],
    channel: str = NEW,
    floors: list[str] | None = None,
    blocked: list[str] | None = None,
) -> dict[str, Any]:
    """A fleet document: Flatcar with three releases on amd64 and arm64, a stable channel."""
    pkgs = [
        {
            "version": v,
            "arch": arch,
            "url": f"https://dl.example.test/{arch}-usr/{v}",
            "filename": "flatcar_production_update.gz",
            "size": 400_000_000 + i,
            "sha256": SHA,
        }
        for i, v in enumerate((OLD, MID, NEW))
        for arch in ("amd64", "arm64")
    ]
    return {
        "applications": [
            {
                "id": FLATCAR_APP_ID,
                "name": "Flatcar",
                "packages": pkgs,
                "channels": [
                    {
                        "name": "stable",
                        "package": channel,
                        "floors": floors or [],
                        "blocked_versions": blocked or [],
                    }
                ],
                "groups": list(groups)
                or [{"name": "stable", "track": "stable", "channel": "stable"}],
            }
        ]
    }


def apply_doc(db: str, doc: dict[str, Any]) -> list[str]:
    """Apply a fleet document straight to a database."""
    engine = make_engine(db, pool_size=1)
    try:
        migrate(engine)
        return apply_fleet(engine, parse_fleet(yaml.safe_dump(doc)))
    finally:
        engine.dispose()


def ue_request(
    machine: str,
    version: str = OLD,
    track: str = "stable",
    *,
    ping: bool = True,
    check: bool = True,
    event: tuple[int, int] | None = None,
    errorcode: int | None = None,
    previous: str | None = None,
    board: str = "amd64-usr",
    appid: str = "{" + FLATCAR_APP_ID + "}",
) -> bytes:
    """A request body shaped exactly like update_engine's (omaha_request_action.cc)."""
    body = ""
    if ping:
        body += '        <ping active="1"></ping>\n'
    if check:
        body += "        <updatecheck></updatecheck>\n"
    if event is not None:
        extra = f' errorcode="{errorcode}"' if errorcode is not None else ""
        extra += f' previousversion="{previous}"' if previous is not None else ""
        body += f'        <event eventtype="{event[0]}" eventresult="{event[1]}"{extra}></event>\n'
    arch = "aarch64" if board.startswith("arm64") else "x86_64"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" \
installsource="scheduler" ismachine="1">
    <os version="Chateau" platform="CoreOS" sp="{version}_{arch}"></os>
    <app appid="{appid}" version="{version}" track="{track}" \
bootid="{{7a1c5e60-3f0b-4d0b-9d4e-{machine[-12:].rjust(12, "0")}}}" oem="qemu" oemversion="0.1.0" \
alephversion="{OLD}" machineid="{machine}" machinealias="" lang="en-US" board="{board}" \
hardware_class="" delta_okay="false" >
{body}    </app>
</request>
""".encode()


@dataclass
class Server:
    """A running server on loopback and a client for it."""

    url: str
    client: httpx.Client
    db_url: str

    def omaha(self, body: bytes, path: str = "/v1/update/") -> httpx.Response:
        return self.client.post(path, content=body, headers={"Content-Type": "text/xml"})

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {READER}"}


class UvicornThread:
    """uvicorn in a background thread on a socket we bound, so the port is known up front."""

    def __init__(self, app: Any, sock: socket.socket | None = None) -> None:
        """``sock``: a socket bound already (when the app must know its own URL beforehand)."""
        if sock is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            ws="none",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            daemon=True,
            name="uvicorn-test",
        )

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start servers on a database; all are stopped after the test."""
    running: list[tuple[UvicornThread, httpx.Client]] = []

    def start(db: str, **kw: Any) -> Server:
        settings = ServerSettings(db_url=db, admin_tokens=(ADMIN,), read_tokens=(READER,), **kw)
        thread = UvicornThread(create_app(settings)).__enter__()
        client = httpx.Client(base_url=f"http://127.0.0.1:{thread.port}", timeout=30)
        running.append((thread, client))
        return Server(f"http://127.0.0.1:{thread.port}", client, db)

    yield start
    for thread, client in running:
        client.close()
        thread.__exit__()


@pytest.fixture(scope="session")
def hydra(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Iterator[Any]:
    """A real OpenID Connect provider (ORY Hydra over the session's PostgreSQL) with our login
    and consent pages; one for the whole run (see oidc_provider.py)."""
    from .oidc_provider import login_app, running_hydra

    workdir = tmp_path_factory.mktemp("hydra")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE hydra")
    dsn = (
        pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
        + "/hydra?sslmode=disable"
    )
    admin: list[str] = []
    with UvicornThread(login_app(lambda: admin[0])) as pages:
        base = f"http://127.0.0.1:{pages.port}"
        with running_hydra(f"{base}/login", f"{base}/consent", workdir, dsn) as h:
            admin.append(h.admin)
            yield h
