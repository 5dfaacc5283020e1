"""HTTP adapter: the Omaha endpoint, the REST API under /api/v1, /metrics and /healthz.

No ``from __future__ import annotations`` here: FastAPI must evaluate the route annotations,
which refer to names local to :func:`create_app`.

Translation only: bodies are parsed by :mod:`omaha` / :mod:`fleetspec`, decisions happen in
:mod:`store` / :mod:`policies`, and errors map to status codes in one place (``_errors``).
"""

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from flotilla import __version__
from flotilla.updates.models import Channel, ExtraFile, InvalidVersionError, Package, Version
from flotilla.updates.server import catalog
from flotilla.updates.server.dashboard import mount as mount_dashboard
from flotilla.updates.server.fleetlock_http import router as fleetlock_router
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet, policy_problems
from flotilla.updates.server.metrics import Metrics
from flotilla.updates.server.omaha import MAX_BODY, OmahaError, parse_request, render_response
from flotilla.updates.server.schema import make_engine, migrate
from flotilla.updates.server.settings import ServerSettings, settings_from_env
from flotilla.updates.server.store import Store

logger = logging.getLogger(__name__)

XML = "text/xml; charset=utf-8"


class ChannelIn(BaseModel):
    """Body of ``PUT /api/v1/apps/{app}/channels/{name}``."""

    package: str | None = Field(
        None, description="Version the channel serves (a package of it must exist)."
    )
    blocked_versions: list[str] = Field(default_factory=list)
    floors: list[str] = Field(default_factory=list)


class ExtraFileIn(BaseModel):
    """An extra payload of a package."""

    name: str
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class PackageIn(BaseModel):
    """Body of ``POST /api/v1/apps/{app}/packages``."""

    version: str
    arch: str = Field("amd64", pattern=r"^(amd64|arm64)$")
    url: str = Field(pattern=r"^https?://")
    filename: str = Field(min_length=1, pattern=r"^[^/]+$")
    size: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    sha1: str = Field("", pattern=r"^([0-9a-fA-F]{40})?$")
    extra_files: list[ExtraFileIn] = Field(default_factory=list)


class _Auth:
    """Bearer tokens: admin may do anything, read only GET; compared in constant time."""

    def __init__(self, admin: tuple[str, ...], read: tuple[str, ...]) -> None:
        self.admin = admin
        self.read = read

    @staticmethod
    def _match(token: str, allowed: tuple[str, ...]) -> bool:
        return any(hmac.compare_digest(token.encode(), a.encode()) for a in allowed)

    def role(self, creds: HTTPAuthorizationCredentials | None) -> str:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        if self._match(creds.credentials, self.admin):
            return "admin"
        if self._match(creds.credentials, self.read):
            return "read"
        raise HTTPException(401, "unknown token", {"WWW-Authenticate": "Bearer"})


def _client_ip(request: Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        fwd = request.headers.get("x-forwarded-for", "")
        if fwd:
            return fwd.split(",")[0].strip()[:64]
    return request.client.host if request.client else ""


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise OmahaError(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OmahaError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the server: migrate the database, wire store, metrics, auth and routes."""
    engine = make_engine(settings.db_url, settings.pool_size)
    migrate(engine)
    store_holder: dict[str, Store] = {}
    metrics = Metrics(lambda: store_holder["store"].fleet_counts())
    store = Store(engine, metrics.observer(), settings.config_ttl)
    store_holder["store"] = store
    auth = _Auth(settings.admin_tokens, settings.read_tokens)
    bearer = HTTPBearer(auto_error=False)

    async def prune_loop() -> None:
        assert settings.retention is not None
        while True:
            try:
                n = await run_in_threadpool(store.prune, settings.retention)
                if n:
                    logger.info("pruned %d instances not seen for %s", n, settings.retention)
            except SQLAlchemyError:
                logger.exception("pruning failed; will retry")
            await asyncio.sleep(settings.prune_interval.total_seconds())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if settings.retention is not None:
            task = asyncio.create_task(prune_loop(), name="flotilla-updates-prune")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=5)
            engine.dispose()

    app = FastAPI(
        title="Flotilla updates",
        version=__version__,
        description="Omaha update server for Flatcar fleets, with rollout policies.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.engine = engine

    def reader(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        return auth.role(creds)

    def admin(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if auth.role(creds) != "admin":
            raise HTTPException(403, "this needs an admin token")
        return "admin"

    read_role = Annotated[str, Depends(reader)]
    admin_role = Annotated[str, Depends(admin)]

    def _errors(exc: Exception) -> JSONResponse:
        if isinstance(exc, catalog.NotFoundError):
            return JSONResponse({"detail": str(exc)}, 404)
        if isinstance(exc, catalog.CatalogError | InvalidVersionError | ValueError):
            return JSONResponse({"detail": str(exc)}, 422)
        raise exc

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except (catalog.NotFoundError, catalog.CatalogError, ValueError) as e:
            return _errors(e)

    async def change(fn: Callable[..., Any], *args: Any) -> Any:
        """An admin write: run it, then drop this process's cached groups."""
        try:
            return await call(fn, *args)
        finally:
            store.invalidate()

    # --- Omaha ---------------------------------------------------------------------------------

    async def omaha(request: Request) -> Response:
        start = time.perf_counter()
        code = 200
        try:
            body = await _read_limited(request, MAX_BODY)
            req = parse_request(body)
            now = datetime.now(UTC)
            answers = await run_in_threadpool(
                store.checkin, req, _client_ip(request, settings.trust_forwarded_for), now
            )
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return Response(
                render_response(answers, int((now - midnight).total_seconds())), 200, media_type=XML
            )
        except OmahaError as e:
            code = 400
            logger.info("bad Omaha request: %s", e)
            return PlainTextResponse(f"bad request: {e}\n", 400)
        except SQLAlchemyError:
            code = 503
            logger.exception("database error on an Omaha request")
            return PlainTextResponse("database unavailable\n", 503, headers={"Retry-After": "60"})
        finally:
            metrics.requests.labels(str(code)).inc()
            metrics.latency.observe(time.perf_counter() - start)

    # The hot path is served by plain Starlette routes placed first (FastAPI's dependency
    # machinery costs a noticeable share of a check-in); the FastAPI route only documents it.
    for path in ("/v1/update/", "/v1/update"):
        app.router.routes.insert(0, Route(path, omaha, methods=["POST"]))
    app.add_api_route(
        "/v1/update/",
        omaha,
        methods=["POST"],
        summary="Omaha v3 update check (open, no token; text/xml body)",
        tags=["omaha"],
    )

    # --- health and metrics --------------------------------------------------------------------

    @app.get("/healthz", tags=["ops"], response_class=PlainTextResponse)
    async def healthz() -> Response:
        """200 when the database answers, 503 otherwise."""
        try:
            await run_in_threadpool(store.ping_db)
        except SQLAlchemyError:
            return PlainTextResponse("database unavailable\n", 503)
        return PlainTextResponse("ok\n")

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prom() -> Response:
        """Prometheus exposition."""
        data = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    # --- REST ----------------------------------------------------------------------------------

    v1 = "/api/v1"

    @app.get(f"{v1}/apps", tags=["apps"])
    async def apps(_: read_role) -> Any:
        """Every application."""
        return await call(catalog.list_apps, engine)

    @app.get(f"{v1}/apps/{{app_id}}/packages", tags=["packages"])
    async def packages(app_id: str, _: read_role) -> Any:
        """Packages of an application (one per version and arch)."""
        return await call(catalog.list_packages, engine, app_id)

    @app.post(f"{v1}/apps/{{app_id}}/packages", tags=["packages"])
    async def add_package(app_id: str, body: PackageIn, _: admin_role) -> Any:
        """Create or update a package; returns what changed."""
        try:
            Version.parse(body.version)
        except InvalidVersionError as e:
            return _errors(e)
        pkg = Package(
            app_id,
            body.version,
            body.arch,
            body.url,
            body.filename,
            body.size,
            body.sha256.lower(),
            body.sha1.lower(),
            tuple(ExtraFile(e.name, e.size, e.sha256.lower()) for e in body.extra_files),
        )
        return await change(catalog.add_package, engine, pkg)

    @app.get(f"{v1}/apps/{{app_id}}/channels", tags=["channels"])
    async def channels(app_id: str, _: read_role) -> Any:
        """Channels with their version, floors and blocked versions."""
        return await call(catalog.list_channels, engine, app_id)

    @app.put(f"{v1}/apps/{{app_id}}/channels/{{name}}", tags=["channels"])
    async def put_channel(app_id: str, name: str, body: ChannelIn, _: admin_role) -> Any:
        """Point a channel at a version (logged as ChannelPackageUpdated)."""
        try:
            for v in [
                *([body.package] if body.package else []),
                *body.blocked_versions,
                *body.floors,
            ]:
                Version.parse(v)
        except InvalidVersionError as e:
            return _errors(e)
        ch = Channel(app_id, name, body.package, tuple(body.blocked_versions), tuple(body.floors))
        return await change(catalog.set_channel, engine, ch)

    @app.get(f"{v1}/apps/{{app_id}}/groups", tags=["groups"])
    async def groups(app_id: str, _: read_role) -> Any:
        """Groups with policy and rollout state (halted, failures)."""
        return await call(catalog.list_groups, engine, app_id)

    @app.get(f"{v1}/apps/{{app_id}}/groups/{{group}}", tags=["groups"])
    async def group(app_id: str, group: str, _: read_role) -> Any:
        """One group, by name or id."""
        return await call(catalog.get_group, engine, app_id, group)

    @app.put(f"{v1}/apps/{{app_id}}/groups/{{group}}/policy", tags=["groups"])
    async def put_policy(app_id: str, group: str, body: dict[str, Any], _: admin_role) -> Any:
        """Replace a group's policy (fields as in fleet files; missing ones take defaults)."""
        problems = policy_problems(body)
        if problems:
            return JSONResponse({"detail": [f"{k}: {m}" for k, m in problems]}, 422)
        return await change(catalog.set_group_policy, engine, app_id, group, body)

    @app.post(f"{v1}/apps/{{app_id}}/groups/{{group}}/resume", tags=["groups"])
    async def resume(app_id: str, group: str, _: admin_role) -> Any:
        """Release a rollout halted by the failure or timeout brake."""
        return await change(catalog.resume_group, engine, app_id, group)

    @app.get(f"{v1}/apps/{{app_id}}/instances", tags=["instances"])
    async def instances(
        app_id: str,
        _: read_role,
        group: str | None = None,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        """Instances, most recently seen first; filter by group (name or id) and status."""
        return await call(catalog.list_instances, engine, app_id, group, status, limit, offset)

    @app.get(f"{v1}/apps/{{app_id}}/instances/{{machine_id}}", tags=["instances"])
    async def instance(app_id: str, machine_id: str, _: read_role) -> Any:
        """One instance with its status history."""
        return await call(catalog.get_instance, engine, app_id, machine_id)

    @app.get(f"{v1}/activity", tags=["activity"])
    async def feed(
        _: read_role, app_id: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> Any:
        """The activity feed, newest first."""
        return await call(catalog.list_activity, engine, app_id, limit)

    @app.post(f"{v1}/apply", tags=["apply"])
    async def apply(request: Request, _: admin_role) -> Any:
        """Apply a fleet file (YAML body), exactly like ``flotilla updates apply``."""
        try:
            raw = await _read_limited(request, 4 * 1024 * 1024)
            spec = parse_fleet(raw.decode("utf-8"))
        except FleetFileError as e:
            return JSONResponse({"detail": e.problems}, 422)
        except (OmahaError, UnicodeDecodeError) as e:
            return JSONResponse({"detail": str(e)}, 413 if isinstance(e, OmahaError) else 422)
        return await change(catalog.apply_fleet, engine, spec)

    # --- dashboard (``/`` and ``/ui``; plain Starlette routes, not in the OpenAPI document) ------
    mount_dashboard(
        app,
        engine,
        settings.admin_tokens,
        settings.read_tokens,
        store.invalidate,
        settings.sample_interval,
    )

    # --- FleetLock (``/v1/pre-reboot``, ``/v1/steady-state``, ``/api/v1/fleetlock/...``) ----------
    app.include_router(fleetlock_router(engine, reader, admin))

    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers``): settings come from the environment."""
    return create_app(settings_from_env())
