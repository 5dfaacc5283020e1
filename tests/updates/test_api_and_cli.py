"""REST API (auth, writes, OpenAPI), /metrics, /healthz, fleet files and the CLI."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flotilla.updates.cli import app as cli
from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet
from tests.core.test_yamlload import bomb
from tests.updates.conftest import MID, NEW, OLD, SHA, Server, apply_doc, fleet, ue_request
from tests.updates.test_http_lifecycle import updatecheck

APP = f"/api/v1/apps/{FLATCAR_APP_ID}"


def test_auth(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    assert s.client.get("/api/v1/apps").status_code == 401
    assert (
        s.client.get("/api/v1/apps", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert s.client.get("/api/v1/apps", headers=s.reader()).status_code == 200
    assert s.client.get("/api/v1/apps", headers=s.admin()).status_code == 200
    body = {"package": MID}
    assert s.client.put(f"{APP}/channels/stable", json=body, headers=s.reader()).status_code == 403
    assert s.client.put(f"{APP}/channels/stable", json=body).status_code == 401
    # The Omaha endpoint and the probes stay open.
    assert s.omaha(ue_request("a" * 32)).status_code == 200
    assert s.client.get("/healthz").text == "ok\n"
    assert s.client.get("/metrics").status_code == 200


def test_openapi_lists_the_api(sqlite_url: str, serve: Callable[..., Server]) -> None:
    s = serve(sqlite_url)
    doc = s.client.get("/openapi.json").json()
    paths = set(doc["paths"])
    for p in (
        "/api/v1/apps",
        "/api/v1/apps/{app_id}/channels/{name}",
        "/api/v1/activity",
        "/api/v1/apps/{app_id}/instances",
        "/api/v1/apps/{app_id}/groups/{group}/resume",
        "/v1/update/",
    ):
        assert p in paths


def test_channel_change_and_activity(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet(channel=MID))
    s = serve(sqlite_url)
    r = s.client.put(f"{APP}/channels/stable", json={"package": NEW}, headers=s.admin())
    assert r.status_code == 200, r.text
    chans = {c["name"]: c for c in s.client.get(f"{APP}/channels", headers=s.reader()).json()}
    assert chans["stable"]["package"] == NEW
    assert set(chans) >= {"alpha", "beta", "stable", "edge"}
    feed = s.client.get("/api/v1/activity", headers=s.reader()).json()
    assert feed[0]["kind"] == "ChannelPackageUpdated"
    # Unknown package, bad version, unknown app: clear 4xx, nothing changed.
    bad = s.client.put(f"{APP}/channels/stable", json={"package": "9.9.9"}, headers=s.admin())
    assert bad.status_code == 422
    bad = s.client.put(f"{APP}/channels/stable", json={"package": "latest"}, headers=s.admin())
    assert bad.status_code == 422
    bad = s.client.put(
        "/api/v1/apps/nope/channels/stable", json={"package": NEW}, headers=s.admin()
    )
    assert bad.status_code == 404


def test_packages_policy_and_instances(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    pkg = {
        "version": "3800.0.0",
        "url": "https://dl.example.test/x",
        "filename": "u.gz",
        "size": 10,
        "sha256": SHA,
    }
    assert s.client.post(f"{APP}/packages", json=pkg, headers=s.admin()).status_code == 200
    assert (
        s.client.post(f"{APP}/packages", json={**pkg, "size": 0}, headers=s.admin()).status_code
        == 422
    )
    versions = [p["version"] for p in s.client.get(f"{APP}/packages", headers=s.reader()).json()]
    assert "3800.0.0" in versions
    r = s.client.put(
        f"{APP}/groups/stable/policy", json={"period_interval": "soon"}, headers=s.admin()
    )
    assert r.status_code == 422
    assert "period_interval" in r.text
    r = s.client.put(
        f"{APP}/groups/stable/policy", json={"updates_enabled": False}, headers=s.admin()
    )
    assert r.json()["policy"]["updates_enabled"] is False
    assert updatecheck(s.omaha(ue_request("a" * 32)).content).get("status") == "noupdate"
    got = s.client.get(f"{APP}/instances", params={"group": "stable"}, headers=s.reader()).json()
    assert [i["machine_id"] for i in got] == ["a" * 32]
    assert s.client.get(f"{APP}/instances/nope", headers=s.reader()).status_code == 404


def test_metrics(sqlite_url: str, serve: Callable[..., Server]) -> None:
    apply_doc(sqlite_url, fleet())
    s = serve(sqlite_url)
    s.omaha(ue_request("a" * 32))
    s.omaha(ue_request("a" * 32, ping=False, check=False, event=(3, 0), errorcode=3))
    s.omaha(b"junk")
    text = s.client.get("/metrics").text
    assert f'flotilla_updates_grants_total{{app="{FLATCAR_APP_ID}",group="stable"}} 1.0' in text
    assert "flotilla_updates_failures_total" in text
    assert 'flotilla_updates_omaha_requests_total{code="400"} 1.0' in text
    assert "flotilla_updates_omaha_request_seconds_bucket" in text
    assert f'version="{OLD}"' in text and 'status="Error"' in text and 'channel="stable"' in text


def test_apply_over_api(sqlite_url: str, serve: Callable[..., Server]) -> None:
    s = serve(sqlite_url)
    text = yaml.safe_dump(fleet())
    r = s.client.post("/api/v1/apply", content=text, headers=s.admin())
    assert r.status_code == 200 and r.json()
    assert s.client.post("/api/v1/apply", content=text, headers=s.admin()).json() == []
    bad = s.client.post("/api/v1/apply", content="applications: 3", headers=s.admin())
    assert bad.status_code == 422


# --- fleet files ---------------------------------------------------------------------------------


def test_fleet_file_errors_have_lines() -> None:
    doc = """applications:
  - id: e96281a6-d1af-4bde-9a0a-97b76e56dc57
    name: Flatcar
    packages:
      - version: 3510.2
        url: ftp://x
        filename: a/b
        size: 0
        sha256: xyz
        colour: red
    channels:
      - name: stable
        package: 9.9.9
    groups:
      - name: g
        channel: nope
        policy:
          period_interval: soon
          timezone: Mars/Olympus
          rollout_percent: 150
          maintenance_windows: ["Someday 01:00-02:00"]
"""
    with pytest.raises(FleetFileError) as e:
        parse_fleet(doc)
    text = str(e.value)
    for expected in (
        "line 5:",
        "semantic",
        "line 6:",
        "http",
        "line 7:",
        "line 8:",
        "line 9:",
        "line 10:",
        "unknown field",
        "line 13:",
        "no package 9.9.9",
        "line 16:",
        "no channel nope",
        "line 18:",
        "line 19:",
        "line 20:",
        "line 21:",
    ):
        assert expected in text, expected
    with pytest.raises(FleetFileError, match="line 1"):
        parse_fleet("applications: [")
    with pytest.raises(FleetFileError, match="applications is required"):
        parse_fleet("{}")


def test_cli_apply_of_a_yaml_alias_bomb_is_a_quick_clear_error(
    tmp_path: Path, sqlite_url: str
) -> None:
    f = tmp_path / "fleet.yaml"
    f.write_text("applications: []\n" + bomb(9))
    start = time.monotonic()
    r = CliRunner().invoke(cli, ["apply", "-f", str(f), "--db", sqlite_url])
    assert time.monotonic() - start < 5
    output = " ".join(r.output.split())  # the console wraps long lines
    assert r.exit_code == 1 and "Traceback" not in output
    assert "fleet.yaml: line 8: not valid YAML: aliases add more than" in output, output
    assert "alias bomb" in output


def test_fleet_file_yaml_keeps_its_old_strictness() -> None:
    """Merge keys were never part of a fleet file; loading through core.yamlload keeps that."""
    with pytest.raises(FleetFileError, match=r"line 3: not valid YAML: .*merge"):
        parse_fleet("applications:\n  - &a {id: x}\n  - <<: *a\n    name: y\n")
    with pytest.raises(FleetFileError, match=r"line 2: not valid YAML: a recursive alias"):
        parse_fleet("applications: []\nx: &a [*a]\n")


def test_cli_apply_instances_activity(tmp_path: Path, sqlite_url: str) -> None:
    runner = CliRunner()
    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump(fleet()))
    r = runner.invoke(cli, ["apply", "-f", str(f), "--db", sqlite_url])
    assert r.exit_code == 0, r.output
    assert "created group" in r.output
    r = runner.invoke(cli, ["apply", "-f", str(f), "--db", sqlite_url])
    assert r.exit_code == 0 and "no changes" in r.output  # idempotent
    bad = tmp_path / "bad.yaml"
    bad.write_text("applications:\n  - id: x\n    packages: [{version: nope}]\n")
    r = runner.invoke(cli, ["apply", "-f", str(bad), "--db", sqlite_url])
    assert r.exit_code == 1
    assert "line 3" in r.output
    r = runner.invoke(cli, ["instances", "--db", sqlite_url, "-o", "json"])
    assert r.exit_code == 0 and json.loads(r.output) == []
    r = runner.invoke(cli, ["instances", "--db", sqlite_url, "--group", "stable"])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["activity", "--db", sqlite_url, "-o", "json"])
    assert r.exit_code == 0
    assert any(a["kind"] == "ChannelPackageUpdated" for a in json.loads(r.output))
    # The feed names who applied: the login user, and that it came from the command line.
    who = f"{getpass.getuser()} (flotilla updates apply)"
    applied = [a for a in json.loads(r.output) if a["kind"] == "AdminChange"]
    assert len(applied) == 1, "the second apply changed nothing and logged nothing"
    assert applied[0]["message"].startswith(f"{who}: applied created application")


def test_cli_registered_in_flotilla() -> None:
    from flotilla.cli import app as root

    r = CliRunner().invoke(root, ["updates", "--help"])
    assert r.exit_code == 0
    for cmd in ("serve", "apply", "instances", "activity"):
        assert cmd in r.output
