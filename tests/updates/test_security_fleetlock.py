"""FleetLock can't be abused: no groups from clients, holders release their own, group tokens."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from flotilla.updates.reboots.fleetlock import presented_token
from flotilla.updates.server import fleetlock_store
from flotilla.updates.server.api import create_app
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, apply_doc
from tests.updates.test_dashboard import login

HDR = {"fleet-lock-protocol": "true"}
TOKEN = "workers-reboot-token-0123"


def body(node: str, group: str = "workers") -> dict[str, Any]:
    return {"client_params": {"id": node, "group": group}}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    apply_doc(db_url, {"fleetlock": {"groups": [
        {"name": "workers", "max_holders": 2},
        {"name": "secured", "max_holders": 1,
         "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()},
    ]}})  # fmt: skip
    settings = ServerSettings(db_url=db_url, admin_tokens=(ADMIN,), sample_interval=0)
    with TestClient(create_app(settings), headers=HDR) as c:
        yield c


def _groups(c: TestClient) -> set[str]:
    engine = c.app.state.services.engine  # type: ignore[attr-defined]
    return {g["name"] for g in fleetlock_store.list_groups(engine)}


def test_200_calls_with_new_group_names_create_none(client: TestClient) -> None:
    before = _groups(client)
    for i in range(100):
        for path in ("/v1/pre-reboot", "/v1/steady-state"):
            r = client.post(path, json=body(f"n{i}", f"invented-{i}"))
            assert r.status_code == 404 and r.json()["kind"] == "unknown_group"
    assert _groups(client) == before == {"workers", "secured"}


def test_only_the_holder_releases_its_lock(client: TestClient) -> None:
    assert client.post("/v1/pre-reboot", json=body("node-a")).status_code == 200
    # Ids are compared as sent: near-misses release nothing.
    for other in ("node-b", "NODE-A", " node-a", "node-a ", "node-\u0430"):
        assert client.post("/v1/steady-state", json=body(other)).status_code == 200
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    assert [h["id"] for h in fleetlock_store.list_holders(engine, "workers")] == ["node-a"]
    assert client.post("/v1/steady-state", json=body("node-a")).status_code == 200
    assert fleetlock_store.list_holders(engine, "workers") == []


def test_a_group_token_is_required_when_set(client: TestClient) -> None:
    r = client.post("/v1/pre-reboot", json=body("a", "secured"))
    assert r.status_code == 401 and r.json()["kind"] == "unauthorized"
    wrong = {"Authorization": "Bearer " + "x" * 25}
    r = client.post("/v1/pre-reboot", json=body("a", "secured"), headers=wrong)
    assert r.status_code == 401
    # Zincati: base_url https://fleetlock:<token>@host/ becomes HTTP Basic.
    basic = {"Authorization": "Basic " + base64.b64encode(f"fleetlock:{TOKEN}".encode()).decode()}
    r = client.post("/v1/pre-reboot", json=body("a", "secured"), headers=basic)
    assert r.status_code == 200
    # A stranger who knows the holder's id cannot release it without the token.
    assert client.post("/v1/steady-state", json=body("a", "secured")).status_code == 401
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    assert len(fleetlock_store.list_holders(engine, "secured")) == 1
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/v1/steady-state", json=body("a", "secured"), headers=bearer)
    assert r.status_code == 200
    assert fleetlock_store.list_holders(engine, "secured") == []
    # Groups without a token stay open, as the protocol is.
    assert client.post("/v1/pre-reboot", json=body("b")).status_code == 200


def test_the_dashboard_and_api_release_any_id(client: TestClient) -> None:
    odd = [" padded id ", "with/slash", "ünïcödé", "x" * 256]
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    for node in odd[:2]:
        assert client.post("/v1/pre-reboot", json=body(node)).status_code == 200
    csrf = login(client, ADMIN)
    r = client.post("/ui/reboots/release", data={"csrf": csrf, "group": "workers", "id": odd[0]})
    assert r.status_code == 200 and "released" in r.url.query.decode()
    assert [h["id"] for h in fleetlock_store.list_holders(engine, "workers")] == [odd[1]]
    client.cookies.clear()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    r = client.delete("/api/v1/fleetlock/groups/workers/holders/with/slash", headers=admin)
    assert r.status_code == 200, r.text
    for node in odd[2:]:
        assert client.post("/v1/pre-reboot", json=body(node)).status_code == 200
        r = client.delete(f"/api/v1/fleetlock/groups/workers/holders/{node}", headers=admin)
        assert r.status_code == 200
    assert fleetlock_store.list_holders(engine, "workers") == []


def test_creating_groups_is_an_option(db_url: str) -> None:
    settings = ServerSettings(db_url=db_url, fleetlock_create_groups=True, sample_interval=0)
    with TestClient(create_app(settings), headers=HDR) as c:
        assert c.post("/v1/pre-reboot", json=body("a", "fresh")).status_code == 200
        assert "fresh" in _groups(c)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic " + base64.b64encode(b"user:pw").decode(), "pw"),
        ("Basic " + base64.b64encode(b"only-user:").decode(), "only-user"),
        ("Basic " + base64.b64encode(b"only-user").decode(), "only-user"),
        ("Basic !!!", ""),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), ""),
        ("Digest abc", ""),
        ("", ""),
    ],
)
def test_presented_token(header: str, token: str) -> None:
    assert presented_token(header) == token


def test_token_sha256_in_the_fleet_file() -> None:
    spec = parse_fleet(
        "fleetlock:\n  groups:\n    - name: w\n      token_sha256: " + "AB" * 32 + "\n"
    )
    assert spec.fleetlock[0].token_sha256 == "ab" * 32
    with pytest.raises(FleetFileError, match=re.escape("token_sha256: must be 64 hex digits")):
        parse_fleet("fleetlock:\n  groups:\n    - name: w\n      token_sha256: secret\n")
