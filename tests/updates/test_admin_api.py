"""The admin API: create, update and delete every kind of thing, each change in the activity feed,
deletes that would leave users dangling refused by name, and the same checks as ``apply``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flotilla.updates.models import FLATCAR_APP_ID

from .conftest import NEW, OLD, SHA, Server, apply_doc, fleet, ue_request

APP = f"/api/v1/apps/{FLATCAR_APP_ID}"


def _pkg(version: str, arch: str = "amd64") -> dict[str, Any]:
    return {
        "version": version,
        "arch": arch,
        "url": f"https://dl.test/{version}/",
        "filename": "update.gz",
        "size": 1000,
        "sha256": SHA,
    }


@pytest.fixture
def server(serve: Callable[..., Server], db_url: str) -> Server:
    apply_doc(db_url, fleet({"name": "canary", "track": "canary", "channel": "stable"}))
    return serve(db_url, config_ttl=0)


def _feed(s: Server) -> list[dict[str, Any]]:
    return list(s.client.get("/api/v1/activity", headers=s.reader()).json())


def test_applications_are_created_renamed_and_deleted(server: Server) -> None:
    s = server
    r = s.client.post("/api/v1/apps", json={"id": "my-app", "name": "Mine"}, headers=s.admin())
    assert r.status_code == 201 and r.json()["id"] == "my-app"
    again = s.client.post("/api/v1/apps", json={"id": "my-app", "name": "x"}, headers=s.admin())
    assert again.status_code == 409
    r = s.client.put("/api/v1/apps/my-app", json={"name": "Renamed"}, headers=s.admin())
    assert r.status_code == 200
    names = {a["id"]: a["name"] for a in s.client.get("/api/v1/apps", headers=s.reader()).json()}
    assert names["my-app"] == "Renamed"
    assert s.client.delete("/api/v1/apps/my-app", headers=s.admin()).status_code == 204
    assert s.client.delete("/api/v1/apps/my-app", headers=s.admin()).status_code == 404
    busy = s.client.delete(APP, headers=s.admin())
    assert busy.status_code == 409 and "canary" in busy.json()["detail"]
    kinds = [(e["kind"], e["message"]) for e in _feed(s)]
    assert ("AdminChange", "admin token: deleted application my-app") in kinds
    assert ("AdminChange", "admin token: created application my-app (Mine)") in kinds


def test_a_channel_that_groups_use_cannot_be_deleted_and_the_answer_names_them(
    server: Server,
) -> None:
    s = server
    r = s.client.delete(f"{APP}/channels/stable", headers=s.admin())
    assert r.status_code == 409
    assert "canary" in r.json()["detail"]
    r = s.client.put(f"{APP}/channels/beta", json={"package": OLD}, headers=s.admin())
    assert r.status_code == 200
    assert s.client.delete(f"{APP}/channels/beta", headers=s.admin()).status_code == 204
    names = {c["name"] for c in s.client.get(f"{APP}/channels", headers=s.reader()).json()}
    assert "beta" not in names and "stable" in names


def test_a_package_in_use_is_kept_until_nothing_serves_it(server: Server) -> None:
    s = server
    assert (
        s.client.post(f"{APP}/packages", json=_pkg("9.0.0"), headers=s.admin()).status_code == 200
    )
    # Only arch of a version a channel serves: refused, naming the channel.
    r = s.client.delete(f"{APP}/packages/{NEW}/amd64", headers=s.admin())
    assert r.status_code == 204, "another arch of the version remains, so this one may go"
    r = s.client.delete(f"{APP}/packages/{NEW}/arm64", headers=s.admin())
    assert r.status_code == 409 and "channel stable" in r.json()["detail"]
    assert s.client.delete(f"{APP}/packages/9.0.0/amd64", headers=s.admin()).status_code == 204
    assert s.client.delete(f"{APP}/packages/9.0.0/amd64", headers=s.admin()).status_code == 404


def test_groups_are_created_changed_and_deleted_with_their_machines(server: Server) -> None:
    s = server
    body = {"track": "ring-1", "channel": "stable", "policy": {"max_updates_per_period": 3}}
    r = s.client.put(f"{APP}/groups/ring1", json=body, headers=s.admin())
    assert r.status_code == 200, r.text
    assert r.json()["track"] == "ring-1"
    assert s.omaha(ue_request("m-ring", OLD, track="ring-1")).status_code == 200
    taken = s.client.put(f"{APP}/groups/other", json={"track": "ring-1"}, headers=s.admin())
    assert taken.status_code == 409 and "ring1" in taken.json()["detail"]
    r = s.client.put(f"{APP}/groups/ring1", json={**body, "channel": "edge"}, headers=s.admin())
    assert r.status_code == 200 and r.json()["channel"] == "edge"
    assert s.client.delete(f"{APP}/groups/ring1", headers=s.admin()).status_code == 204
    assert s.client.get(f"{APP}/groups/ring1", headers=s.reader()).status_code == 404
    assert s.client.get(f"{APP}/instances/m-ring", headers=s.reader()).status_code == 404
    msgs = [e["message"] for e in _feed(s) if e["kind"] == "AdminChange"]
    assert "admin token: deleted group ring1" in msgs
    assert "admin token: created group ring1 (track ring-1)" in msgs


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("groups/g1", {"channel": "nope"}, "no channel nope"),
        ("groups/g1", {"policy": {"max_updates_per_period": "lots"}}, "max_updates_per_period"),
        ("groups/g1", {"policy": {"period_interval": "99999999999d"}}, "period_interval"),
        ("groups/g1", {"policy": {"bogus": 1}}, "unknown field"),
        ("groups/bad name", {}, "letters, digits"),
        ("groups/g1", {"track": "t" * 101}, "longer than 100"),
        ("channels/c1", {"package": "9.9.9"}, "no package 9.9.9"),
        ("channels/c1", {"floors": ["x"]}, "semantic version"),
    ],
)
def test_bodies_are_checked_as_a_fleet_file_is(
    server: Server, path: str, body: dict[str, Any], needle: str
) -> None:
    r = server.client.put(f"{APP}/{path}", json=body, headers=server.admin())
    assert r.status_code == 422, r.text
    assert needle in str(r.json()["detail"])


def test_instance_alias_and_roles(server: Server) -> None:
    s = server
    assert s.omaha(ue_request("m-alias", OLD, track="canary")).status_code == 200
    r = s.client.put(f"{APP}/instances/m-alias", json={"alias": "rack 4"}, headers=s.admin())
    assert r.status_code == 200
    got = s.client.get(f"{APP}/instances/m-alias", headers=s.reader()).json()
    assert got["alias"] == "rack 4"
    assert (
        s.client.put(f"{APP}/instances/ghost", json={"alias": "x"}, headers=s.admin()).status_code
        == 404
    )
    # Readers and strangers change nothing.
    assert s.client.delete(f"{APP}/channels/edge", headers=s.reader()).status_code == 403
    assert s.client.delete(f"{APP}/channels/edge").status_code == 401
    assert s.client.put(f"{APP}/groups/x", json={}).status_code == 401
