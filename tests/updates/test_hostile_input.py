"""Hostile input gets a 4xx with a message, never a 5xx, on SQLite and PostgreSQL; the server
keeps answering afterwards, and /metrics counts the status really sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.api import create_app
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, OLD, apply_doc, fleet, ue_request

APP = f"/api/v1/apps/{FLATCAR_APP_ID}"
XML = {"Content-Type": "text/xml"}
BIG = str(2**63 + 5)
HUGE = "9" * 40
GOOD = ue_request("a" * 32)


def _ue(**attrs: str) -> bytes:
    """update_engine's request with some attributes replaced."""
    body = GOOD.decode()
    for k, v in attrs.items():
        body = body.replace(f'{k}="', f'{k}="{v}', 1) if k.endswith("+") else _set(body, k, v)
    return body.encode()


def _set(body: str, key: str, value: str) -> str:
    start = body.index(f' {key}="') + len(key) + 3
    end = body.index('"', start)
    return body[:start] + value + body[end:]


def _event(etype: str, result: str, extra: str = "") -> bytes:
    return GOOD.replace(
        b"<updatecheck></updatecheck>",
        f'<event eventtype="{etype}" eventresult="{result}"{extra}></event>'.encode(),
    )


OMAHA: list[tuple[str, bytes]] = [
    ("unknown encoding", b'<?xml version="1.0" encoding="x-klingon"?><request protocol="3.0"/>'),
    ("utf-16 declared, utf-8 sent", GOOD.replace(b"UTF-8", b"UTF-16")),
    ("empty", b""),
    ("whitespace", b"   \n"),
    ("not xml", b"hello"),
    ("truncated", GOOD[:100]),
    ("dtd", b'<!DOCTYPE r [<!ENTITY a "b">]><request protocol="3.0"/>'),
    ("entity bomb", b'<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><r>&b;</r>'),
    ("external entity", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'),
    ("wrong root", b"<response/>"),
    ("wrong protocol", GOOD.replace(b'protocol="3.0"', b'protocol="2.0"')),
    ("no app", b'<request protocol="3.0"></request>'),
    ("nul char ref", GOOD.replace(b'oem="qemu"', b'oem="q&#0;"')),
    ("nul byte", GOOD.replace(b'oem="qemu"', b'oem="q\x00"')),
    ("eventtype past 2^63", _event(BIG, "1")),
    ("eventresult past 2^63", _event("3", HUGE)),
    ("errorcode past 2^63", _event("3", "0", f' errorcode="{BIG}"')),
    ("negative errorcode past -2^63", _event("3", "0", f' errorcode="-{BIG}"')),
    ("eventtype not a number", _event("three", "1")),
    ("previousversion huge", _event("3", "2", f' previousversion="{"9" * 300}"')),
    ("previousversion nul", _event("3", "2", ' previousversion="1.&#0;"')),
    ("version too wide", ue_request("b" * 32, "1." + "1" * 200)),
    ("version not semver", ue_request("b" * 32, "latest")),
    ("version numbers past 2^63", ue_request("b" * 32, f"{BIG}.{BIG}.{BIG}")),
    ("machineid too wide", _ue(machineid="m" * 300)),
    ("machineid odd characters", _ue(machineid="../../etc")),
    ("machineid empty", _ue(machineid="")),
    ("track too wide", _ue(track="t" * 300)),
    ("track with nul ref", _ue(track="st&#0;able")),
    ("appid garbage", _ue(appid="<script>")),
    ("oem too wide", _ue(oem="o" * 5000)),
    ("alias with control chars", _ue(machinealias="a&#7;b")),
    ("too many apps", b'<request protocol="3.0">' + b"<app/>" * 40 + b"</request>"),
    ("over 64 KiB", GOOD + b" " * 70_000),
]


def _api(method: str, path: str, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    return (method, path, kw)


FORM = "application/x-www-form-urlencoded"
ADMIN_HDR = {"Authorization": f"Bearer {ADMIN}"}
OTHER: list[tuple[str, tuple[str, str, dict[str, Any]]]] = [
    ("instances offset past 2^63", _api("GET", f"{APP}/instances?offset={BIG}")),
    ("instances limit past 2^63", _api("GET", f"{APP}/instances?limit={BIG}")),
    ("instances group with nul", _api("GET", f"{APP}/instances?group=a%00b")),
    ("instances status with nul", _api("GET", f"{APP}/instances?status=%00")),
    ("instance id with nul", _api("GET", f"{APP}/instances/a%00b")),
    ("instance id very long", _api("GET", f"{APP}/instances/{'x' * 5000}")),
    ("group name with nul", _api("GET", f"{APP}/groups/a%00")),
    ("app id with nul", _api("GET", "/api/v1/apps/a%00/groups")),
    ("activity limit past 2^63", _api("GET", f"/api/v1/activity?limit={BIG}")),
    ("activity app with nul", _api("GET", "/api/v1/activity?app_id=%00")),
    ("policy huge duration", _api("PUT", f"{APP}/groups/stable/policy",
                                  json={"period_interval": "99999999999d"})),
    ("policy timeout huge", _api("PUT", f"{APP}/groups/stable/policy",
                                 json={"update_timeout": "99999999999999999999h"})),
    ("policy max past 2^63", _api("PUT", f"{APP}/groups/stable/policy",
                                  json={"max_updates_per_period": 2**70})),
    ("policy percent nan", _api("PUT", f"{APP}/groups/stable/policy",
                                content=b'{"rollout_percent": NaN}',
                                headers={"Content-Type": "application/json"})),
    ("policy not an object", _api("PUT", f"{APP}/groups/stable/policy", json=[1, 2])),
    ("package version too wide", _api("POST", f"{APP}/packages", json={
        "version": "1.2." + "3" * 150, "url": "https://x.test/", "filename": "f", "size": 1,
        "sha256": "a" * 64})),
    ("package size past 2^63", _api("POST", f"{APP}/packages", json={
        "version": "9.9.9", "url": "https://x.test/", "filename": "f", "size": 2**64,
        "sha256": "a" * 64})),
    ("package filename with nul", _api("POST", f"{APP}/packages", json={
        "version": "9.9.8", "url": "https://x.test/", "filename": "f\u0000", "size": 1,
        "sha256": "a" * 64})),
    ("package url with nul", _api("POST", f"{APP}/packages", json={
        "version": "9.9.7", "url": "https://x.test/\u0000", "filename": "f", "size": 1,
        "sha256": "a" * 64})),
    ("channel name too wide", _api("PUT", f"{APP}/channels/{'c' * 300}", json={})),
    ("channel name with nul", _api("PUT", f"{APP}/channels/c%00", json={})),
    ("apply deep yaml", _api("POST", "/api/v1/apply", content=b"a: " + b"[" * 5000)),
    ("apply deep yaml mapping", _api("POST", "/api/v1/apply",
                                     content=b"".join(b"  " * i + b"k:\n" for i in range(400)))),
    ("apply not utf-8", _api("POST", "/api/v1/apply", content=b"\xff\xfe\x00")),
    ("apply duplicate keys", _api("POST", "/api/v1/apply",
                                  content=b"applications: []\napplications: []\n")),
    ("apply huge duration", _api("POST", "/api/v1/apply", content=(
        f"applications:\n  - id: {FLATCAR_APP_ID}\n    name: F\n    groups:\n"
        "      - name: g\n        track: g\n        policy:\n"
        "          period_interval: 99999999999d\n").encode())),
    ("apply nul", _api("POST", "/api/v1/apply", content=b"applications: [\"\\0\"]\n")),
    ("dashboard before past 2^63", _api("GET", f"/ui/activity?before={BIG}")),
    ("dashboard after past 2^63", _api("GET", f"/ui/data/activity?after={BIG}")),
    ("dashboard before huge", _api("GET", f"/ui/activity?before={HUGE}")),
    ("dashboard page past 2^63", _api("GET",
                                      f"/ui/apps/{FLATCAR_APP_ID}/groups/x/instances?page={BIG}")),
    ("dashboard search with nul",
     _api("GET", f"/ui/apps/{FLATCAR_APP_ID}/groups/x/instances?q=%00")),
    ("dashboard instance nul", _api("GET", f"/ui/apps/{FLATCAR_APP_ID}/instances/%00")),
    ("logout body over 64 KiB", _api("POST", "/ui/logout", content=b"csrf=" + b"x" * 70_000,
                                     headers={"Content-Type": FORM})),
    ("login body over 64 KiB", _api("POST", "/ui/login", content=b"token=" + b"x" * 70_000,
                                    headers={"Content-Type": FORM})),
    ("login token with nul", _api("POST", "/ui/login", data={"token": "\u0000", "csrf": "x"})),
    ("fleetlock body not json", _api("POST", "/v1/pre-reboot", content=b"{",
                                     headers={"fleet-lock-protocol": "true"})),
    ("fleetlock id with nul", _api("POST", "/v1/pre-reboot",
                                   json={"client_params": {"id": "a\u0000", "group": "default"}},
                                   headers={"fleet-lock-protocol": "true"})),
    ("fleetlock body huge", _api("POST", "/v1/steady-state", content=b" " * 100_000,
                                 headers={"fleet-lock-protocol": "true"})),
    ("fleetlock basic garbage", _api("POST", "/v1/pre-reboot",
                                     json={"client_params": {"id": "a", "group": "default"}},
                                     headers={"fleet-lock-protocol": "true",
                                              "Authorization": "Basic %%%"})),
    ("fleetlock unlock id with nul", _api("DELETE",
                                          "/api/v1/fleetlock/groups/default/holders/a%00")),
    ("bearer token with control char",
     _api("GET", "/api/v1/apps", headers={"Authorization": "Bearer \x01"})),
]  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One server per backend for every case, so each case also checks the ones before it."""
    if request.param == "sqlite":
        db = f"sqlite:///{Path(tmp_path_factory.mktemp('hostile')) / 'u.db'}"
    else:
        server: str = request.getfixturevalue("pg_server")
        name = f"h_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db = server.rsplit("/", 1)[0] + "/" + name
    apply_doc(db, fleet())
    settings = ServerSettings(db_url=db, admin_tokens=(ADMIN,), sample_interval=0,
                              new_machine_grants=0)  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("name", "body"), OMAHA, ids=[n for n, _ in OMAHA])
def test_hostile_omaha(hostile: TestClient, name: str, body: bytes) -> None:
    r = hostile.post("/v1/update/", content=body, headers=XML)
    assert r.status_code in (400, 413), (name, r.status_code, r.text[:300])
    assert r.text.strip(), "a 4xx says what is wrong"
    assert hostile.post("/v1/update/", content=GOOD, headers=XML).status_code == 200


# Well-formed but unknown: Nebraska's error statuses in a 200 (see test_omaha_compat.py).
UNKNOWN: list[tuple[str, bytes]] = [
    ("track unknown", _ue(track="no-such-track")),
    ("track of markup", _ue(track="&lt;script&gt;&amp;&quot;")),
    ("appid unknown", _ue(appid="{00000000-0000-0000-0000-000000000000}")),
]


@pytest.mark.parametrize(("name", "body"), UNKNOWN, ids=[n for n, _ in UNKNOWN])
def test_unknown_app_or_track_is_an_omaha_error_in_a_200(
    hostile: TestClient, name: str, body: bytes
) -> None:
    r = hostile.post("/v1/update/", content=body, headers=XML)
    assert r.status_code == 200, (name, r.text[:300])
    assert b'status="error-failedToRetrieveUpdatePackageInfo"' in r.content, name
    assert b'<updatecheck status="error-internal"' in r.content, name
    assert hostile.post("/v1/update/", content=GOOD, headers=XML).status_code == 200


@pytest.mark.parametrize(("name", "req"), OTHER, ids=[n for n, _ in OTHER])
def test_hostile_http(hostile: TestClient, name: str, req: tuple[str, str, dict[str, Any]]) -> None:
    method, path, kw = req
    headers = {**ADMIN_HDR, **kw.pop("headers", {})} if "/ui/" not in path else kw.pop(
        "headers", {})  # fmt: skip
    r = hostile.request(method, path, headers=headers, follow_redirects=False, **kw)
    kw["headers"] = headers
    assert r.status_code < 500, (name, r.status_code, r.text[:300])
    assert hostile.get("/healthz").status_code == 200


def test_metrics_count_what_was_sent(hostile: TestClient) -> None:
    text = hostile.get("/metrics").text
    assert 'flotilla_updates_omaha_requests_total{code="500"}' not in text
    assert 'flotilla_updates_omaha_requests_total{code="400"}' in text
    assert 'flotilla_updates_omaha_requests_total{code="413"}' in text or 'code="400"' in text


def test_version_labels_are_bounded(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    apply_doc(db, fleet())
    with TestClient(create_app(ServerSettings(db_url=db, sample_interval=0))) as c:
        for i in range(30):
            body = ue_request(f"v{i:031d}", f"{i + 1}.{i}.{i}" if i else OLD)
            assert c.post("/v1/update/", content=body, headers=XML).status_code == 200
        text = c.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("flotilla_updates_instances{")]
    versions = {ln.split('version="')[1].split('"')[0] for ln in lines}
    assert versions == {OLD, "other"}, versions
    total = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
    assert total == 30


@pytest.mark.parametrize(
    "text",
    [
        "applications: []\napplications: []\n",
        "fleetlock:\n  groups:\n    - name: a\n      name: b\n",
        "applications:\n  - id: x\n    id: y\n",
    ],
)
def test_fleet_files_with_duplicate_keys_are_refused_with_the_line(text: str) -> None:
    with pytest.raises(FleetFileError, match=r"line \d+: duplicate key .* \(first on line \d+\)"):
        parse_fleet(text)


def test_apply_prints_one_line_and_applies_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flotilla.updates.cli import app

    f = tmp_path / "fleet.yaml"
    f.write_text("applications: []\nfleetlock: {groups: []}\napplications: []\n")
    db = f"sqlite:///{tmp_path / 'u.db'}"
    r = CliRunner().invoke(app, ["apply", "-f", str(f), "--db", db])
    assert r.exit_code == 1 and "Traceback" not in r.output
    out = " ".join(r.output.split())
    assert "fleet.yaml: line 3: duplicate key 'applications' (first on line 1)" in out
    f.write_text("fleetlock: {groups: [{name: w}]}\n")
    r = CliRunner().invoke(
        app, ["apply", "-f", str(f), "--db", "postgresql://nobody@127.0.0.1:1/x"]
    )
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "database refused the change" in " ".join(r.output.split()), r.output


def test_healthz_is_503_when_the_database_refuses_writes(db_url: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    apply_doc(db_url, fleet())
    with TestClient(create_app(ServerSettings(db_url=db_url, sample_interval=0))) as c:
        assert c.get("/healthz").status_code == 200
        engine = c.app.state.services.engine  # type: ignore[attr-defined]

        def disk_full(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise OperationalError(statement, {}, Exception("database or disk is full"))

        event.listen(engine, "before_cursor_execute", disk_full)
        try:
            r = c.get("/healthz")
            assert r.status_code == 503 and "database" in r.text
            r = c.post("/v1/update/", content=ue_request("z" * 32), headers=XML)
            assert r.status_code == 503  # a check-in that must write says so, with Retry-After
        finally:
            event.remove(engine, "before_cursor_execute", disk_full)
        assert c.get("/healthz").status_code == 200
