"""OpenID Connect login against a real provider (ORY Hydra) over HTTP: code flow with PKCE, the ID
token checked, roles from the groups claim, and what must be refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from flotilla.updates.server.oidc import OidcClient, OidcError, OidcSettings, Person

from .oidc_provider import Hydra

CALLBACK = "http://127.0.0.1:9/ui/oidc/callback"
SECRET = "flotilla-test-client-secret"


_OPEN: list[OidcClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def clients(settings: OidcSettings, http: httpx.Client | None = None) -> OidcClient:
    """An OidcClient closed after the test."""
    client = OidcClient(settings, http)
    _OPEN.append(client)
    return client


def _settings(hydra: Hydra, client_id: str, **over: object) -> OidcSettings:
    base: dict[str, object] = {
        "issuer": hydra.issuer,
        "client_id": client_id,
        "client_secret": SECRET,
        "redirect_url": CALLBACK,
        "admin_values": ("fleet-admins",),
        "read_values": ("fleet-viewers",),
    }
    return OidcSettings(**(base | over))  # type: ignore[arg-type]


def _browse(start: str, user: str) -> tuple[str, str]:
    """What a browser does between the provider and our callback; returns (state, code)."""
    with httpx.Client(timeout=10) as browser:
        url = start
        for _ in range(20):
            if url.startswith(CALLBACK):
                q = parse_qs(urlsplit(url).query)
                if "error" in q:
                    raise AssertionError(f"provider error: {q}")
                return q["state"][0], q["code"][0]
            r = browser.get(url)
            if r.status_code == 200 and "login_challenge" in url:
                challenge = parse_qs(urlsplit(url).query)["login_challenge"][0]
                r = browser.post(url.split("?")[0], data={"user": user, "challenge": challenge})
            assert r.is_redirect, (r.status_code, r.text[:300])
            url = urljoin(url, r.headers["location"])
    raise AssertionError("too many redirects")


@pytest.fixture(scope="module")
def client_id(hydra: Hydra) -> str:
    return hydra.register_client(CALLBACK, SECRET)


@pytest.mark.parametrize(
    ("user", "person"),
    [("alice", Person("alice", "admin")), ("bob", Person("bob", "read"))],
)
def test_people_log_in_with_the_role_their_groups_grant(
    hydra: Hydra, client_id: str, user: str, person: Person
) -> None:
    oidc = clients(_settings(hydra, client_id))
    url = oidc.start("/ui/apps")
    q = parse_qs(urlsplit(url).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) >= 43
    state, code = _browse(url, user)
    got, next_path = oidc.finish(state, code)
    assert got == person and next_path == "/ui/apps"
    with pytest.raises(OidcError, match="unknown or expired"):
        oidc.finish(state, code)  # a state works once


def test_a_person_without_an_allowed_group_is_refused(hydra: Hydra, client_id: str) -> None:
    oidc = clients(_settings(hydra, client_id))
    state, code = _browse(oidc.start("/ui/"), "mallory")
    with pytest.raises(OidcError, match="no role here"):
        oidc.finish(state, code)


def test_a_forged_or_reused_code_is_refused(hydra: Hydra, client_id: str) -> None:
    oidc = clients(_settings(hydra, client_id))
    state, code = _browse(oidc.start("/ui/"), "alice")
    oidc.finish(state, code)
    state2, _ = _browse(oidc.start("/ui/"), "alice")
    with pytest.raises(OidcError, match="refused the code"):
        oidc.finish(state2, code)  # the first login's code, replayed


def test_a_wrong_secret_is_refused_by_the_provider(hydra: Hydra, client_id: str) -> None:
    oidc = clients(_settings(hydra, client_id, client_secret="not-the-secret"))
    state, code = _browse(oidc.start("/ui/"), "alice")
    with pytest.raises(OidcError, match="refused the code"):
        oidc.finish(state, code)


def test_an_issuer_that_does_not_match_discovery_is_refused(hydra: Hydra, client_id: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"issuer": "https://evil.test", "jwks_uri": "x"})

    oidc = clients(
        _settings(hydra, client_id), http=httpx.Client(transport=httpx.MockTransport(answer))
    )
    with pytest.raises(OidcError, match="names issuer"):
        oidc.start("/ui/")


def test_a_dead_provider_is_a_clear_error(tmp_path: Path) -> None:
    settings = OidcSettings(
        issuer="http://127.0.0.1:9",
        client_id="c",
        redirect_url=CALLBACK,
        admin_values=("a",),
    )
    with pytest.raises(OidcError, match="cannot read"):
        clients(settings, http=httpx.Client(timeout=2)).start("/ui/")


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"issuer": "ftp://x"}, "http"),
        ({"client_id": ""}, "client-id"),
        ({"admin_values": (), "read_values": ()}, "admin-values"),
    ],
)
def test_settings_are_checked_at_start_up(over: dict[str, object], error: str) -> None:
    base: dict[str, object] = {
        "issuer": "https://id.test",
        "client_id": "c",
        "redirect_url": CALLBACK,
        "admin_values": ("a",),
    }
    with pytest.raises(OidcError, match=error):
        OidcSettings(**(base | over))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"sub": "s1", "groups": "fleet-admins"}, Person("s1", "admin")),
        (
            {"sub": "s1", "email": "e@x", "groups": ["fleet-viewers", "fleet-admins"]},
            Person("e@x", "admin"),
        ),
        (
            {"sub": "s1", "preferred_username": "p", "groups": ["fleet-viewers"]},
            Person("p", "read"),
        ),
    ],
)
def test_roles_and_names_from_claims(claims: dict[str, object], expected: Person) -> None:
    settings = OidcSettings(
        issuer="https://id.test",
        client_id="c",
        redirect_url=CALLBACK,
        admin_values=("fleet-admins",),
        read_values=("fleet-viewers",),
    )
    assert clients(settings).person(claims) == expected
