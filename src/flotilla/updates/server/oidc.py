"""Log people in with OpenID Connect: authorization code with PKCE, roles from a claim.

Authlib drives the OAuth 2 exchange (authorization URL with ``S256`` PKCE, the token request) and
joserfc, Authlib's JOSE library, checks the ID token against the provider's published keys
(signature, ``iss``, ``aud``, ``exp``, ``nonce``). The provider is found by discovery
(``/.well-known/openid-configuration``), and its issuer must be the configured one. A person's
role comes from one claim (``groups`` by default): a value in ``admin_values`` makes an admin, one
in ``read_values`` a reader, anything else is refused. Tokens stay for machines and automation.

A login in flight (state, nonce, PKCE verifier) is kept by :class:`PendingLogins`, in this
process's memory for 10 minutes: with several replicas, the callback must reach the replica that
started the login (sticky sessions), which is documented.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from flotilla.core.errors import FlotillaError

MAX_PENDING = 10_000
PENDING_SECONDS = 600.0


class OidcError(FlotillaError):
    """A login that cannot complete: the provider, the answer or the person's claims."""


class ProviderDownError(OidcError):
    """The provider does not answer (refused, timed out): the login page says so with a 502."""


def _unreachable(e: Exception) -> bool:
    """A connection refused or timed out. Authlib's client is built on ``httpx2`` (a fork of
    httpx with the same classes), so its errors are matched by class name."""
    return isinstance(e, OSError) or any(c.__name__ == "TransportError" for c in type(e).__mro__)


@dataclass(frozen=True)
class OidcSettings:
    """``--oidc-*`` settings; the client secret is read from a file or the environment."""

    issuer: str
    client_id: str
    redirect_url: str
    """This server's ``/ui/oidc/callback`` as the browser reaches it."""
    client_secret: str = ""
    """Empty for a public client (PKCE alone)."""
    scopes: tuple[str, ...] = ("openid", "profile", "email", "groups")
    role_claim: str = "groups"
    admin_values: tuple[str, ...] = ()
    read_values: tuple[str, ...] = ()
    user_claims: tuple[str, ...] = ("preferred_username", "email", "sub")
    """The first of these present names the person in the activity feed."""
    timeout: float = 10.0
    """Seconds to wait for the provider: a provider that hangs becomes a clear error."""

    def __post_init__(self) -> None:
        for name, url in (
            ("--oidc-issuer", self.issuer),
            ("--oidc-redirect-url", self.redirect_url),
        ):
            if not url.startswith(("http://", "https://")):
                raise OidcError(f"{name} {url!r} must be an http(s) URL")
        if not self.client_id:
            raise OidcError("--oidc-client-id is required with --oidc-issuer")
        if not self.admin_values and not self.read_values:
            raise OidcError(
                "OIDC needs --oidc-admin-values or --oidc-read-values: "
                f"values of the {self.role_claim!r} claim that grant a role"
            )


@dataclass(frozen=True)
class PendingLogin:
    """What the callback must match: the state sent, the nonce and the PKCE verifier."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    created: float


@dataclass(frozen=True)
class Person:
    """Who logged in and what they may do."""

    user: str
    role: str
    """``admin`` or ``read``."""


class PendingLogins:
    """Logins in flight, each usable once, forgotten after :data:`PENDING_SECONDS`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, PendingLogin] = OrderedDict()

    def add(self, login: PendingLogin) -> None:
        with self._lock:
            self._expire(time.monotonic())
            self._items[login.state] = login
            while len(self._items) > MAX_PENDING:
                self._items.popitem(last=False)

    def take(self, state: str) -> PendingLogin | None:
        with self._lock:
            self._expire(time.monotonic())
            return self._items.pop(state, None)

    def _expire(self, now: float) -> None:
        while self._items:
            first = next(iter(self._items.values()))
            if now - first.created < PENDING_SECONDS:
                return
            self._items.popitem(last=False)


class OidcClient:
    """One provider: discovery and keys fetched when first needed, then kept."""

    def __init__(self, settings: OidcSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.Client(timeout=settings.timeout)
        self.pending = PendingLogins()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OidcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (its issuer must be ours)."""
        if self._metadata is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc = self._get_json(url)
            if doc.get("issuer", "").rstrip("/") != self.settings.issuer.rstrip("/"):
                raise OidcError(f"{url} names issuer {doc.get('issuer')!r}, not ours")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(key), str):
                    raise OidcError(f"{url} has no {key}")
            self._metadata = doc
        return self._metadata

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            r = self.http.get(url)
            r.raise_for_status()
            doc = r.json()
        except httpx.TransportError as e:
            raise ProviderDownError(f"cannot read {url}: {e}") from None
        except (httpx.HTTPError, ValueError) as e:
            raise OidcError(f"cannot read {url}: {e}") from None
        if not isinstance(doc, dict):
            raise OidcError(f"{url} is not a JSON object")
        return doc

    def _key_set(self, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            try:
                self._keys = KeySet.import_key_set(self._get_json(self.metadata()["jwks_uri"]))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError) as e:
                raise OidcError(f"the provider's keys are unusable: {e}") from None
        return self._keys

    def _oauth(self) -> OAuth2Client:
        s = self.settings
        return OAuth2Client(
            client_id=s.client_id,
            client_secret=s.client_secret or None,
            scope=" ".join(s.scopes),
            redirect_uri=s.redirect_url,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if s.client_secret else "none",
            timeout=s.timeout,
        )

    def start(self, next_path: str) -> str:
        """The provider URL to send the browser to; the login is remembered until the callback."""
        login = PendingLogin(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next_path=next_path,
            created=time.monotonic(),
        )
        with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                self.metadata()["authorization_endpoint"],
                state=login.state,
                nonce=login.nonce,
                code_verifier=login.verifier,
            )
        self.pending.add(login)
        return str(url)

    def finish(self, state: str, code: str) -> tuple[Person, str]:
        """Exchange the code, check the ID token, map the role; returns (person, next path)."""
        login = self.pending.take(state)
        if login is None:
            raise OidcError("this login is unknown or expired; start again")
        try:
            with self._oauth() as oauth:
                token = oauth.fetch_token(
                    self.metadata()["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=login.verifier,
                )
        except OidcError:
            raise
        except Exception as e:  # Authlib raises its own OAuthError, httpx its HTTP errors
            if _unreachable(e):
                raise ProviderDownError(f"cannot reach the token endpoint: {e}") from None
            raise OidcError(f"the provider refused the code: {e}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider sent no ID token (is the openid scope allowed?)")
        claims = self._claims(id_token, login.nonce)
        return self.person(claims), login.next_path

    def _claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        s = self.settings
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set())
            except JoseError:
                decoded = jwt.decode(id_token, self._key_set(refresh=True))  # keys rotated
            registry = jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.metadata()["issuer"]},
                aud={"essential": True, "value": s.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError) as e:  # garbage raises these too
            raise OidcError(f"the ID token is not valid: {e or type(e).__name__}") from None
        return dict(decoded.claims)

    def person(self, claims: dict[str, Any]) -> Person:
        """The role the configured claim grants (admin wins), or :class:`OidcError`."""
        s = self.settings
        raw = claims.get(s.role_claim, [])
        values = {raw} if isinstance(raw, str) else {str(v) for v in raw or []}
        user = next((str(claims[c]) for c in s.user_claims if claims.get(c)), "")
        if not user:
            raise OidcError("the ID token names nobody (no preferred_username, email or sub)")
        if values & set(s.admin_values):
            return Person(user[:200], "admin")
        if values & set(s.read_values):
            return Person(user[:200], "read")
        raise OidcError(
            f"{user[:200]} has no role here: no allowed value in the {s.role_claim!r} claim"
        )
