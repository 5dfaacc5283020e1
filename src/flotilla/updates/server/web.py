"""What every HTTP handler of the update server shares: its services, bearer roles, error table.

Handlers are module-level functions; they find their collaborators in ``app.state.services``
(built by the lifespan in :mod:`api`), check roles with :data:`ReadRole` / :data:`AdminRole`, and
raise domain errors. :data:`EXCEPTION_HANDLERS` is the one place that turns those errors into
status codes, in the body shape of the protocol the request spoke (Omaha, FleetLock or REST).

No ``from __future__ import annotations``: FastAPI evaluates the dependency annotations.
"""

import hmac
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flotilla.updates.models import InvalidVersionError
from flotilla.updates.reboots.fleetlock import FleetLockError
from flotilla.updates.server.catalog import CatalogError, NotFoundError
from flotilla.updates.server.catalog_admin import InUseError
from flotilla.updates.server.fleetspec import FleetFileError
from flotilla.updates.server.metrics import Metrics
from flotilla.updates.server.omaha import OmahaError
from flotilla.updates.server.omaha_access import is_omaha_path
from flotilla.updates.server.settings import ServerSettings, split_token
from flotilla.updates.server.store import Store

logger = logging.getLogger(__name__)

FLEETLOCK_PATHS = frozenset({"/v1/pre-reboot", "/v1/steady-state"})


class BodyTooLargeError(ValueError):
    """A request body over the endpoint's limit (413 in the REST API)."""


class Auth:
    """Bearer tokens: admin may do anything, read only GET; compared in constant time.

    Each token has a name (``NAME:SECRET`` in the configuration, else ``admin token`` /
    ``read token``), which the activity feed shows for the changes made with it.
    """

    def __init__(self, admin: tuple[str, ...], read: tuple[str, ...]) -> None:
        self.tokens = [(*split_token(t, "admin"), "admin") for t in admin] + [
            (*split_token(t, "read"), "read") for t in read
        ]

    def identify(self, token: str) -> tuple[str, str]:
        """(role, token name) for a presented token, ``("", "")`` when unknown."""
        found = ("", "")
        for name, secret, role in self.tokens:  # every token compared: no early exit
            if hmac.compare_digest(token.encode(), secret.encode()) and not found[0]:
                found = (role, name)
        return found

    def who(self, creds: HTTPAuthorizationCredentials | None) -> tuple[str, str]:
        """(``admin`` or ``read``, token name); 401 for a missing or unknown token."""
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        role, name = self.identify(creds.credentials)
        if not role:
            raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})
        return role, name

    def role(self, creds: HTTPAuthorizationCredentials | None) -> str:
        """``admin`` or ``read``; 401 for a missing or unknown token."""
        return self.who(creds)[0]


@dataclass(frozen=True)
class Services:
    """The collaborators handlers need; the lifespan builds them once per process."""

    settings: ServerSettings
    engine: Engine
    store: Store
    metrics: Metrics
    auth: Auth


def services(request: Request) -> Services:
    """The running server's services (a FastAPI dependency)."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]
_bearer = HTTPBearer(auto_error=False)
Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def reader(svc: Svc, creds: Creds) -> str:
    """Any valid token may read."""
    return svc.auth.role(creds)


def admin(svc: Svc, creds: Creds) -> str:
    """Only an admin token may change things; returns the token's name (for the feed)."""
    role, name = svc.auth.who(creds)
    if role != "admin":
        raise HTTPException(403, "this needs an admin token")
    return name


ReadRole = Annotated[str, Depends(reader)]
AdminRole = Annotated[str, Depends(admin)]


async def read_limited(
    request: Request, limit: int, too_large: Callable[[str], Exception] = BodyTooLargeError
) -> bytes:
    """The body, refused (``too_large`` raised) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- the error table -----------------------------------------------------------------------------


ExceptionHandler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def _detail(status: int) -> ExceptionHandler:
    async def handler(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status)

    return handler


async def _fleet_file(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FleetFileError)
    return JSONResponse({"detail": exc.problems}, 422)


async def _omaha(_request: Request, exc: Exception) -> Response:
    logger.info("bad Omaha request: %s", exc)
    return PlainTextResponse(f"bad request: {exc}\n", 400)


async def _fleetlock(_request: Request, exc: Exception) -> Response:
    """FleetLock errors: any non-200 status with ``{"kind": ..., "value": ...}``."""
    assert isinstance(exc, FleetLockError)
    return JSONResponse({"kind": exc.kind, "value": str(exc)}, 400)


async def _bad_value(request: Request, exc: Exception) -> Response:
    """A value the database or Python refused (too wide, out of range, NUL, too deep): 422."""
    logger.info("refused a value on %s %s: %s", request.method, request.url.path, exc)
    text = "a value is out of range, too long or contains a NUL byte"
    if is_omaha_path(request.url.path):
        return PlainTextResponse(f"bad request: {text}\n", 400)
    return JSONResponse({"detail": text}, 422)


async def _database(request: Request, exc: Exception) -> Response:
    """503 in the shape of the protocol the client spoke; Omaha clients are told when to retry."""
    path = request.url.path
    logger.error("database error on %s %s", request.method, path, exc_info=exc)
    if is_omaha_path(path):
        return PlainTextResponse("database unavailable\n", 503, headers={"Retry-After": "60"})
    if path in FLEETLOCK_PATHS:
        return JSONResponse({"kind": "unavailable", "value": "database unavailable"}, 503)
    if path.startswith("/api/"):
        return JSONResponse({"detail": "database unavailable"}, 503)
    return PlainTextResponse("database unavailable\n", 503)


EXCEPTION_HANDLERS: dict[int | type[Exception], ExceptionHandler] = {
    # Most specific first for readers; Starlette picks the closest class in the error's MRO.
    OmahaError: _omaha,  # 400, text: update_engine logs the body
    FleetLockError: _fleetlock,  # 400, {"kind", "value"} as the protocol says
    BodyTooLargeError: _detail(413),
    FleetFileError: _fleet_file,  # 422, one problem per line of the fleet file
    NotFoundError: _detail(404),
    InUseError: _detail(409),  # a delete that would leave users dangling; names them
    CatalogError: _detail(422),
    InvalidVersionError: _detail(422),
    ValueError: _detail(422),  # the catalog's argument checks, undecodable bodies
    DataError: _bad_value,  # 422: the database refused a value (PostgreSQL: width, NUL, range)
    OverflowError: _bad_value,  # 422: an integer or duration past what fits
    RecursionError: _bad_value,  # 422: nesting too deep to walk
    SQLAlchemyError: _database,  # 503
}


class OmahaMetrics:
    """Counts Omaha requests by status code and times them, whoever answered (handler or table)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_omaha_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        metrics: Metrics = scope["app"].state.services.metrics
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.requests.labels(str(status)).inc()
            metrics.latency.observe(time.perf_counter() - start)
