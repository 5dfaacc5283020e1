"""HTTP adapter: the Omaha endpoint, the REST API under /api/v1, /metrics and /healthz.

Shaped as starlette shapes a server: handlers are module-level functions that take their
collaborators from the app state (:mod:`web`), :func:`routes` is the one table of the whole
surface (FleetLock and the dashboard contribute their lists), :data:`web.EXCEPTION_HANDLERS` maps
domain errors to status codes, and :func:`lifespan` opens and migrates the database and owns
every background task. Bodies are parsed by :mod:`omaha` / :mod:`fleetspec`; decisions happen in
:mod:`store` / :mod:`policies`.

No ``from __future__ import annotations``: FastAPI evaluates the route annotations.
"""

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from flotilla import __version__
from flotilla.core.tasks import BackgroundTasks, every
from flotilla.updates.server import (
    admin_api,
    catalog,
    catalog_admin,
    fleetlock_http,
    grantguard,
    omaha_access,
)
from flotilla.updates.server.dashboard import Dashboard, Sessions, actions, sample
from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet, policy_problems
from flotilla.updates.server.lastseen import FLUSH_INTERVAL
from flotilla.updates.server.metrics import Metrics
from flotilla.updates.server.oidc import OidcClient
from flotilla.updates.server.omaha import MAX_BODY, OmahaError, parse_request, render_response
from flotilla.updates.server.releases.payload_host import PayloadHost
from flotilla.updates.server.releases.syncer import Syncer
from flotilla.updates.server.schema import make_engine, migrate, new_machine_grants, reading
from flotilla.updates.server.schema import packages as packages_t
from flotilla.updates.server.settings import ServerSettings, check_settings, settings_from_env
from flotilla.updates.server.store import Store
from flotilla.updates.server.web import (
    EXCEPTION_HANDLERS,
    AdminRole,
    Auth,
    OmahaMetrics,
    ReadRole,
    Services,
    Svc,
    read_limited,
)

logger = logging.getLogger(__name__)

XML = "text/xml; charset=utf-8"
APPLY_MAX_BODY = 4 * 1024 * 1024


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


async def _change(svc: Services, fn: Any, *args: Any) -> Any:
    """An admin write: run it, then drop this process's cached groups (also when it failed)."""
    try:
        return await run_in_threadpool(fn, *args)
    finally:
        svc.store.invalidate()


# --- Omaha (plain ASGI: FastAPI's and Starlette's request machinery cost more than a check-in) --


class OmahaEndpoint:
    """``POST /v1/update[/<secret>][/]`` as a bare ASGI app: body in, one check-in, XML out.

    It answers its own errors in the Omaha shape (400 for a bad request or a value the database
    refused, 503 with ``Retry-After`` when the database is down), so it runs the same behind the
    route table and on :class:`UpdateServer`'s fast path, which skips the middleware stack.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, media = await self._answer(scope, receive)
        except ClientDisconnect:
            return
        except OmahaError as e:
            logger.info("bad Omaha request: %s", e)
            status, body, media = 400, f"bad request: {e}\n".encode(), TEXT
        except (DataError, OverflowError, RecursionError) as e:
            logger.info("refused a value on POST %s: %s", scope["path"], e)
            text = "bad request: a value is out of range, too long or contains a NUL byte\n"
            status, body, media = 400, text.encode(), TEXT
        except SQLAlchemyError as e:
            logger.error("database error on POST %s", scope["path"], exc_info=e)
            await _send(send, 503, b"database unavailable\n", TEXT, ((b"retry-after", b"60"),))
            return
        except ValueError as e:  # anything else refused as a value: as the error table answers it
            status, body, media = 422, json.dumps({"detail": str(e)}).encode(), JSON
        await _send(send, status, body, media)

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        app = scope["app"]
        svc: Services = app.state.services
        headers = dict(reversed(scope["headers"]))  # the first of repeated headers, as Starlette
        secret = omaha_access.path_secret(scope["path"])
        refused = omaha_access.refusal(
            secret if isinstance(secret, str) else None,
            headers.get(SECRET_HEADER, b"").decode("latin-1"),
            headers.get(b"content-type", b"").decode("latin-1"),
            svc.settings.omaha_secret,
        )
        if refused is not None:
            return refused[0], refused[1].encode(), TEXT
        body = await _read_body(receive, headers.get(b"content-length"))
        req = parse_request(body)
        now = datetime.now(UTC)
        ip = _scope_ip(scope, headers, svc.settings.trust_forwarded_for)
        pool: ThreadPoolExecutor = app.state.checkin_pool
        checkin = functools.partial(svc.store.checkin, req, ip, now)
        answers = await asyncio.get_running_loop().run_in_executor(pool, checkin)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return 200, render_response(answers, int((now - midnight).total_seconds())), XML_MEDIA


OMAHA = OmahaEndpoint()
SECRET_HEADER = omaha_access.SECRET_HEADER.encode()
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
XML_MEDIA = XML.encode()


async def _send(
    send: Send, status: int, body: bytes, media: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", media), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, declared: bytes | None) -> bytes:
    """The request body, refused (:class:`OmahaError`) as soon as it passes :data:`MAX_BODY`."""
    too_large = f"request body larger than {MAX_BODY} bytes"
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise OmahaError(too_large)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise OmahaError(too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _scope_ip(scope: Scope, headers: dict[bytes, bytes], trust_forwarded: bool) -> str:
    if trust_forwarded:
        # The last address is the one our proxy added; earlier ones the client may have invented.
        fwd = headers.get(b"x-forwarded-for", b"").decode("latin-1")
        if fwd:
            return fwd.split(",")[-1].strip()[:64]
    client = scope.get("client")
    return str(client[0]) if client else ""


async def omaha(request: Request) -> Response:
    """Omaha v3 update check (open, no token; text/xml body).

    Only documents the endpoint in the OpenAPI schema: :data:`OMAHA`'s routes come first in the
    table and answer every request.
    """
    raise AssertionError("answered by OMAHA")  # pragma: no cover


# --- health and metrics --------------------------------------------------------------------------


def _database_answers(store: Store) -> bool:
    """The health check itself: does the database answer, and does it take a write?

    The write (a row inserted and deleted in one committed transaction) fails when the disk is
    full or the database is read-only, which a plain ``SELECT 1`` never notices.
    """
    try:
        store.ping_db()
        with store.engine.begin() as conn:
            row = {"network": "healthz", "app_id": "", "machine_id": "", "at": datetime.now(UTC)}
            conn.execute(insert(new_machine_grants), row)
            probe = new_machine_grants.c.network == "healthz"
            conn.execute(delete(new_machine_grants).where(probe))
    except SQLAlchemyError:
        return False
    return True


async def healthz(svc: Svc) -> Response:
    """200 when the database answers and takes writes, 503 otherwise."""
    if await run_in_threadpool(_database_answers, svc.store):
        return PlainTextResponse("ok\n")
    return PlainTextResponse("database unavailable\n", 503)


async def prom(svc: Svc) -> Response:
    """Prometheus exposition."""
    data = await run_in_threadpool(generate_latest, svc.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


# --- REST ----------------------------------------------------------------------------------------


async def apps(svc: Svc, _: ReadRole) -> Any:
    """Every application."""
    return await run_in_threadpool(catalog.list_apps, svc.engine)


async def packages(app_id: str, svc: Svc, _: ReadRole) -> Any:
    """Packages of an application (one per version and arch)."""
    return await run_in_threadpool(catalog.list_packages, svc.engine, app_id)


async def add_package(app_id: str, body: PackageIn, svc: Svc, who: AdminRole) -> Any:
    """Create or replace a package (checked as a fleet file's package is); returns what changed."""
    raw = body.model_dump()
    return await _change(svc, catalog_admin.put_package, svc.engine, app_id, raw, who)


async def channels(app_id: str, svc: Svc, _: ReadRole) -> Any:
    """Channels with their version, floors and blocked versions."""
    return await run_in_threadpool(catalog.list_channels, svc.engine, app_id)


async def put_channel(app_id: str, name: str, body: ChannelIn, svc: Svc, who: AdminRole) -> Any:
    """Create or change a channel (checked as a fleet file's channel is; moves are logged)."""
    raw = {k: v for k, v in body.model_dump().items() if v is not None}
    return await _change(svc, catalog_admin.put_channel, svc.engine, app_id, name, raw, who)


async def groups(app_id: str, svc: Svc, _: ReadRole) -> Any:
    """Groups with policy and rollout state (halted, failures)."""
    return await run_in_threadpool(catalog.list_groups, svc.engine, app_id)


async def group(app_id: str, group: str, svc: Svc, _: ReadRole) -> Any:
    """One group, by name or id."""
    return await run_in_threadpool(catalog.get_group, svc.engine, app_id, group)


async def put_policy(
    app_id: str, group: str, body: dict[str, Any], svc: Svc, who: AdminRole
) -> Any:
    """Replace a group's policy (fields as in fleet files; missing ones take defaults)."""
    problems = policy_problems(body)
    if problems:
        raise FleetFileError([f"{k}: {m}" for k, m in problems])
    return await _change(svc, actions.set_policy, svc.engine, app_id, group, body, who)


async def resume(app_id: str, group: str, svc: Svc, who: AdminRole) -> Any:
    """Release a rollout halted by the failure or timeout brake."""
    return await _change(svc, catalog.resume_group, svc.engine, app_id, group, who)


async def instances(
    app_id: str,
    svc: Svc,
    _: ReadRole,
    group: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Any:
    """Instances, most recently seen first; filter by group (name or id) and status."""
    return await run_in_threadpool(
        catalog.list_instances, svc.engine, app_id, group, status, limit, offset
    )


async def instance(app_id: str, machine_id: str, svc: Svc, _: ReadRole) -> Any:
    """One instance with its status history."""
    return await run_in_threadpool(catalog.get_instance, svc.engine, app_id, machine_id)


async def feed(
    svc: Svc,
    _: ReadRole,
    app_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Any:
    """The activity feed, newest first."""
    return await run_in_threadpool(catalog.list_activity, svc.engine, app_id, limit)


async def apply(request: Request, svc: Svc, who: AdminRole) -> Any:
    """Apply a fleet file (YAML body), exactly like ``flotilla updates apply``."""
    spec = parse_fleet((await read_limited(request, APPLY_MAX_BODY)).decode("utf-8"))
    return await _change(svc, catalog.apply_fleet, svc.engine, spec, who)


# --- the route table -----------------------------------------------------------------------------

V1 = "/api/v1"
APP = f"{V1}/apps/{{app_id}}"


def _api(path: str, endpoint: Any, tag: str, method: str = "GET", **kw: Any) -> APIRoute:
    return APIRoute(path, endpoint, methods=[method], tags=[tag], **kw)


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    """Every route of the server, in matching order."""
    return [
        # The hot path first, as plain Starlette routes; the APIRoute below only documents it.
        Route("/v1/update/", OMAHA, methods=["POST"]),
        Route("/v1/update", OMAHA, methods=["POST"]),
        Route("/v1/update/{secret}", OMAHA, methods=["POST"]),  # the optional shared secret
        Route("/v1/update/{secret}/", OMAHA, methods=["POST"]),
        _api("/v1/update/", omaha, "omaha", "POST",
             summary="Omaha v3 update check (open, no token; text/xml body)"),
        _api("/healthz", healthz, "ops", response_class=PlainTextResponse),
        _api("/metrics", prom, "ops", response_class=PlainTextResponse),
        _api(f"{V1}/apps", apps, "apps"),
        _api(f"{APP}/packages", packages, "packages"),
        _api(f"{APP}/packages", add_package, "packages", "POST"),
        _api(f"{APP}/channels", channels, "channels"),
        _api(f"{APP}/channels/{{name}}", put_channel, "channels", "PUT"),
        _api(f"{APP}/groups", groups, "groups"),
        _api(f"{APP}/groups/{{group}}", group, "groups"),
        _api(f"{APP}/groups/{{group}}/policy", put_policy, "groups", "PUT"),
        _api(f"{APP}/groups/{{group}}/resume", resume, "groups", "POST"),
        _api(f"{APP}/instances", instances, "instances"),
        _api(f"{APP}/instances/{{machine_id}}", instance, "instances"),
        _api(f"{V1}/activity", feed, "activity"),
        _api(f"{V1}/apply", apply, "apply", "POST"),
        # The dashboard (``/`` and ``/ui``; not in the OpenAPI document), then FleetLock.
        *admin_api.ROUTES,
        *dashboard.routes(),
        *fleetlock_http.ROUTES,
    ]  # fmt: skip


# --- lifespan and wiring -------------------------------------------------------------------------


def open_services(settings: ServerSettings) -> Services:
    """Open the database, migrate it, and build the store, metrics and auth over it."""
    engine = make_engine(settings.db_url, settings.pool_size, max_overflow=0)
    migrate(engine)
    store_ref: list[Store] = []
    metrics = Metrics(lambda: store_ref[0].fleet_counts(), known=lambda: _known_versions(engine))
    limit = grantguard.NewMachineLimit(grants=settings.new_machine_grants)
    store = Store(
        engine,
        metrics.observer(),
        settings.config_ttl,
        settings.quiet_within,
        new_machines=limit,
    )
    store_ref.append(store)
    auth = Auth(settings.admin_tokens, settings.read_tokens)
    return Services(settings, engine, store, metrics, auth)


def _known_versions(engine: Any) -> set[tuple[str, str]]:
    """(app, version) of every package: the only version labels /metrics shows."""
    with reading(engine) as conn:
        return {(a, v) for a, v in conn.execute(select(packages_t.c.app_id, packages_t.c.version))}


async def _sample(svc: Services) -> None:
    await run_in_threadpool(sample, svc.engine)


async def _flush_seen(svc: Services) -> None:
    await run_in_threadpool(svc.store.flush_seen)


async def _prune(svc: Services) -> None:
    assert svc.settings.retention is not None
    await run_in_threadpool(grantguard.prune, svc.engine, datetime.now(UTC), svc.store.new_machines)
    n = await run_in_threadpool(svc.store.prune, svc.settings.retention)
    if n:
        logger.info("pruned %d instances not seen for %s", n, svc.settings.retention)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open and migrate the database, start every periodic task; on the way out, stop them."""
    settings: ServerSettings = app.state.settings
    svc = await run_in_threadpool(open_services, settings)
    app.state.services = svc
    # Check-ins never wait for a connection: at most pool_size - 2 run at once (see settings), on
    # threads of their own (a plain executor hop costs a fraction of anyio's limiter).
    pool = ThreadPoolExecutor(max(1, settings.pool_size - 2), "flotilla-checkin")
    app.state.checkin_pool = pool
    app.state.dashboard.bind(svc.engine, svc.store.invalidate)
    syncer = (
        Syncer(svc.engine, settings.sync, svc.store.invalidate)
        if settings.sync is not None
        else None
    )
    app.state.syncer = syncer
    try:
        async with BackgroundTasks(cancel_timeout=5) as tasks:
            app.state.tasks = tasks
            flush = every(FLUSH_INTERVAL, lambda: _flush_seen(svc), "flushing last-seen times")
            tasks.start("flotilla-updates-last-seen", flush)
            if settings.retention is not None:
                interval = settings.prune_interval.total_seconds()
                step = every(interval, lambda: _prune(svc), "pruning")
                tasks.start("flotilla-updates-prune", step)
            if settings.sample_interval > 0:
                sampler = every(settings.sample_interval, lambda: _sample(svc), "sampling groups")
                tasks.start("flotilla-dashboard-sampler", sampler)
            if syncer is not None:
                seconds = syncer.settings.interval.total_seconds()
                sync_step = every(seconds, lambda: run_in_threadpool(syncer.run_once), "syncing")
                tasks.start("flotilla-updates-sync", sync_step)
            yield
        await run_in_threadpool(pool.shutdown, True)  # check-ins still running touch last-seen
        await run_in_threadpool(svc.store.flush_seen)  # the last second of last-seen times
    finally:
        pool.shutdown(wait=False)
        if syncer is not None:
            syncer.close()
        if app.state.dashboard.oidc is not None:
            app.state.dashboard.oidc.close()
        svc.engine.dispose()


class UpdateServer(FastAPI):
    """The FastAPI app, with a fast path that hands Omaha check-ins straight to :data:`OMAHA`.

    A fleet's traffic is almost all check-ins; the middleware stack and router in front of
    them cost more CPU than the check-in itself. The fast path keeps what matters of that stack:
    the Omaha metrics, and the endpoint answers its own errors. Everything else (and an Omaha
    path under a ``root_path``, or before startup) goes through FastAPI as usual.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._omaha = OmahaMetrics(OMAHA)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and omaha_access.path_secret(scope["path"]) is not False
            and getattr(self.state, "services", None) is not None
        ):
            scope["app"] = self
            await self._omaha(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: ServerSettings) -> FastAPI:
    """Wire the server: settings and dashboard into the state, one route and one error table."""
    check_settings(settings)  # weak tokens never get as far as listening
    sessions = Sessions(
        settings.admin_tokens,
        settings.read_tokens,
        idle=settings.session_idle,
        max_age=settings.session_max,
        login_per_minute=settings.login_attempts_per_minute,
    )
    oidc = OidcClient(settings.oidc) if settings.oidc is not None else None
    dashboard = Dashboard(sessions, oidc)
    dashboard.trust_forwarded = settings.trust_forwarded_for
    app = UpdateServer(
        title="Flotilla updates",
        version=__version__,
        description="Omaha update server for Flatcar fleets, with rollout policies.",
        routes=[*routes(dashboard), *payload_routes(settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(OmahaMetrics)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.dashboard = dashboard
    return app


def payload_routes(settings: ServerSettings) -> list[BaseRoute]:
    """``/packages/``: the payloads the syncer downloaded, when ``--host-packages`` is set."""
    sync = settings.sync
    if sync is None or sync.host_dir is None:
        return []
    return PayloadHost(sync.host_dir, sync.public_url).routes()


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers``): settings come from the environment."""
    return create_app(settings_from_env())
