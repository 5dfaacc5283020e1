"""The whole update_engine lifecycle over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Callable
from xml.etree import ElementTree as ET

import pytest

from tests.updates.conftest import MID, NEW, OLD, SHA, Server, apply_doc, fleet, ue_request


def parse(resp: bytes) -> ET.Element:
    root = ET.fromstring(resp)
    assert root.tag == "response"
    assert root.get("protocol") == "3.0"
    return root


def updatecheck(resp: bytes) -> ET.Element:
    uc = parse(resp).find("app/updatecheck")
    assert uc is not None
    return uc


def instance(server: Server, machine: str) -> dict[str, object]:
    r = server.client.get(
        f"/api/v1/apps/e96281a6-d1af-4bde-9a0a-97b76e56dc57/instances/{machine}",
        headers=server.reader(),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_full_lifecycle(db_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(db_url, fleet())
    s = serve(db_url)
    m = "a1b2c3d4e5f60718293a4b5c6d7e8f90"

    # 1. Update check from the old version: an update, in exactly the shape update_engine parses.
    r = s.omaha(ue_request(m, OLD))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    root = parse(r.content)
    app = root.find("app")
    assert app is not None and app.get("status") == "ok"
    assert app.get("appid") == "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
    assert root.find("app/ping").get("status") == "ok"  # type: ignore[union-attr]
    uc = updatecheck(r.content)
    assert uc.get("status") == "ok"
    urls = [u.get("codebase") for u in uc.findall("urls/url")]
    assert urls == [f"https://dl.example.test/amd64-usr/{NEW}/"]
    assert uc.find("manifest").get("version") == NEW  # type: ignore[union-attr]
    pkgs = uc.findall("manifest/packages/package")
    assert len(pkgs) == 1
    assert pkgs[0].get("name") == "flatcar_production_update.gz"
    assert int(pkgs[0].get("size", "0")) > 0
    assert pkgs[0].get("required") == "true"
    assert pkgs[0].get("hash")
    action = uc.find("manifest/actions/action")
    assert action is not None and action.get("event") == "postinstall"
    assert base64.b64decode(action.get("sha256", "")) == bytes.fromhex(SHA)
    assert instance(s, m)["status"] == "UpdateGranted"

    # 2. Download started, finished, applied: event-only requests as update_engine sends them.
    for ev, status in (((13, 1), "Downloading"), ((14, 1), "Downloaded"), ((3, 1), "Installed")):
        r = s.omaha(ue_request(m, OLD, ping=False, check=False, event=ev))
        assert r.status_code == 200
        assert parse(r.content).find("app/event").get("status") == "ok"  # type: ignore[union-attr]
        assert instance(s, m)["status"] == status

    # 3. Waiting for the reboot: pings only.
    r = s.omaha(ue_request(m, OLD, check=False))
    assert r.status_code == 200
    assert instance(s, m)["status"] == "Installed"

    # 4. After the reboot: 3/2 with previousversion in the same request as the next updatecheck.
    r = s.omaha(ue_request(m, NEW, event=(3, 2), previous=OLD))
    assert updatecheck(r.content).get("status") == "noupdate"
    got = instance(s, m)
    assert got["status"] == "Complete"
    assert got["version"] == NEW
    hist = [h["status"] for h in got["history"]]  # type: ignore[attr-defined]
    assert hist == ["UpdateGranted", "Downloading", "Downloaded", "Installed", "Complete"]

    # 5. Later checks: noupdate.
    r = s.omaha(ue_request(m, NEW))
    assert updatecheck(r.content).get("status") == "noupdate"

    kinds = [a["kind"] for a in s.client.get("/api/v1/activity", headers=s.reader()).json()]
    assert "RolloutStarted" in kinds
    assert "RolloutFinished" in kinds


def test_failure_event_sets_error_and_activity(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    m = "f" * 32
    assert updatecheck(s.omaha(ue_request(m)).content).get("status") == "ok"
    s.omaha(ue_request(m, ping=False, check=False, event=(13, 1)))
    r = s.omaha(ue_request(m, ping=False, check=False, event=(3, 0), errorcode=268435490))
    assert r.status_code == 200
    got = instance(s, m)
    assert got["status"] == "Error"
    assert got["last_error_code"] == 268435490
    feed = s.client.get("/api/v1/activity", headers=s.reader()).json()
    assert any(a["kind"] == "InstanceUpdateFailed" and a["machine_id"] == m for a in feed)


def test_800_event_accepted_as_installed(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    m = "e" * 32
    s.omaha(ue_request(m))
    r = s.omaha(ue_request(m, ping=False, check=False, event=(800, 1)))
    assert r.status_code == 200
    assert instance(s, m)["status"] == "Installed"


def test_trailing_slash_and_arm64_and_appid_without_braces(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    body = ue_request("d" * 32, board="arm64-usr", appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57")
    r = s.omaha(body, path="/v1/update")
    uc = updatecheck(r.content)
    assert uc.get("status") == "ok"
    assert uc.find("urls/url").get("codebase") == f"https://dl.example.test/arm64-usr/{NEW}/"  # type: ignore[union-attr]


def test_group_id_works_as_track(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    groups = s.client.get(
        "/api/v1/apps/e96281a6-d1af-4bde-9a0a-97b76e56dc57/groups", headers=s.reader()
    ).json()
    gid = next(g["id"] for g in groups if g["name"] == "stable")
    r = s.omaha(ue_request("c" * 32, track=gid))
    assert updatecheck(r.content).get("status") == "ok"


def test_floors_are_served_one_step_at_a_time(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    apply_doc(sqlite_url, fleet(floors=[MID]))
    s = serve(sqlite_url)
    m = "b" * 32
    uc = updatecheck(s.omaha(ue_request(m, OLD)).content)
    assert uc.find("manifest").get("version") == MID  # type: ignore[union-attr]
    for ev in ((13, 1), (14, 1), (3, 1)):
        s.omaha(ue_request(m, OLD, ping=False, check=False, event=ev))
    uc = updatecheck(s.omaha(ue_request(m, MID, event=(3, 2), previous=OLD)).content)
    assert uc.find("manifest").get("version") == NEW  # type: ignore[union-attr]


def test_blocked_version_is_never_served(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(blocked=[NEW]))
    s = serve(sqlite_url)
    assert updatecheck(s.omaha(ue_request("a" * 32)).content).get("status") == "noupdate"


@pytest.mark.parametrize("version", [NEW, "9999.0.0"])
def test_no_downgrade(sqlite_url: str, serve: Callable[..., Server], version: str) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    assert updatecheck(s.omaha(ue_request("9" * 32, version)).content).get("status") == "noupdate"


def test_missing_arch_package_is_an_error_and_logged_once(
    sqlite_url: str, serve: Callable[..., Server]
) -> None:
    doc = fleet()
    app = doc["applications"][0]
    app["packages"] = [p for p in app["packages"] if p["arch"] == "amd64"]
    apply_doc(sqlite_url, doc)
    s = serve(sqlite_url)
    for _ in range(2):
        r = s.omaha(ue_request("d" * 32, board="arm64-usr"))
        assert updatecheck(r.content).get("status") == "error-internal"  # as Nebraska answers
    feed = s.client.get("/api/v1/activity", headers=s.reader()).json()
    assert [a["kind"] for a in feed].count("PackageNotFound") == 1
