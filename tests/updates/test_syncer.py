"""The syncer: releases imported from an upstream Flotilla over real HTTP, hosted payloads served
with Range to the real agent, and every way an upstream can be wrong."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.node.agent import Agent, AgentSettings
from flotilla.updates.node.omaha_client import Identity
from flotilla.updates.server import catalog
from flotilla.updates.server.omaha import parse_request
from flotilla.updates.server.releases.protocol import (
    SyncError,
    parse_offer,
    sync_machine_id,
    sync_request,
)
from flotilla.updates.server.releases.syncer import Syncer, SyncSettings
from flotilla.updates.server.schema import make_engine, migrate

from .conftest import ADMIN, MID, NEW, OLD, Server, UvicornThread, apply_doc, fleet, ue_request

APP = FLATCAR_APP_ID
VERSIONS = (OLD, MID, NEW)


@pytest.fixture
def payloads(tmp_path: Path) -> Iterator[tuple[str, dict[tuple[str, str], bytes]]]:
    """A plain web server with one distinct payload per version and arch: (base URL, files)."""
    root = tmp_path / "upstream-files"
    files: dict[tuple[str, str], bytes] = {}
    for i, version in enumerate(VERSIONS):
        for arch in ("amd64", "arm64"):
            body = f"{version}-{arch}-".encode() * (2000 + i)
            path = root / f"{arch}-usr" / version / "flatcar_production_update.gz"
            path.parent.mkdir(parents=True)
            path.write_bytes(body)
            files[(version, arch)] = body
    with UvicornThread(Starlette(routes=[Mount("/", StaticFiles(directory=root))])) as t:
        yield f"http://127.0.0.1:{t.port}", files


def _upstream_doc(base: str, files: dict[tuple[str, str], bytes], channel: str) -> dict[str, Any]:
    doc = fleet(channel=channel)
    app = doc["applications"][0]
    for p in app["packages"]:
        body = files[(p["version"], p["arch"])]
        p["url"] = f"{base}/{p['arch']}-usr/{p['version']}"
        p["size"] = len(body)
        p["sha256"] = hashlib.sha256(body).hexdigest()
        p["sha1"] = hashlib.sha1(body).hexdigest()
    return doc


def _engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'downstream.db'}", pool_size=1)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def downstream(tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(tmp_path)


def _move_upstream(server: Server, version: str) -> None:
    r = server.client.put(
        f"/api/v1/apps/{APP}/channels/stable",
        json={"package": version},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 200, r.text


def _synced(engine: Engine) -> list[str]:
    return [a["message"] for a in catalog.list_activity(engine) if a["kind"] == "PackageSynced"]


def test_three_releases_are_imported_once_each(
    serve: Callable[..., Server],
    sqlite_url: str,
    downstream: Engine,
    payloads: tuple[str, dict[tuple[str, str], bytes]],
) -> None:
    base, files = payloads
    apply_doc(sqlite_url, _upstream_doc(base, files, OLD))
    upstream = serve(sqlite_url, config_ttl=0)
    syncer = Syncer(downstream, SyncSettings(upstream.url + "/v1/update/", channels=("stable",)))
    try:
        for version in VERSIONS:
            if version != OLD:
                _move_upstream(upstream, version)
            changes = syncer.run_once()
            assert f"created package {APP} {version} amd64" in changes
            assert f"created package {APP} {version} arm64" in changes
            assert catalog.channel_version(downstream, APP, "stable") == version
            assert syncer.run_once() == [], "a second poll must change nothing"
            assert not syncer.errors
        stored = {(p["version"], p["arch"]): p for p in catalog.list_packages(downstream, APP)}
        assert set(stored) == set(files)
        got = stored[(MID, "arm64")]
        assert got["url"] == f"{base}/arm64-usr/{MID}/"
        assert got["size"] == len(files[(MID, "arm64")])
        assert got["sha256"] == hashlib.sha256(files[(MID, "arm64")]).hexdigest()
        assert got["sha1"] == hashlib.sha1(files[(MID, "arm64")]).hexdigest()
        assert len(_synced(downstream)) == 6
        moves = [
            a for a in catalog.list_activity(downstream) if a["kind"] == "ChannelPackageUpdated"
        ]
        assert len(moves) == 3
        # The upstream saw one machine per channel and arch, not one per poll.
        ids = {
            i["machine_id"] for i in catalog.list_instances(upstream_engine(sqlite_url), limit=100)
        }
        assert ids == {
            sync_machine_id(upstream.url + "/v1/update/", "stable", a).strip("{}")
            for a in ("amd64", "arm64")
        }
    finally:
        syncer.close()


def upstream_engine(url: str) -> Engine:
    return make_engine(url, pool_size=1)


def test_hosted_payloads_are_verified_then_served_with_range_to_the_agent(
    serve: Callable[..., Server],
    sqlite_url: str,
    tmp_path: Path,
    payloads: tuple[str, dict[tuple[str, str], bytes]],
) -> None:
    base, files = payloads
    apply_doc(sqlite_url, _upstream_doc(base, files, MID))
    upstream = serve(sqlite_url, config_ttl=0)
    down_db = f"sqlite:///{tmp_path / 'down.db'}"
    apply_doc(
        down_db,
        {
            "applications": [
                {
                    "id": APP,
                    "name": "Flatcar",
                    "groups": [{"name": "stable", "track": "stable", "channel": "stable"}],
                }
            ]
        },
    )
    host_dir = tmp_path / "hosted"
    # The server's own URL is only known once it listens; hosted URLs are built per request path.
    down = serve(
        down_db,
        config_ttl=0,
        sync=SyncSettings(
            upstream.url + "/v1/update/",
            channels=("stable",),
            arches=("amd64",),
            interval=timedelta(seconds=0.3),
            host_dir=host_dir,
            public_url="http://placeholder.invalid",
        ),
    )
    engine = make_engine(down_db, pool_size=1)
    deadline = time.monotonic() + 30
    while catalog.channel_version(engine, APP, "stable") != MID:
        assert time.monotonic() < deadline, "the server's syncer never imported the release"
        time.sleep(0.1)
    body = files[(MID, "amd64")]
    hosted = host_dir / "files" / "amd64" / MID / "flatcar_production_update.gz"
    assert hosted.read_bytes() == body
    assert not any((host_dir / "incoming").iterdir())
    [pkg] = [p for p in catalog.list_packages(engine, APP) if p["version"] == MID]
    assert pkg["url"] == f"http://placeholder.invalid/packages/amd64/{MID}/"
    # Served by the server itself: whole, by range, and with validators.
    path = f"/packages/amd64/{MID}/flatcar_production_update.gz"
    whole = down.client.get(path)
    assert whole.status_code == 200 and whole.content == body
    part = down.client.get(path, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    etag = whole.headers["etag"]
    assert down.client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert down.client.get("/packages/amd64/../../down.db").status_code == 404
    assert down.client.get("/packages/incoming/x").status_code == 404
    # The real agent, pointed at the server, downloads the hosted file and verifies it.
    catalog.add_package(
        engine,
        catalog_package(pkg, url=down.url + f"/packages/amd64/{MID}/"),
    )
    agent = Agent(
        AgentSettings(
            server=down.url + "/v1/update/",
            state_dir=tmp_path / "agent",
            slot_a=tmp_path / "a.img",
            slot_b=tmp_path / "b.img",
            identity=Identity(machine_id="hosted-1", version=OLD),
            boot_id_file=tmp_path / "boot",
        )
    )
    asyncio.run(agent.check())
    assert agent.reboot_needed
    assert (tmp_path / "b.img").read_bytes()[: len(body)] == body
    engine.dispose()


def catalog_package(row: dict[str, Any], url: str) -> Any:
    from flotilla.updates.models import Package

    return Package(
        APP,
        row["version"],
        row["arch"],
        url,
        row["filename"],
        row["size"],
        row["sha256"],
        row["sha1"],
    )


def test_a_payload_that_does_not_match_is_never_offered(
    serve: Callable[..., Server],
    sqlite_url: str,
    downstream: Engine,
    tmp_path: Path,
    payloads: tuple[str, dict[tuple[str, str], bytes]],
) -> None:
    base, files = payloads
    doc = _upstream_doc(base, files, OLD)
    for p in doc["applications"][0]["packages"]:
        p["sha256"] = "ab" * 32  # upstream announces a hash the file does not have
        p["sha1"] = ""
    apply_doc(sqlite_url, doc)
    upstream = serve(sqlite_url)
    settings = SyncSettings(
        upstream.url + "/v1/update/",
        channels=("stable",),
        host_dir=tmp_path / "hosted",
        public_url="http://me.test",
    )
    syncer = Syncer(downstream, settings)
    try:
        assert syncer.run_once() == []
        assert "sha256" in syncer.errors["stable"]
        assert not _has_app(downstream), "nothing may be imported"
        assert catalog.channel_version(downstream, APP, "stable") is None
        assert not list((tmp_path / "hosted" / "files").rglob("*.gz"))
        assert not list((tmp_path / "hosted" / "incoming").iterdir())
    finally:
        syncer.close()


def _has_app(engine: Engine) -> bool:
    return any(a["id"] == APP for a in catalog.list_apps(engine))


def _answer(body: bytes, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, content=body)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, b"boom", "HTTP 500"),
        (200, b"<html>not omaha</html>", "no <app>"),
        (200, b"\x00\xff garbage", "unparsable"),
        (200, b'<!DOCTYPE r [<!ENTITY a "aaaa">]><response/>', "unparsable"),
    ],
    ids=["5xx", "html", "garbage", "entities"],
)
def test_upstream_errors_cost_only_that_poll(
    downstream: Engine, status: int, body: bytes, error: str
) -> None:
    syncer = Syncer(
        downstream,
        SyncSettings("http://upstream.test/v1/update/", channels=("stable", "beta")),
        client=httpx.Client(transport=httpx.MockTransport(_answer(body, status))),
    )
    assert syncer.run_once() == []
    assert set(syncer.errors) == {"stable", "beta"}
    assert error in syncer.errors["stable"]


def test_a_dead_upstream_is_an_error_not_a_crash(downstream: Engine) -> None:
    syncer = Syncer(
        downstream,
        SyncSettings("http://127.0.0.1:9/v1/update/", channels=("stable",)),
        client=httpx.Client(timeout=2),
    )
    assert syncer.run_once() == [] and "stable" in syncer.errors


def test_a_blocked_version_is_imported_but_never_served(
    serve: Callable[..., Server],
    sqlite_url: str,
    downstream: Engine,
    payloads: tuple[str, dict[tuple[str, str], bytes]],
) -> None:
    base, files = payloads
    apply_doc(sqlite_url, _upstream_doc(base, files, OLD))
    upstream = serve(sqlite_url)
    catalog.import_release(downstream, APP, "stable", "0.0.0", [], "test")
    with downstream.begin() as conn:
        from flotilla.updates.server.schema import channels

        conn.execute(channels.update().values(blocked_versions=[OLD]))
    syncer = Syncer(downstream, SyncSettings(upstream.url + "/v1/update/", channels=("stable",)))
    try:
        syncer.run_once()
        assert catalog.channel_version(downstream, APP, "stable") == "0.0.0"
        assert {p["version"] for p in catalog.list_packages(downstream, APP)} == {OLD}
    finally:
        syncer.close()


# --- the wire, without I/O -----------------------------------------------------------------------


def test_the_request_is_update_engine_shaped_and_our_server_reads_it() -> None:
    mid = sync_machine_id("https://u.test/v1/update/", "beta", "arm64")
    assert mid == sync_machine_id("https://u.test/v1/update/", "beta", "arm64")
    assert mid != sync_machine_id("https://u.test/v1/update/", "beta", "amd64")
    body = sync_request(APP, "beta", "arm64", OLD, mid)
    req = parse_request(body)
    [app] = req.apps
    assert (app.track, app.version, app.arch) == ("beta", OLD, "arm64")
    assert app.machine_id == mid.strip("{}")
    assert b'installsource="scheduler"' in body and b"<updatecheck" in body
    with pytest.raises(SyncError, match="unsupported architecture"):
        sync_request(APP, "beta", "riscv", OLD, mid)


def _offer_xml(**over: str) -> bytes:
    sha = hashlib.sha256(b"x").digest()
    a = {
        "status": "ok",
        "codebase": "https://dl.test/amd64-usr/3815.2.0/",
        "version": "3815.2.0",
        "name": "flatcar_production_update.gz",
        "size": "1234",
        "sha256": base64.b64encode(sha).decode(),
        "hash": base64.b64encode(b"\x01" * 20).decode(),
    } | over
    return f"""<response protocol="3.0"><app appid="{{{APP}}}" status="ok">
<updatecheck status="{a["status"]}"><urls><url codebase="{a["codebase"]}"/></urls>
<manifest version="{a["version"]}"><packages>
<package name="{a["name"]}" hash="{a["hash"]}" size="{a["size"]}" required="false"/>
<package name="oem-azure.gz" hash_sha256="{"cd" * 32}" size="99" required="false"/>
</packages><actions><action event="postinstall" sha256="{a["sha256"]}"/></actions>
</manifest></updatecheck></app></response>""".encode()


def test_an_offer_is_read_in_full() -> None:
    offer = parse_offer(_offer_xml(), APP)
    assert offer is not None
    assert offer.version == "3815.2.0" and offer.size == 1234
    assert offer.sha256_hex == hashlib.sha256(b"x").hexdigest()
    assert offer.sha1_hex == "01" * 20
    assert [(e.name, e.size, e.sha256) for e in offer.extra_files] == [
        ("oem-azure.gz", 99, "cd" * 32)
    ]
    assert parse_offer(_offer_xml(status="noupdate"), APP) is None


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"name": "../../etc/passwd"}, "plain file name"),
        ({"name": ".hidden"}, "plain file name"),
        ({"size": "-1"}, "size"),
        ({"size": "99999999999999999999"}, "size"),
        ({"sha256": "not base64!"}, "base64"),
        ({"sha256": base64.b64encode(b"short").decode()}, "not 32"),
        ({"version": "../1"}, "not a version"),
        ({"codebase": "file:///etc/"}, "http"),
        ({"status": "error-unknownApplication"}, "status"),
    ],
)
def test_a_hostile_offer_is_refused(over: dict[str, str], error: str) -> None:
    with pytest.raises(SyncError, match=error):
        parse_offer(_offer_xml(**over), APP)


def test_an_oversized_answer_is_refused() -> None:
    with pytest.raises(SyncError, match="larger"):
        parse_offer(b"<response>" + b" " * (2 << 20) + b"</response>", APP)


# --- machines from before tracks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "track"),
    [
        ("9a2deb70-37be-4026-853f-bfdd6b347bbe", "stable"),
        ("{3FE10490-DD73-4B49-B72A-28AC19ACFCDC}", "beta"),
        ("11a585f6-9418-4df0-8863-78b2fd3240f8", "stable"),
        ("72834a2b-ad86-4d6d-b498-e08a19ebe54e", "edge"),
    ],
)
def test_legacy_group_uuids_reach_their_track(
    serve: Callable[..., Server], sqlite_url: str, group: str, track: str
) -> None:
    apply_doc(sqlite_url, fleet({"name": track, "track": track, "channel": "stable"}))
    server = serve(sqlite_url)
    r = server.omaha(ue_request("legacy-1", OLD, track=group))
    assert r.status_code == 200, r.text
    assert f'version="{NEW}"' in r.text, "the machine must be served its track's channel"
    [row] = catalog.list_instances(upstream_engine(sqlite_url))
    assert row["group"] == track
