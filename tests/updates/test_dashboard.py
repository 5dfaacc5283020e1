"""The dashboard through Starlette's TestClient: every page and action, auth, CSRF, validation."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server import catalog, fleetlock_store
from flotilla.updates.server.api import create_app
from flotilla.updates.server.dashboard.queries import sample
from flotilla.updates.server.fleetspec import group_id
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, MID, NEW, OLD, READER, apply_doc, fleet, ue_request

APP = FLATCAR_APP_ID
GID = group_id(APP, "stable")
CANARY = group_id(APP, "canary")
GROUP_URL = f"/ui/apps/{APP}/groups/{GID}"


def engine_of(client: TestClient) -> Any:
    """The running server's database engine (its lifespan opened it)."""
    return client.app.state.services.engine  # type: ignore[attr-defined]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    assert m is not None, html[:500]
    return m.group(1)


def login(client: TestClient, token: str) -> str:
    """Log in through the form like a person; return the session's CSRF value."""
    page = client.get("/ui/login")
    r = client.post(
        "/ui/login",
        data={"csrf": _csrf(page.text), "token": token, "next": "/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return _csrf(client.get("/").text)


def omaha(client: TestClient, body: bytes) -> str:
    r = client.post("/v1/update/", content=body, headers={"Content-Type": "text/xml"})
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    """A server on a fleet with two groups, and three machines that checked in."""
    apply_doc(
        sqlite_url,
        fleet(
            {"name": "stable", "track": "stable", "channel": "stable"},
            {
                "name": "canary",
                "track": "canary",
                "channel": "stable",
                "policy": {"max_failures": 0},
            },
        ),
    )
    settings = ServerSettings(
        db_url=sqlite_url, admin_tokens=(ADMIN,), read_tokens=(READER,), sample_interval=0
    )
    with TestClient(create_app(settings)) as c:
        for m in ("a" * 32, "b" * 32, "c" * 32):
            omaha(c, ue_request(m))
        c.app.state.services.store.invalidate()
        yield c


def test_pages_need_a_login(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/"
    r = client.get(GROUP_URL, follow_redirects=False)
    assert r.headers["location"].startswith("/ui/login?next=/ui/apps/")
    assert client.get(f"/ui/data/apps/{APP}").status_code == 401
    r = client.post(f"{GROUP_URL}/pause", data={"csrf": "x"})
    assert r.status_code == 401
    assert catalog.get_group(engine_of(client), APP, GID)["policy"]["updates_enabled"]


def test_login_cookie_and_bad_tokens(client: TestClient) -> None:
    page = client.get("/ui/login")
    assert "flotilla_login_csrf" in page.headers["set-cookie"]
    bad = client.post("/ui/login", data={"csrf": _csrf(page.text), "token": "guess", "next": "/"})
    assert bad.status_code == 401
    assert "Unknown token" in bad.text
    # Without the login form's CSRF value the token is not even looked at.
    forged = client.post("/ui/login", data={"csrf": "forged", "token": ADMIN})
    assert forged.status_code == 403
    page = client.get("/ui/login")
    r = client.post(
        "/ui/login",
        data={"csrf": _csrf(page.text), "token": ADMIN, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "flotilla_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert client.get("/").status_code == 200
    # A tampered cookie is no session at all.
    value = client.cookies["flotilla_session"]
    client.cookies.clear()
    client.cookies.set("flotilla_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_every_page_renders(client: TestClient) -> None:
    login(client, ADMIN)
    home = client.get("/")
    assert home.status_code == 200
    assert "Flatcar" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'self'")
    app_page = client.get(f"/ui/apps/{APP}")
    assert app_page.status_code == 200
    for text in ("stable", "canary", "alpha", "beta", "edge", NEW):
        assert text in app_page.text
    group = client.get(GROUP_URL)
    assert group.status_code == 200
    assert 'id="policy-form"' in group.text
    assert 'id="chart-data"' in group.text
    inst = client.get(f"{GROUP_URL}/instances")
    assert inst.status_code == 200
    assert "a" * 32 in inst.text
    assert "3 found" in inst.text
    one = client.get(f"/ui/apps/{APP}/instances/{'a' * 32}")
    assert one.status_code == 200
    assert "UpdateGranted" in one.text  # the history shows the grant
    feed = client.get("/ui/activity")
    assert feed.status_code == 200
    assert "RolloutStarted" in feed.text
    reboots = client.get("/ui/reboots")
    assert reboots.status_code == 200
    assert "No machine holds a reboot lock." in reboots.text
    for url in (
        "/ui/apps/nope",
        f"/ui/apps/{APP}/groups/nope",
        f"/ui/apps/{APP}/groups/nope/instances",
        f"/ui/apps/{APP}/instances/nope",
    ):
        assert client.get(url).status_code == 404, url


def test_instances_search_sort_filter_and_paging(client: TestClient) -> None:
    login(client, ADMIN)
    for i in range(60):
        omaha(client, ue_request(f"{i:032x}", version=NEW))
    base = f"{GROUP_URL}/instances"
    first = client.get(base)
    assert "63 found" in first.text
    assert "page 1 of 2" in first.text
    second = client.get(base, params={"page": 2})
    assert "page 2 of 2" in second.text
    assert client.get(base, params={"page": 999}).status_code == 200  # clamped to the last
    hit = client.get(base, params={"q": "b" * 10})
    assert "1 found" in hit.text
    assert "b" * 32 in hit.text
    assert "1 found" not in client.get(base, params={"q": "%"}).text  # LIKE wildcards escaped
    by_version = client.get(base, params={"version": NEW})
    assert "60 found" in by_version.text
    by_status = client.get(base, params={"status": "UpdateGranted"})
    assert "3 found" in by_status.text
    asc = client.get(base, params={"sort": "machine_id", "order": "asc"}).text
    assert asc.index(f"{1:032x}") < asc.index(f"{2:032x}")
    desc = client.get(base, params={"sort": "machine_id", "order": "desc"}).text
    assert desc.index("c" * 32) < desc.index("b" * 32)
    # Unknown sort columns and statuses are ignored, never passed to SQL.
    assert client.get(base, params={"sort": "1;drop", "status": "x"}).status_code == 200


def test_hostile_values_are_escaped(client: TestClient) -> None:
    login(client, ADMIN)
    body = ue_request("d" * 32).replace(b'machinealias=""', b'machinealias="&lt;script&gt;x()"')
    omaha(client, body)
    page = client.get(f"{GROUP_URL}/instances", params={"q": "<script>"})
    assert "<script>x()" not in page.text
    assert "&lt;script&gt;x()" in page.text


def test_policy_form_saves_and_logs(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    form = {
        "csrf": csrf,
        "updates_enabled": "on",
        "max_updates_per_period": "5",
        "period_interval": "30m",
        "update_timeout": "2h",
        "rollout_percent": "25",
        "max_failures": "2",
        "timezone": "Europe/Berlin",
        "maintenance_windows": "Sat 02:00-06:00, Mon-Fri 22:00-01:00",
        "pinned_version": "",
    }
    r = client.post(f"{GROUP_URL}/policy", data=form, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].endswith("?done=policy")
    p = catalog.get_group(engine_of(client), APP, GID)["policy"]
    assert p["max_updates_per_period"] == 5
    assert p["period_interval"] == "30m"
    assert p["rollout_percent"] == 25
    assert p["maintenance_windows"] == ["Sat 02:00-06:00", "Mon-Fri 22:00-01:00"]
    assert p["safe_mode"] is False
    page = client.get(r.headers["location"])
    assert "Policy saved." in page.text
    assert 'value="30m"' in page.text
    feed = client.get("/ui/activity").text
    assert "PolicyUpdated" in feed
    assert "max_updates_per_period" in feed


def test_policy_form_errors_beside_the_fields(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    before = catalog.get_group(engine_of(client), APP, GID)["policy"]
    form = {
        "csrf": csrf,
        "updates_enabled": "on",
        "max_updates_per_period": "lots",
        "period_interval": "soon",
        "update_timeout": "1h",
        "rollout_percent": "250",
        "max_failures": "-1",
        "timezone": "Mars/Olympus",
        "maintenance_windows": "Someday 25:00-26:00",
        "pinned_version": "latest",
    }
    r = client.post(f"{GROUP_URL}/policy", data=form)
    assert r.status_code == 422
    for field in (
        "max_updates_per_period",
        "period_interval",
        "rollout_percent",
        "max_failures",
        "timezone",
        "maintenance_windows",
        "pinned_version",
    ):
        assert f'id="err-{field}"' in r.text, field
    assert 'id="err-update_timeout"' not in r.text
    assert 'value="lots"' in r.text  # what was typed stays in the form
    assert catalog.get_group(engine_of(client), APP, GID)["policy"] == before
    empty = client.post(f"{GROUP_URL}/policy", data={"csrf": csrf})
    assert empty.status_code == 422
    assert 'id="err-timezone"' in empty.text


def test_csrf_is_required_for_cookie_sessions(client: TestClient) -> None:
    login(client, ADMIN)
    assert client.post(f"{GROUP_URL}/pause").status_code == 403
    assert client.post(f"{GROUP_URL}/pause", data={"csrf": "wrong"}).status_code == 403
    assert catalog.get_group(engine_of(client), APP, GID)["policy"]["updates_enabled"]


def test_bearer_tokens_act_without_csrf(client: TestClient) -> None:
    r = client.post(
        f"{GROUP_URL}/pause",
        headers={"Authorization": f"Bearer {ADMIN}"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert not catalog.get_group(engine_of(client), APP, GID)["policy"]["updates_enabled"]
    r = client.post(f"{GROUP_URL}/resume", headers={"Authorization": f"Bearer {READER}"})
    assert r.status_code == 403
    r = client.get("/", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_read_only_sees_but_cannot_act(client: TestClient) -> None:
    csrf = login(client, READER)
    page = client.get(GROUP_URL)
    assert page.status_code == 200
    assert "Read-only" in page.text
    assert "<fieldset disabled>" in page.text
    assert 'id="pause"' not in page.text
    assert "disabled" in client.get(f"/ui/apps/{APP}").text
    for path, data in (
        (f"{GROUP_URL}/pause", {}),
        (f"{GROUP_URL}/resume", {}),
        (f"{GROUP_URL}/policy", {"timezone": "UTC"}),
        (f"/ui/apps/{APP}/channels/stable", {"package": MID}),
        ("/ui/reboots/release", {"group": "default", "id": "a" * 32}),
    ):
        r = client.post(path, data={"csrf": csrf, **data})
        assert r.status_code == 403, path
        assert "Read-only" in r.text
    engine = engine_of(client)
    assert catalog.get_group(engine, APP, GID)["policy"]["updates_enabled"]
    assert {c["name"]: c for c in catalog.list_channels(engine, APP)}["stable"]["package"] == NEW


def test_pause_and_resume(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    r = client.post(f"{GROUP_URL}/pause", data={"csrf": csrf})
    assert r.status_code == 200  # followed the redirect
    assert "Updates paused." in r.text
    assert 'id="resume"' in r.text
    assert '<updatecheck status="noupdate"' in omaha(client, ue_request("e" * 32))
    r = client.post(f"{GROUP_URL}/resume", data={"csrf": csrf})
    assert "Updates resumed." in r.text
    assert catalog.get_group(engine_of(client), APP, GID)["policy"]["updates_enabled"]
    feed = client.get("/ui/activity").text
    assert "GroupPaused" in feed
    assert "GroupResumed" in feed


def test_resume_releases_a_tripped_brake(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    machine = "f" * 32
    assert 'status="ok"' in omaha(client, ue_request(machine, track="canary"))
    omaha(client, ue_request(machine, track="canary", check=False, event=(3, 0), errorcode=7))
    url = f"/ui/apps/{APP}/groups/{CANARY}"
    page = client.get(url)
    assert 'id="halted"' in page.text
    assert 'id="resume"' in page.text
    client.post(f"{url}/resume", data={"csrf": csrf})
    g = catalog.get_group(engine_of(client), APP, CANARY)
    assert g["halted_version"] is None
    assert 'id="halted"' not in client.get(url).text


def test_channel_form(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    url = f"/ui/apps/{APP}/channels/stable"
    engine = engine_of(client)
    before = {c["name"]: c for c in catalog.list_channels(engine, APP)}["stable"]["package"]
    # MID is older than what stable serves: a downgrade asks first and changes nothing.
    r = client.post(url, data={"csrf": csrf, "package": MID}, follow_redirects=False)
    assert r.status_code == 409
    assert 'id="confirm-downgrade"' in r.text and f"back from {before} to the older {MID}" in r.text
    assert 'name="confirm" value="downgrade"' in r.text
    assert {c["name"]: c for c in catalog.list_channels(engine, APP)}["stable"]["package"] == before
    r = client.post(
        url, data={"csrf": csrf, "package": MID, "confirm": "downgrade"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert {c["name"]: c for c in catalog.list_channels(engine, APP)}["stable"]["package"] == MID
    # Moving forward again needs no confirmation.
    r = client.post(url, data={"csrf": csrf, "package": before}, follow_redirects=False)
    assert r.status_code == 303
    assert "ChannelPackageUpdated" in client.get("/ui/activity").text
    for bad, msg in (("latest", "not a semantic version"), ("9.9.9", "no package of 9.9.9")):
        r = client.post(url, data={"csrf": csrf, "package": bad})
        assert r.status_code == 422
        assert msg in r.text
    assert (
        client.post(
            f"/ui/apps/{APP}/channels/nope", data={"csrf": csrf, "package": OLD}
        ).status_code
        == 404
    )


def test_live_data_follows_check_ins(client: TestClient) -> None:
    login(client, ADMIN)
    engine = engine_of(client)
    sample(engine)
    url = f"/ui/data/apps/{APP}/groups/{GID}"
    before = client.get(url).json()
    assert before["status"] == {"UpdateGranted": 3}
    assert before["progress"]["version"] == NEW
    assert before["progress"]["series"]["UpdateGranted"][-1] == 3
    omaha(client, ue_request("a" * 32, check=False, event=(13, 1)))
    after = client.get(url).json()
    assert after["status"] == {"UpdateGranted": 2, "Downloading": 1}
    assert after["progress"]["series"]["Downloading"][-1] == 1
    assert len(after["progress"]["labels"]) == 2  # one sample plus now
    assert client.get(f"/ui/data/apps/{APP}").json()[GID] == after["status"]
    feed = client.get("/ui/data/activity").json()["rows"]
    newest = feed[0]["id"]
    assert client.get("/ui/data/activity", params={"after": newest}).json()["rows"] == []
    client.post(f"{GROUP_URL}/pause", headers={"Authorization": f"Bearer {ADMIN}"})
    new = client.get("/ui/data/activity", params={"after": newest}).json()["rows"]
    assert [a["kind"] for a in new] == ["GroupPaused"]


def test_logout_and_oversized_forms(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    big = client.post(f"{GROUP_URL}/policy", content=b"csrf=" + b"x" * 70_000,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert big.status_code == 413
    r = client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_static_assets_are_served(client: TestClient) -> None:
    js = client.get("/ui/static/dashboard.js")
    assert js.status_code == 200
    assert "drawCharts" in js.text
    vendor = Path(__file__).parents[2] / "src/flotilla/updates/dashboard/static/vendor"
    if (vendor / "chart.umd.min.js").exists():
        assert client.get("/ui/static/vendor/chart.umd.min.js").status_code == 200
    assert client.get("/ui/static/../templates/base.html").status_code == 404


def test_pages_actions_and_samples_on_postgresql(pg_url: str) -> None:
    apply_doc(pg_url, fleet())
    settings = ServerSettings(db_url=pg_url, admin_tokens=(ADMIN,), sample_interval=0.2)
    with TestClient(create_app(settings)) as c:
        for m in ("a" * 32, "b" * 32):
            omaha(c, ue_request(m))
        omaha(c, ue_request("a" * 32, check=False, event=(13, 1)))
        csrf = login(c, ADMIN)
        for url in (
            "/",
            f"/ui/apps/{APP}",
            GROUP_URL,
            f"{GROUP_URL}/instances?sort=version&order=asc&q=a&status=Downloading",
            f"/ui/apps/{APP}/instances/{'a' * 32}",
            "/ui/activity",
            "/ui/reboots",
        ):
            assert c.get(url).status_code == 200, url
        r = c.post(f"{GROUP_URL}/pause", data={"csrf": csrf})
        assert "Updates paused." in r.text
        deadline = time.monotonic() + 20
        while True:  # the sampler task of the server's lifespan records samples
            data = c.get(f"/ui/data/apps/{APP}/groups/{GID}").json()
            if len(data["progress"]["labels"]) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(data["progress"]["labels"]) >= 2
        assert data["status"] == {"UpdateGranted": 1, "Downloading": 1}
        assert data["progress"]["series"]["Downloading"][-1] == 1


def test_reboot_locks_and_releasing_a_stale_one(client: TestClient) -> None:
    engine = engine_of(client)
    now = datetime.now(UTC)
    assert fleetlock_store.acquire(engine, "a" * 32, "default", now - timedelta(hours=3)).ok
    csrf = login(client, ADMIN)
    page = client.get("/ui/reboots")
    assert "a" * 32 in page.text
    assert "stale?" in page.text  # held for 3 hours
    assert "3h 0m" in page.text
    for form, code in (({"group": "default"}, 422), ({"group": "default", "id": "z" * 32}, 404)):
        assert client.post("/ui/reboots/release", data={"csrf": csrf, **form}).status_code == code
    r = client.post("/ui/reboots/release", data={"csrf": csrf, "group": "default", "id": "a" * 32})
    assert r.status_code == 200
    assert "Reboot lock released." in r.text
    assert fleetlock_store.list_holders(engine) == []
    assert "RebootLockReleased" in client.get("/ui/activity").text
