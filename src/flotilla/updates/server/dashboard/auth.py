"""Who is looking at the dashboard, and whether this request may change anything.

A person logs in by pasting a token (the same admin or read tokens as the REST API); the server
answers with a signed, HttpOnly, SameSite=Lax cookie holding the role and a CSRF secret. Every
form carries that CSRF secret in a hidden field and every POST must echo it. Scripts may use
``Authorization: Bearer`` instead: no cookie means no CSRF risk, so no CSRF field is needed.

The signing key is derived from the configured tokens, so all worker processes agree on it without
another setting, and changing the tokens logs everybody out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

COOKIE = "flotilla_session"
LOGIN_COOKIE = "flotilla_login_csrf"
SESSION_SECONDS = 12 * 3600
"""How long a login lasts."""


@dataclass(frozen=True)
class Viewer:
    """The person (or script) behind a request."""

    role: str
    """``admin``, ``read`` or ``""`` (not logged in)."""
    csrf: str = ""
    """The session's CSRF secret (empty for bearer-token requests)."""
    bearer: bool = False

    @property
    def can_act(self) -> bool:
        """Only admins change things."""
        return self.role == "admin"

    @property
    def can_read(self) -> bool:
        """Readers and admins see the pages."""
        return self.role in ("admin", "read")


ANONYMOUS = Viewer("")


class Sessions:
    """Token checks, session cookies and CSRF secrets."""

    def __init__(self, admin_tokens: tuple[str, ...], read_tokens: tuple[str, ...]) -> None:
        self.admin = admin_tokens
        self.read = read_tokens
        material = "\0".join(("flotilla-dashboard-v1", *admin_tokens, "\1", *read_tokens))
        key = hashlib.sha256(material.encode()).hexdigest()
        self._signer = URLSafeTimedSerializer(key, salt="flotilla-session")
        self._login_signer = URLSafeTimedSerializer(key, salt="flotilla-login")

    def role_for_token(self, token: str) -> str:
        """``admin``, ``read`` or ``""``; compared in constant time."""

        def match(allowed: tuple[str, ...]) -> bool:
            return any(hmac.compare_digest(token.encode(), a.encode()) for a in allowed)

        if not token:
            return ""
        if match(self.admin):
            return "admin"
        if match(self.read):
            return "read"
        return ""

    def new_session(self, role: str) -> str:
        """A signed cookie value for ``role`` with a fresh CSRF secret."""
        return self._signer.dumps({"r": role, "c": secrets.token_urlsafe(24)})

    def viewer(self, request: Request) -> Viewer:
        """Who sent ``request``: a bearer token wins over the cookie."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return Viewer(self.role_for_token(auth[7:].strip()), bearer=True)
        raw = request.cookies.get(COOKIE)
        if not raw:
            return ANONYMOUS
        try:
            data = self._signer.loads(raw, max_age=SESSION_SECONDS)
        except BadSignature:
            return ANONYMOUS
        if not isinstance(data, dict) or data.get("r") not in ("admin", "read"):
            return ANONYMOUS
        return Viewer(str(data["r"]), str(data.get("c", "")))

    def login_csrf(self) -> tuple[str, str]:
        """(form value, signed cookie value) protecting the login form itself."""
        value = secrets.token_urlsafe(24)
        return value, self._login_signer.dumps(value)

    def login_csrf_ok(self, request: Request, form_value: str) -> bool:
        """The login form's CSRF field matches its cookie."""
        raw = request.cookies.get(LOGIN_COOKIE, "")
        try:
            expected = self._login_signer.loads(raw, max_age=3600)
        except BadSignature:
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected, form_value)


def csrf_ok(viewer: Viewer, form_value: str) -> bool:
    """A cookie session must echo its CSRF secret; a bearer token needs none."""
    if viewer.bearer:
        return True
    return bool(viewer.csrf) and hmac.compare_digest(viewer.csrf, form_value)
