"""Dashboard sessions live on the server: random ids, revoked on logout, idle and hard expiry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from flotilla.updates.cli import app as updates_cli
from flotilla.updates.server.api import create_app
from flotilla.updates.server.dashboard.auth import COOKIE, LOGIN_COOKIE, LoginLimiter
from flotilla.updates.server.schema import dashboard_sessions
from flotilla.updates.server.settings import (
    ServerSettings,
    SettingsError,
    read_secret_file,
    settings_from_env,
)
from tests.updates.conftest import ADMIN, READER
from tests.updates.test_dashboard import _csrf, login


def _app(db: str, **kw: Any) -> Any:
    return create_app(
        ServerSettings(db_url=db, admin_tokens=(ADMIN,), read_tokens=(READER,), sample_interval=0,
                       **kw)
    )  # fmt: skip


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(_app(db_url)) as c:
        yield c


def _logged_in(c: TestClient) -> bool:
    return c.get("/", follow_redirects=False).status_code == 200


def test_a_cookie_from_before_logout_is_refused(client: TestClient) -> None:
    csrf = login(client, ADMIN)
    cookie = client.cookies[COOKIE]
    assert _logged_in(client)
    client.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
    client.cookies.set(COOKIE, cookie)  # the attacker kept a copy
    assert not _logged_in(client)
    r = client.post("/ui/data/activity")  # nor does it act
    assert r.status_code in (401, 405)


def test_sessions_are_random_and_stored_hashed(client: TestClient) -> None:
    login(client, ADMIN)
    first = client.cookies[COOKIE]
    client.cookies.clear()
    login(client, ADMIN)
    second = client.cookies[COOKIE]
    assert first != second and len(first) >= 40
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        stored = {r.id_sha256 for r in conn.execute(select(dashboard_sessions))}
    assert first not in stored and second not in stored and len(stored) == 2


def test_the_login_page_gives_nothing_derived_from_a_token(sqlite_url: str) -> None:
    values = []
    for _ in range(2):
        with TestClient(_app(sqlite_url)) as c:
            page = c.get("/ui/login")
            assert c.cookies[LOGIN_COOKIE] == _csrf(page.text)  # a random double-submit value
            values.append(c.cookies[LOGIN_COOKIE])
    assert values[0] != values[1]


def test_a_forged_or_unknown_cookie_is_anonymous(client: TestClient) -> None:
    for value in ("x", "a" * 43, "a" * 5000, "%00"):
        client.cookies.set(COOKIE, value)
        assert not _logged_in(client)


def test_replicas_share_sessions(sqlite_url: str) -> None:
    with TestClient(_app(sqlite_url)) as one, TestClient(_app(sqlite_url)) as two:
        csrf = login(one, READER)
        two.cookies.set(COOKIE, one.cookies[COOKIE])
        assert _logged_in(two)
        one.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
        assert not _logged_in(two)


def test_idle_and_absolute_expiry(client: TestClient) -> None:
    sessions = client.app.state.dashboard.sessions  # type: ignore[attr-defined]
    t0 = datetime.now(UTC)
    sid = sessions.new_session("admin", t0)
    assert sessions.lookup(sid, t0 + timedelta(minutes=50)).role == "admin"
    assert sessions.lookup(sid, t0 + timedelta(minutes=100)).role == "admin"  # used at 50'
    assert sessions.lookup(sid, t0 + timedelta(minutes=161)).role == ""  # idle for > 1 h
    sid = sessions.new_session("read", t0)
    for minutes in range(30, 12 * 60, 30):  # used every half hour, never idle
        assert sessions.lookup(sid, t0 + timedelta(minutes=minutes)).role == "read"
    assert sessions.lookup(sid, t0 + timedelta(hours=12, minutes=1)).role == ""


def test_login_attempts_are_limited_per_client(sqlite_url: str) -> None:
    with TestClient(_app(sqlite_url, login_attempts_per_minute=3)) as c:
        codes = []
        for _ in range(5):
            page = c.get("/ui/login")
            r = c.post("/ui/login", data={"csrf": _csrf(page.text), "token": "guess" * 4})
            codes.append(r.status_code)
        assert codes == [401, 401, 401, 429, 429]
        page = c.get("/ui/login")  # even the right token waits
        r = c.post("/ui/login", data={"csrf": _csrf(page.text), "token": ADMIN})
        assert r.status_code == 429
        assert "Too many login attempts" in r.text


def test_the_limiter_forgets_after_a_minute() -> None:
    lim = LoginLimiter(2)
    assert lim.allow("c", 0.0) and lim.allow("c", 1.0) and not lim.allow("c", 2.0)
    assert lim.allow("other", 2.0)
    assert lim.allow("c", 61.5)


def test_short_tokens_are_refused_at_start_up(sqlite_url: str) -> None:
    with pytest.raises(SettingsError, match="at least 16"):
        create_app(ServerSettings(db_url=sqlite_url, admin_tokens=("short",)))
    with pytest.raises(SettingsError, match="read token"):
        create_app(ServerSettings(db_url=sqlite_url, read_tokens=("fifteen-chars!!",)))
    r = CliRunner().invoke(
        updates_cli, ["serve", "--db", sqlite_url, "--admin-token", "admin"], env={}
    )
    assert r.exit_code == 1
    assert "tokens need at least 16" in r.output and "Traceback" not in r.output


def test_tokens_from_files_and_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "admin"
    f.write_text("# the ops team\nfirst-token-0123456789\n\nsecond-token-0123456789\n")
    assert read_secret_file(str(f)) == ("first-token-0123456789", "second-token-0123456789")
    env = {
        "FLOTILLA_UPDATES_ADMIN_TOKENS": "env-token-0123456789",
        "FLOTILLA_UPDATES_ADMIN_TOKEN_FILE": str(f),
        "FLOTILLA_UPDATES_READ_TOKENS": "a-reader-token-0123456789,another-reader-0123456789",
    }
    s = settings_from_env(env)
    assert s.admin_tokens == ("env-token-0123456789", *read_secret_file(str(f)))
    assert len(s.read_tokens) == 2
    with pytest.raises(SettingsError, match="cannot read token file"):
        read_secret_file(str(tmp_path / "missing"))
    r = CliRunner().invoke(
        updates_cli,
        ["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--admin-token-file",
         str(tmp_path / "missing")],
        env={},
    )  # fmt: skip
    assert r.exit_code == 1 and "cannot read token file" in r.output


def test_no_token_appears_in_pages_or_cookies(client: TestClient) -> None:
    login(client, ADMIN)
    html = client.get("/").text + client.get("/ui/login").text
    assert ADMIN not in html
    assert all(ADMIN not in v and READER not in v for v in client.cookies.values())
    assert re.search(r"flotilla_session", html) is None
