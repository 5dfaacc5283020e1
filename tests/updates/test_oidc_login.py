"""Dashboard login with OpenID Connect through the server's routes, and who the feed names.

The provider is :class:`FakeProvider` (real HTTP on loopback) so that every hostile answer can be
produced; the real provider (ORY Hydra) is in test_oidc.py and test_oidc_browser.py.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server import catalog, fleetlock_store
from flotilla.updates.server.api import create_app
from flotilla.updates.server.fleetspec import group_id
from flotilla.updates.server.oidc import OidcSettings
from flotilla.updates.server.schema import dashboard_sessions, groups
from flotilla.updates.server.settings import ServerSettings, SettingsError, settings_from_env

from .conftest import MID, NEW, OLD, SHA, apply_doc, fleet, ue_request
from .fake_oidc import OTHER_KEY, FakeProvider

APP = FLATCAR_APP_ID
GID = group_id(APP, "stable")
GROUP_URL = f"/ui/apps/{APP}/groups/{GID}"
API = f"/api/v1/apps/{APP}"
CALLBACK = "http://testserver/ui/oidc/callback"
CI_TOKEN = "ci-automation-secret-0123"
VIEW_TOKEN = "viewer-secret-0123456789"


def _settings(db: str, issuer: str, per_minute: int = 10, **oidc: Any) -> ServerSettings:
    return ServerSettings(
        login_attempts_per_minute=per_minute,
        db_url=db,
        admin_tokens=(f"ci:{CI_TOKEN}",),
        read_tokens=(f"viewer:{VIEW_TOKEN}",),
        oidc=OidcSettings(
            issuer=issuer,
            client_id="flotilla",
            client_secret="s3cret",
            redirect_url=CALLBACK,
            admin_values=("fleet-admins",),
            read_values=("fleet-viewers",),
            **oidc,
        ),
        config_ttl=0,
    )


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider() as p:
        yield p


@pytest.fixture
def client(sqlite_url: str, provider: FakeProvider) -> Iterator[TestClient]:
    apply_doc(sqlite_url, fleet())
    with TestClient(create_app(_settings(sqlite_url, provider.issuer))) as c:
        yield c


def start(client: TestClient, nxt: str = "/ui/activity") -> str:
    """Press "Log in with OpenID Connect"; returns the provider URL the browser is sent to."""
    login_page = client.get("/ui/login")
    assert 'id="oidc-login"' in login_page.text
    r = client.get(f"/ui/oidc/start?next={nxt}", follow_redirects=False)
    assert r.status_code == 303, r.text
    return str(r.headers["location"])


def at_provider(url: str) -> str:
    """What the browser does at the provider: returns our callback URL with code and state."""
    r = httpx.get(url, follow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    back = str(r.headers["location"])
    assert back.startswith(CALLBACK)
    return back[len("http://testserver") :]


def log_in(client: TestClient) -> httpx.Response:
    """The whole login; returns the callback's answer (not followed)."""
    return client.get(at_provider(start(client)), follow_redirects=False)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    assert m is not None, html[:500]
    return m.group(1)


def refused_page(r: httpx.Response, status: int, text: str) -> None:
    """A clear page with the reason, no session, no traceback."""
    assert r.status_code == status, re.sub(r"(?s).*<main>", "", r.text)[:800]
    assert text in r.text, r.text[:2000]
    assert "Traceback" not in r.text
    assert "flotilla_session" not in r.headers.get("set-cookie", "")


def test_login_opens_a_session_naming_the_person(client: TestClient) -> None:
    url = start(client, "/ui/activity")
    q = parse_qs(urlsplit(url).query)
    assert q["code_challenge_method"] == ["S256"] and q["response_type"] == ["code"]
    assert q["redirect_uri"] == [CALLBACK] and "nonce" in q
    r = client.get(at_provider(url), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/activity"
    assert "httponly" in r.headers["set-cookie"].lower()
    page = client.get("/ui/activity")
    assert '<span class="user" id="user">alice</span>' in page.text
    assert 'id="role">admin<' in page.text
    # Logging out ends the session: the old cookie is worthless.
    cookie = client.cookies["flotilla_session"]
    out = client.post("/ui/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("flotilla_session", cookie)
    assert client.get("/ui/activity", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ({"tamper": {"nonce": "not-the-one-sent"}}, "nonce"),
        ({"tamper": {"iss": "https://evil.test"}}, "iss"),
        ({"tamper": {"aud": "another-client"}}, "aud"),
        ({"tamper": {"exp": 1_000_000_000, "iat": 999_999_000}}, "expired"),
        ({"sign_with": OTHER_KEY}, "not valid"),
        ({"id_token": "not.a.token"}, "not valid"),
        ({"id_token": ""}, "no ID token"),
        ({"groups": ["staff"]}, "has no role here"),
        ({"user": "", "tamper": {"sub": "", "preferred_username": ""}}, "names nobody"),
    ],
)
def test_bad_id_tokens_and_claims_are_refused(
    client: TestClient, provider: FakeProvider, setup: dict[str, Any], why: str
) -> None:
    for k, v in setup.items():
        setattr(provider, k, v)
    r = log_in(client)
    refused_page(r, 403, "Login refused")
    assert why in r.text
    assert client.get("/ui/activity", follow_redirects=False).status_code == 303


def test_state_must_match_this_browsers_login(client: TestClient) -> None:
    back = at_provider(start(client))
    state = parse_qs(urlsplit(back).query)["state"][0]
    forged = back.replace(f"state={state}", "state=forged-state")
    refused_page(client.get(forged, follow_redirects=False), 400, "not started in this browser")
    # A callback in a browser that never started a login (login CSRF): refused as well.
    state_cookie = client.cookies["flotilla_oidc_state"]
    client.cookies.clear()
    refused_page(client.get(back, follow_redirects=False), 400, "not started in this browser")
    client.cookies.set("flotilla_oidc_state", state_cookie, path="/ui/oidc")
    refused_page(client.get("/ui/oidc/callback?code=x"), 400, "no state or code")
    # The real browser still finishes its login.
    assert client.get(back, follow_redirects=False).status_code == 303


def test_a_code_or_state_works_once(client: TestClient) -> None:
    back = at_provider(start(client))
    state_cookie = client.cookies["flotilla_oidc_state"]
    assert client.get(back, follow_redirects=False).status_code == 303
    # Replayed as is (the attacker kept the state cookie too): the login is used up.
    client.cookies.set("flotilla_oidc_state", state_cookie, path="/ui/oidc")
    refused_page(client.get(back, follow_redirects=False), 403, "unknown or expired")
    # The old code under a fresh login's state: the provider refuses it.
    fresh = at_provider(start(client))
    fresh_state = parse_qs(urlsplit(fresh).query)["state"][0]
    old_code = parse_qs(urlsplit(back).query)["code"][0]
    replay = f"/ui/oidc/callback?code={old_code}&state={fresh_state}"
    refused_page(client.get(replay, follow_redirects=False), 403, "refused the code")


def test_the_providers_refusal_is_shown(client: TestClient) -> None:
    start(client)
    r = client.get("/ui/oidc/callback?error=access_denied&error_description=The+user+said+no")
    refused_page(r, 403, "access_denied: The user said no")


def test_an_expired_session_must_log_in_again(client: TestClient) -> None:
    assert log_in(client).status_code == 303
    csrf = csrf_of(client.get("/ui/activity").text)
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            update(dashboard_sessions).values(last_used_at=datetime.now(UTC) - timedelta(hours=2))
        )
    r = client.get(GROUP_URL, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert client.post(f"{GROUP_URL}/pause", data={"csrf": csrf}).status_code == 401
    assert catalog.get_group(engine, APP, GID)["policy"]["updates_enabled"]


def test_starting_logins_is_rate_limited(sqlite_url: str, provider: FakeProvider) -> None:
    with TestClient(create_app(_settings(sqlite_url, provider.issuer, per_minute=3))) as c:
        codes = [c.get("/ui/oidc/start", follow_redirects=False).status_code for _ in range(4)]
        assert codes == [303, 303, 303, 429]
        assert "Too many login attempts" in c.get("/ui/oidc/start").text


def test_a_provider_that_is_down_is_a_clear_page(sqlite_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    with TestClient(create_app(_settings(sqlite_url, dead))) as c:
        r = c.get("/ui/oidc/start?next=/", follow_redirects=False)
        refused_page(r, 502, "cannot be used right now")
        assert 'id="token"' in r.text, "the token form still works"


def test_a_provider_that_hangs_is_a_clear_page(sqlite_url: str) -> None:
    with socket.socket() as s:  # listens, never accepts: connections wait for ever
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        hung = f"http://127.0.0.1:{s.getsockname()[1]}"
        with TestClient(create_app(_settings(sqlite_url, hung, timeout=0.5))) as c:
            r = c.get("/ui/oidc/start?next=/", follow_redirects=False)
    refused_page(r, 502, "cannot be used right now")


def test_a_provider_that_goes_down_during_the_login(sqlite_url: str) -> None:
    with FakeProvider() as p, TestClient(create_app(_settings(sqlite_url, p.issuer))) as c:
        back = at_provider(start(c))
        p.__exit__()
        refused_page(c.get(back, follow_redirects=False), 502, "cannot be reached")


# --- who may change what, and who the feed names -------------------------------------------------


def _session(client: TestClient, role: str, user: str) -> str:
    """A session as the OIDC callback opens it; returns its CSRF value."""
    dash = client.app.state.dashboard  # type: ignore[attr-defined]
    client.cookies.set("flotilla_session", dash.sessions.new_session(role, None, user))
    return csrf_of(client.get("/ui/activity").text)


def dashboard_changes(csrf: str) -> list[tuple[str, dict[str, str], str]]:
    """Every dashboard action: (path, form, what its feed entry says)."""
    return [
        (f"{GROUP_URL}/pause", {"csrf": csrf}, "updates paused by {who}"),
        (f"{GROUP_URL}/resume", {"csrf": csrf}, "updates resumed by {who}"),
        (
            f"{GROUP_URL}/policy",
            {"csrf": csrf, "updates_enabled": "on", "max_updates_per_period": "7",
             "period_interval": "1h", "update_timeout": "1h", "rollout_percent": "100",
             "max_failures": "1", "timezone": "UTC", "maintenance_windows": "",
             "pinned_version": ""},
            "policy changed by {who}",
        ),
        (
            f"/ui/apps/{APP}/channels/stable",
            {"csrf": csrf, "package": MID, "confirm": "downgrade"},
            f"channel stable: {NEW} -> {MID} (by {{who}})",
        ),
        ("/ui/reboots/release", {"csrf": csrf, "group": "default", "id": "a" * 32},
         "released by {who}"),
    ]  # fmt: skip


def api_changes() -> list[tuple[str, str, Any, str]]:
    """Every REST change: (method, path, JSON body, what its feed entry says)."""
    pkg = {"version": "9.9.9", "arch": "amd64", "url": "https://dl.test/9.9.9/",
           "filename": "u.gz", "size": 1, "sha256": SHA}  # fmt: skip
    doc = "applications:\n- id: extra\n  name: Extra\n"
    return [
        ("POST", "/api/v1/apps", {"id": "other", "name": "Other"}, "{who}: created application"),
        ("PUT", "/api/v1/apps/other", {"name": "Renamed"}, "{who}: updated application"),
        ("DELETE", "/api/v1/apps/other", None, "{who}: deleted application"),
        ("POST", f"{API}/packages", pkg, "{who}: created package"),
        ("PUT", f"{API}/channels/beta", {"package": "9.9.9"}, "(by {who})"),
        ("DELETE", f"{API}/channels/beta", None, "{who}: deleted channel beta"),
        ("DELETE", f"{API}/packages/9.9.9/amd64", None, "{who}: deleted package"),
        ("PUT", f"{API}/groups/ring1", {"track": "ring-1", "channel": "stable"},
         "{who}: created group ring1"),
        ("PUT", f"{API}/groups/ring1/policy", {"max_updates_per_period": 3},
         "policy changed by {who}"),
        ("POST", f"{API}/groups/ring1/resume", None, "resumed by {who}"),
        ("DELETE", f"{API}/groups/ring1", None, "{who}: deleted group ring1"),
        ("PUT", f"{API}/instances/{'c' * 32}", {"alias": "rack 4"}, "{who}: set the alias"),
        ("POST", "/api/v1/apply", doc, "{who}: applied created application extra"),
        ("DELETE", f"/api/v1/fleetlock/groups/default/holders/{'b' * 32}", None,
         "released by {who}"),
    ]  # fmt: skip


def _mutating_routes(app: Any) -> set[str]:
    out = set()
    for route in app.routes:
        inner = route.routes if isinstance(route, Mount) else [route]
        for r in inner:
            if isinstance(r, Route) and r.methods and r.methods - {"GET", "HEAD"}:
                path = (route.path if isinstance(route, Mount) else "") + r.path
                out |= {f"{m} {path}" for m in r.methods - {"GET", "HEAD"}}
    return out


def test_the_tables_below_cover_every_mutating_route(client: TestClient) -> None:
    covered = {f"POST {p}" for p, _, _ in dashboard_changes("x")} | {
        f"{m} {p}" for m, p, _, _ in api_changes()
    }
    open_ones = {  # no role needed: login, machines' protocols
        "POST /ui/login", "POST /ui/logout", "POST /v1/update/", "POST /v1/update",
        "POST /v1/update/{secret}", "POST /v1/update/{secret}/", "POST /v1/pre-reboot",
        "POST /v1/steady-state",
    }  # fmt: skip
    templates = {re.sub(r"\{[^}]+\}", "{}", r) for r in _mutating_routes(client.app) - open_ones}
    concrete = {
        re.sub(r"/(" + "|".join(map(re.escape, [APP, GID, "stable", "beta", "other", "9.9.9",
               "amd64", "ring1", "c" * 32, "default", "b" * 32])) + r")(?=/|$)", "/{}", c)
        for c in covered
    }  # fmt: skip
    assert templates <= concrete, templates - concrete


@pytest.fixture
def busy(db_url: str, provider: FakeProvider) -> Iterator[TestClient]:
    """A server on both databases with machines and a reboot lock to act on."""
    apply_doc(db_url, fleet(channel=NEW))
    with TestClient(create_app(_settings(db_url, provider.issuer))) as c:
        xml = {"Content-Type": "text/xml"}
        for m in ("a" * 32, "b" * 32, "c" * 32):
            assert c.post("/v1/update/", content=ue_request(m, OLD), headers=xml).is_success
        engine = c.app.state.services.engine  # type: ignore[attr-defined]
        assert fleetlock_store.acquire(engine, "a" * 32, "default", datetime.now(UTC)).ok
        yield c


def _feed(client: TestClient) -> str:
    return " | ".join(
        e["message"]
        for e in client.get("/api/v1/activity?limit=500", headers=_bearer(VIEW_TOKEN)).json()
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _call(client: TestClient, method: str, path: str, body: Any, token: str) -> httpx.Response:
    kw: dict[str, Any] = {"headers": _bearer(token)}
    if isinstance(body, str):
        kw["content"], kw["headers"]["Content-Type"] = body, "application/yaml"
    elif body is not None:
        kw["json"] = body
    return client.request(method, path, **kw)


def test_readers_change_nothing_and_admins_are_named_in_the_feed(busy: TestClient) -> None:
    engine = busy.app.state.services.engine  # type: ignore[attr-defined]
    before = _feed(busy)
    # A person whose groups make a reader: every dashboard action is refused.
    csrf = _session(busy, "read", "bob")
    for path, form, _ in dashboard_changes(csrf):
        r = busy.post(path, data=form, follow_redirects=False)
        assert r.status_code == 403 and "Read-only" in r.text, path
    # A read token: every REST change is refused.
    for method, path, body, _ in api_changes():
        assert _call(busy, method, path, body, VIEW_TOKEN).status_code == 403, (method, path)
    assert _feed(busy) == before
    assert catalog.get_group(engine, APP, GID)["policy"]["updates_enabled"]
    assert len(fleetlock_store.list_holders(engine)) == 1

    # An admin who logged in with OIDC: each action lands in the feed with her name.
    csrf = _session(busy, "admin", "alice@example.test")
    for path, form, said in dashboard_changes(csrf):
        r = busy.post(path, data=form, follow_redirects=False)
        assert r.status_code == 303, (path, r.text[:300])
        assert said.format(who="alice@example.test") in _feed(busy), said
    # A named token for automation: its name, not a person's.
    assert fleetlock_store.acquire(engine, "b" * 32, "default", datetime.now(UTC)).ok
    for method, path, body, said in api_changes():
        if path.endswith("/resume"):
            with engine.begin() as conn:
                conn.execute(update(groups).values(halted_version=NEW, halted_reason="test"))
        r = _call(busy, method, path, body, CI_TOKEN)
        assert r.status_code < 300, (method, path, r.text)
        assert said.format(who="ci") in _feed(busy), said


def test_the_group_page_says_who_paused(client: TestClient) -> None:
    csrf = _session(client, "admin", "carol")
    client.post(f"{GROUP_URL}/pause", data={"csrf": csrf})
    assert "paused by carol at " in client.get(GROUP_URL).text


# --- configuration -------------------------------------------------------------------------------


def test_settings_from_the_environment(tmp_path: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    env = {
        "FLOTILLA_UPDATES_OIDC_ISSUER": "https://dex.example.test",
        "FLOTILLA_UPDATES_OIDC_CLIENT_ID": "flotilla",
        "FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE": str(secret),
        "FLOTILLA_UPDATES_OIDC_REDIRECT_URL": "https://updates.example.test/ui/oidc/callback",
        "FLOTILLA_UPDATES_OIDC_ROLE_CLAIM": "roles",
        "FLOTILLA_UPDATES_OIDC_ADMIN_VALUES": "ops,sre",
        "FLOTILLA_UPDATES_OIDC_READ_VALUES": "dev",
    }
    s = settings_from_env(env).oidc
    assert s is not None
    assert (s.client_secret, s.role_claim, s.admin_values, s.read_values) == (
        "from-a-file", "roles", ("ops", "sre"), ("dev",)
    )  # fmt: skip
    s = settings_from_env(env | {"FLOTILLA_UPDATES_OIDC_CLIENT_SECRET": "from-env"}).oidc
    assert s is not None and s.client_secret == "from-env"
    assert settings_from_env({}).oidc is None
    secret.write_text("with,commas\n")
    s = settings_from_env(env).oidc
    assert s is not None and s.client_secret == "with,commas"
    secret.write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        settings_from_env(env)
    with pytest.raises(SettingsError, match="cannot read"):
        settings_from_env(env | {"FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE": "/nonexistent"})
    secret.write_text("s3cret\n")
    with pytest.raises(SettingsError, match="admin-values"):
        settings_from_env({k: v for k, v in env.items() if "VALUES" not in k})


def test_serve_refuses_half_an_oidc_configuration(tmp_path: Any) -> None:
    from flotilla.cli import app

    runner = CliRunner()
    base = ["updates", "serve", "--db", f"sqlite:///{tmp_path}/u.db"]
    r = runner.invoke(app, [*base, "--oidc-issuer", "https://id.test", "--oidc-client-id", "c",
                            "--oidc-redirect-url", "https://u.test/ui/oidc/callback"])  # fmt: skip
    assert r.exit_code != 0 and "--oidc-admin-values" in r.output, r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--oidc-issuer", "https://id.test", "--oidc-client-id", "c",
                            "--oidc-redirect-url", "https://u.test/ui/oidc/callback",
                            "--oidc-admin-values", "ops", "--workers", "2"])  # fmt: skip
    assert r.exit_code != 0 and "--workers 1" in r.output, r.output
    help_text = runner.invoke(app, ["updates", "serve", "--help"]).output
    assert "--oidc-client-secret-file" in help_text
    assert "--oidc-client-secret " not in help_text  # the secret never goes on a command line
