"""A small OpenID Connect provider for the hostile cases a real one never produces.

It serves discovery, its keys, an authorization endpoint that logs the configured person in at
once (no page), and a token endpoint that checks the code (once) and the PKCE verifier, then signs
an ID token. ``tamper`` changes the ID token's claims (a wrong nonce, issuer, audience, an expired
token) and ``sign_with`` signs it with a key the provider never published.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .conftest import UvicornThread

KEY = ECKey.generate_key("P-256", parameters={"kid": "published"}, private=True)
OTHER_KEY = ECKey.generate_key("P-256", parameters={"kid": "published"}, private=True)
"""Same key id, different key: a token signed with it must fail the signature check."""


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    challenge: str
    user: str


@dataclass
class FakeProvider:
    """Run it with ``with FakeProvider() as p:``; ``p.issuer`` is its URL."""

    user: str = "alice"
    groups: list[str] = field(default_factory=lambda: ["fleet-admins"])
    tamper: dict[str, Any] = field(default_factory=dict)
    sign_with: ECKey = field(default_factory=lambda: KEY)
    id_token: str | None = None
    """Sent instead of a signed token when set (garbage, or "" for none at all)."""
    grants: dict[str, Grant] = field(default_factory=dict)
    thread: UvicornThread | None = None

    @property
    def issuer(self) -> str:
        assert self.thread is not None
        return f"http://127.0.0.1:{self.thread.port}"

    def __enter__(self) -> FakeProvider:
        self.thread = UvicornThread(self._app()).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop answering (a second call does nothing): tests stop it to play a dead provider."""
        if self.thread is not None and self.thread.thread.is_alive():
            self.thread.__exit__()

    def _app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{self.issuer}/auth",
                    "token_endpoint": f"{self.issuer}/token",
                    "jwks_uri": f"{self.issuer}/jwks",
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"],
                }
            )

        async def jwks(request: Request) -> Response:
            return JSONResponse(KeySet([KEY]).as_dict(private=False))

        async def auth(request: Request) -> Response:
            q = request.query_params
            assert q["code_challenge_method"] == "S256"
            code = secrets.token_urlsafe(16)
            self.grants[code] = Grant(
                q["client_id"], q["redirect_uri"], q["nonce"], q["code_challenge"], self.user
            )
            back = urlencode({"code": code, "state": q["state"]})
            return RedirectResponse(f"{q['redirect_uri']}?{back}", 302)

        async def token(request: Request) -> Response:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            grant = self.grants.pop(form.get("code", ""), None)  # a code works once
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if grant is None:
                return JSONResponse({"error": "invalid_grant"}, 400)
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "sub": f"sub-{grant.user}",
                "aud": grant.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": grant.nonce,
                "preferred_username": grant.user,
                "groups": self.groups,
            } | self.tamper
            id_token = self.id_token
            if id_token is None:
                header = {"alg": "ES256", "kid": "published"}
                id_token = jwt.encode(header, claims, self.sign_with)
            body: dict[str, Any] = {"access_token": "at", "token_type": "Bearer"}
            if id_token:
                body["id_token"] = id_token
            return JSONResponse(body)

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
                Route("/auth", auth),
                Route("/token", token, methods=["POST"]),
            ]
        )
