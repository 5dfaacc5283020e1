"""Who is looking at the dashboard, and whether this request may change anything.

A person logs in with OpenID Connect (:mod:`oidc`, when the server has an issuer) or by pasting a
token (the same admin or read tokens as the REST API). The server creates a session row in the
database - so every replica knows it - and answers with an HttpOnly, SameSite=Lax cookie holding
only the session's random id; the database keeps the id's SHA-256, the role, the user (the
person's name, or the token's) and a CSRF secret. A session ends on logout (the row is deleted),
after ``idle`` without use, or ``max_age`` after login. Nothing sent to a browser is derived from
a token, so nothing lets anyone test token guesses offline; login attempts are limited per client
address.

Every form carries the session's CSRF secret in a hidden field and every POST must echo it.
Scripts may use ``Authorization: Bearer`` instead: no cookie means no CSRF risk. The login form
is protected by a double-submit value (random, in a SameSite=Strict cookie and the form).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, or_, select, update
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from flotilla.updates.server.schema import dashboard_sessions, reading
from flotilla.updates.server.settings import split_token

COOKIE = "flotilla_session"
LOGIN_COOKIE = "flotilla_login_csrf"
TOUCH_EVERY = timedelta(minutes=1)
"""A session's last use is written at most this often (the idle expiry's resolution)."""
_MAX_CLIENTS = 10_000
"""Clients the login limiter remembers; beyond that it forgets the quietest."""


@dataclass(frozen=True)
class Viewer:
    """The person (or script) behind a request."""

    role: str
    """``admin``, ``read`` or ``""`` (not logged in)."""
    csrf: str = ""
    """The session's CSRF secret (empty for bearer-token requests)."""
    bearer: bool = False
    user: str = ""
    """Who the activity feed names: the OIDC person, or the token's name."""

    @property
    def can_act(self) -> bool:
        """Only admins change things."""
        return self.role == "admin"

    @property
    def can_read(self) -> bool:
        """Readers and admins see the pages."""
        return self.role in ("admin", "read")


ANONYMOUS = Viewer("")


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class LoginLimiter:
    """At most ``per_minute`` login attempts per client address (in this process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._seen: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def allow(self, client: str, now: float | None = None) -> bool:
        """Count an attempt; False when the client already made too many this minute."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(client, None) or collections.deque()
            while times and times[0] <= now - 60:
                times.popleft()
            self._seen[client] = times
            while len(self._seen) > _MAX_CLIENTS:
                self._seen.popitem(last=False)
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


class Sessions:
    """Token checks, server-side sessions and CSRF secrets."""

    engine: Engine
    """Set by :meth:`bind` once the server's lifespan has opened the database."""

    def __init__(
        self,
        admin_tokens: tuple[str, ...],
        read_tokens: tuple[str, ...],
        idle: timedelta = timedelta(hours=1),
        max_age: timedelta = timedelta(hours=12),
        login_per_minute: int = 10,
    ) -> None:
        self.tokens = [(*split_token(t, "admin"), "admin") for t in admin_tokens] + [
            (*split_token(t, "read"), "read") for t in read_tokens
        ]
        self.idle = idle
        self.max_age = max_age
        self.limiter = LoginLimiter(login_per_minute)

    def bind(self, engine: Engine) -> None:
        """Keep sessions in ``engine``'s database."""
        self.engine = engine

    def role_for_token(self, token: str) -> str:
        """``admin``, ``read`` or ``""``; compared in constant time."""
        return self.identify(token)[0]

    def identify(self, token: str) -> tuple[str, str]:
        """(role, token name), ``("", "")`` for an unknown token; every token is compared."""
        found = ("", "")
        if not token:
            return found
        for name, secret, role in self.tokens:
            if hmac.compare_digest(token.encode(), secret.encode()) and not found[0]:
                found = (role, name)
        return found

    # --- sessions (blocking: called through run_in_threadpool) -------------------------------

    def new_session(self, role: str, now: datetime | None = None, user: str = "") -> str:
        """Store a session for ``role`` and ``user``; returns its random id (the cookie's value)."""
        now = now or datetime.now(UTC)
        session_id = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(  # expired sessions go whenever someone logs in
                delete(dashboard_sessions).where(
                    or_(
                        dashboard_sessions.c.last_used_at < now - self.idle,
                        dashboard_sessions.c.created_at < now - self.max_age,
                    )
                )
            )
            conn.execute(
                insert(dashboard_sessions),
                {
                    "id_sha256": _digest(session_id),
                    "role": role,
                    "user_name": user[:200],
                    "csrf": secrets.token_urlsafe(24),
                    "created_at": now,
                    "last_used_at": now,
                },
            )
        return session_id

    def lookup(self, session_id: str, now: datetime | None = None) -> Viewer:
        """The viewer a cookie stands for; anonymous when unknown, revoked or expired."""
        if not session_id or len(session_id) > 100:
            return ANONYMOUS
        now = now or datetime.now(UTC)
        key = _digest(session_id)
        this = dashboard_sessions.c.id_sha256 == key
        with reading(self.engine) as conn:  # no write lock for most page views (SQLite)
            row = conn.execute(select(dashboard_sessions).where(this)).first()
        if row is None:
            return ANONYMOUS
        created, used = _aware(row.created_at), _aware(row.last_used_at)
        if created <= now - self.max_age or used <= now - self.idle:
            with self.engine.begin() as conn:
                conn.execute(delete(dashboard_sessions).where(this))
            return ANONYMOUS
        if used <= now - TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(dashboard_sessions).where(this).values(last_used_at=now))
        if row.role not in ("admin", "read"):
            return ANONYMOUS
        user = str(row.user_name or "") or f"{row.role} token"
        return Viewer(str(row.role), str(row.csrf), user=user)

    def revoke(self, session_id: str) -> None:
        """End a session (logout): its cookie is worthless from now on, wherever it is."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(dashboard_sessions).where(
                    dashboard_sessions.c.id_sha256 == _digest(session_id)
                )
            )

    # --- request helpers ---------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer:
        """Who sent ``request``: a bearer token wins over the cookie."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            role, name = self.identify(auth[7:].strip())
            return Viewer(role, bearer=True, user=name)
        raw = request.cookies.get(COOKIE)
        if not raw:
            return ANONYMOUS
        return await run_in_threadpool(self.lookup, raw)

    @staticmethod
    def login_csrf() -> tuple[str, str]:
        """(form value, cookie value) protecting the login form: the same random value."""
        value = secrets.token_urlsafe(24)
        return value, value

    @staticmethod
    def login_csrf_ok(request: Request, form_value: str) -> bool:
        """The login form's CSRF field matches its cookie."""
        expected = request.cookies.get(LOGIN_COOKIE, "")
        return bool(expected) and hmac.compare_digest(expected.encode(), form_value.encode())


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back naive; they are UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def csrf_ok(viewer: Viewer, form_value: str) -> bool:
    """A cookie session must echo its CSRF secret; a bearer token needs none."""
    if viewer.bearer:
        return True
    return bool(viewer.csrf) and hmac.compare_digest(viewer.csrf.encode(), form_value.encode())
