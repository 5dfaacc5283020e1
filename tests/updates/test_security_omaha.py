"""Strangers can't steer a rollout over Omaha: invented ids, fake failures, secret, media type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flotilla.updates.server.api import create_app
from flotilla.updates.server.grantguard import network_of
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, NEW, OLD, apply_doc, fleet, ue_request

XML = {"Content-Type": "text/xml"}
ATTACKER = ("198.51.100.7", 40000)
SECRET = "s3cret-path-suffix-0123"


def group(policy: dict[str, Any]) -> dict[str, Any]:
    return {"name": "stable", "track": "stable", "channel": "stable", "policy": policy}


def app_on(db: str, **kw: Any) -> Any:
    return create_app(ServerSettings(db_url=db, admin_tokens=(ADMIN,), sample_interval=0, **kw))


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'u.db'}"


def granted(r: Any) -> bool:
    assert r.status_code == 200, r.text
    return 'updatecheck status="ok"' in r.text


def _halted(c: TestClient) -> Any:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    apps = c.get("/api/v1/apps", headers=admin).json()
    g = c.get(f"/api/v1/apps/{apps[0]['id']}/groups/stable", headers=admin).json()
    return g["halted_version"]


def test_ten_invented_ids_cannot_use_up_the_quota(db_url: str) -> None:
    apply_doc(db_url, fleet(group({"max_updates_per_period": 6, "period_interval": "1h"})))
    app = app_on(db_url)
    with TestClient(app, client=ATTACKER, headers=XML) as attacker:
        wins = [granted(attacker.post("/v1/update/", content=ue_request(f"fake{i:028d}")))
                for i in range(10)]  # fmt: skip
        assert sum(wins) == 5  # the default: 5 new machines per network and hour
        # The real fleet, elsewhere, still gets its updates.
        real = TestClient(app, client=("192.0.2.10", 5000), headers=XML)
        assert granted(real.post("/v1/update/", content=ue_request("real" + "0" * 28)))
        metrics = attacker.get("/metrics").text
        assert 'reason="newMachineLimitReached"' in metrics


def test_a_machine_asking_again_is_not_counted_twice(sqlite_db: str) -> None:
    apply_doc(sqlite_db, fleet())
    with TestClient(app_on(sqlite_db, new_machine_grants=1), client=ATTACKER, headers=XML) as c:
        for _ in range(3):
            assert granted(c.post("/v1/update/", content=ue_request("m" * 32)))
        assert not granted(c.post("/v1/update/", content=ue_request("n" * 32)))


def test_the_limit_can_be_turned_off(sqlite_db: str) -> None:
    apply_doc(sqlite_db, fleet())
    with TestClient(app_on(sqlite_db, new_machine_grants=0), client=ATTACKER, headers=XML) as c:
        assert all(granted(c.post("/v1/update/", content=ue_request(f"f{i:031d}")))
                   for i in range(8))  # fmt: skip


def test_two_invented_failures_do_not_halt_a_group(db_url: str) -> None:
    apply_doc(db_url, fleet(group({"max_failures": 1})))
    with TestClient(app_on(db_url), client=ATTACKER, headers=XML) as c:
        for m in ("a" * 32, "b" * 32):
            body = ue_request(m, check=False, event=(3, 0), errorcode=7)
            assert c.post("/v1/update/", content=body).status_code == 200
        assert _halted(c) is None
        # The same two machines, once granted the update, do halt it: the brake still works.
        for m in ("a" * 32, "b" * 32):
            assert granted(c.post("/v1/update/", content=ue_request(m)))
            body = ue_request(m, check=False, event=(3, 0), errorcode=7)
            assert c.post("/v1/update/", content=body).status_code == 200
        assert _halted(c) == NEW


def test_a_granted_machine_failing_again_counts_once(sqlite_db: str) -> None:
    apply_doc(sqlite_db, fleet(group({"max_failures": 1})))
    with TestClient(app_on(sqlite_db), client=ATTACKER, headers=XML) as c:
        for _ in range(3):
            assert granted(c.post("/v1/update/", content=ue_request("c" * 32)))
            body = ue_request("c" * 32, check=False, event=(3, 0), errorcode=7)
            c.post("/v1/update/", content=body)
        assert _halted(c) is None


@pytest.fixture
def secret_client(sqlite_db: str) -> Iterator[TestClient]:
    apply_doc(sqlite_db, fleet())
    with TestClient(app_on(sqlite_db, omaha_secret=SECRET), headers=XML) as c:
        yield c


def test_the_shared_secret_hides_the_endpoint(secret_client: TestClient) -> None:
    body = ue_request("d" * 32)
    for path in ("/v1/update/", "/v1/update", "/v1/update/wrong-secret", f"/v1/update/{SECRET}x"):
        assert secret_client.post(path, content=body).status_code == 404, path
    assert secret_client.post(f"/v1/update/{SECRET}", content=body).status_code == 200
    assert secret_client.post(f"/v1/update/{SECRET}/", content=body).status_code == 200
    hdr = {"X-Flotilla-Omaha-Secret": SECRET}
    assert secret_client.post("/v1/update/", content=body, headers=hdr).status_code == 200
    metrics = secret_client.get("/metrics").text
    assert 'flotilla_updates_omaha_requests_total{code="404"} 4.0' in metrics


def test_without_a_secret_configured_a_path_suffix_is_unknown(sqlite_db: str) -> None:
    apply_doc(sqlite_db, fleet())
    with TestClient(app_on(sqlite_db), headers=XML) as c:
        assert c.post("/v1/update/anything", content=ue_request("e" * 32)).status_code == 404


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/xml", 200),  # what update_engine sends (libcurl_http_fetcher.cc)
        ("text/xml; charset=utf-8", 200),
        ("application/xml", 200),
        ("TEXT/XML", 200),
        ("text/plain", 415),  # a browser form or fetch() from any web page
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("", 415),  # a typeless Blob
        ("application/json", 415),
    ],
)
def test_only_xml_is_accepted(sqlite_db: str, content_type: str, status: int) -> None:
    apply_doc(sqlite_db, fleet())
    with TestClient(app_on(sqlite_db)) as c:
        headers = {"Content-Type": content_type} if content_type else {}
        r = c.post("/v1/update/", content=ue_request("f" * 32), headers=headers)
        assert r.status_code == status


def test_only_the_proxys_own_forwarded_entry_is_trusted(sqlite_db: str) -> None:
    apply_doc(sqlite_db, fleet(group({})))
    settings = {"trust_forwarded_for": True, "new_machine_grants": 2}
    with TestClient(app_on(sqlite_db, **settings), client=("127.0.0.1", 1), headers=XML) as c:
        wins = [
            granted(c.post("/v1/update/", content=ue_request(f"x{i:031d}"),
                           headers={"X-Forwarded-For": f"10.{i}.0.1, 203.0.113.9"}))
            for i in range(5)
        ]  # fmt: skip
        assert sum(wins) == 2  # the invented first entries do not make new networks


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.9", "203.0.113.0/24"),
        ("2001:db8::1", "2001:db8::/64"),
        ("::ffff:203.0.113.9", "203.0.113.0/24"),
        ("127.0.0.1", None),
        ("::1", None),
        ("", None),
        ("not-an-address", "not-an-address"),
    ],
)
def test_networks(ip: str, network: str | None) -> None:
    assert network_of(ip) == network


def test_old_machines_are_not_limited(sqlite_db: str) -> None:
    from datetime import UTC, datetime, timedelta

    from flotilla.updates.server.grantguard import NewMachineLimit
    from flotilla.updates.server.omaha import parse_request
    from flotilla.updates.server.schema import make_engine
    from flotilla.updates.server.store import Store

    apply_doc(sqlite_db, fleet())
    store = Store(make_engine(sqlite_db), new_machines=NewMachineLimit(grants=1))
    then = datetime.now(UTC) - timedelta(days=2)
    # Two machines registered two days ago (no update on offer then: they ran the newest).
    for m in ("g" * 32, "h" * 32):
        store.checkin(parse_request(ue_request(m, NEW)), "203.0.113.9", then)
    now = datetime.now(UTC)
    answers = [store.checkin(parse_request(ue_request(m, OLD)), "203.0.113.9", now)
               for m in ("g" * 32, "h" * 32)]  # fmt: skip
    assert all(a[0].package is not None for a in answers)
