"""HTTP adapter for FleetLock: the protocol endpoints and the holders in the REST API.

Module-level handlers over the server's services (:mod:`web`); :data:`ROUTES` is this
protocol's part of the server's route table. Errors are raised, and the server's one exception
table answers them in the protocol's ``{"kind": ..., "value": ...}`` shape.

No ``from __future__ import annotations``: FastAPI evaluates the route annotations.
"""

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from flotilla.updates.reboots import fleetlock
from flotilla.updates.reboots.fleetlock import FleetLockError
from flotilla.updates.server import fleetlock_store
from flotilla.updates.server.catalog import NotFoundError
from flotilla.updates.server.dashboard import actions
from flotilla.updates.server.web import AdminRole, ReadRole, Svc

logger = logging.getLogger(__name__)


async def _params(request: Request) -> tuple[str, str]:
    if request.headers.get(fleetlock.PROTOCOL_HEADER, "").lower() != "true":
        raise FleetLockError(
            "missing_header", f"the {fleetlock.PROTOCOL_HEADER} header must be true"
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > fleetlock.MAX_BODY:
            break
    return fleetlock.parse_client_params(body)


async def _allowed(request: Request, svc: Svc, group: str) -> JSONResponse | None:
    """The refusal for a group that does not exist (404) or whose token is missing (401)."""
    g = await run_in_threadpool(fleetlock_store.find_group, svc.engine, group)
    if g is None:
        if svc.settings.fleetlock_create_groups:
            return None
        return JSONResponse(
            {"kind": "unknown_group", "value": f"no FleetLock group {group} in the fleet file"},
            404,
        )
    if not fleetlock.token_ok(g, request.headers.get("authorization", "")):
        return JSONResponse(
            {"kind": "unauthorized", "value": f"group {group} needs its token"},
            401,
            headers={"WWW-Authenticate": 'Basic realm="fleetlock"'},
        )
    return None


async def pre_reboot(request: Request, svc: Svc) -> Any:
    """Take a reboot slot in the client's group (recursive for a holder)."""
    node_id, group = await _params(request)
    refused = await _allowed(request, svc, group)
    if refused is not None:
        return refused
    decision = await run_in_threadpool(
        fleetlock_store.acquire, svc.engine, node_id, group, datetime.now(UTC),
        svc.settings.fleetlock_create_groups,
    )  # fmt: skip
    if not decision.ok:
        return JSONResponse({"kind": "failed_lock", "value": decision.reason}, 409)
    logger.info("fleetlock: %s holds a slot in %s", node_id, group)
    return {}


async def steady_state(request: Request, svc: Svc) -> Any:
    """Give the slot back (a success also when none was held); only the id it was taken with
    releases it, compared exactly as sent."""
    node_id, group = await _params(request)
    refused = await _allowed(request, svc, group)
    if refused is not None:
        return refused
    await run_in_threadpool(fleetlock_store.release, svc.engine, node_id, group)
    return {}


async def groups(svc: Svc, _: ReadRole) -> Any:
    """FleetLock groups with their maximum, windows and current holders."""
    return await run_in_threadpool(fleetlock_store.list_groups, svc.engine)


async def holders(svc: Svc, _: ReadRole, group: str | None = None) -> Any:
    """Current lock holders, oldest first."""
    return await run_in_threadpool(fleetlock_store.list_holders, svc.engine, group)


async def unlock(group: str, node_id: str, svc: Svc, who: AdminRole) -> Any:
    """Release a stale lock (a node that died holding its slot); the feed names who did."""
    dropped = await run_in_threadpool(
        lambda: fleetlock_store.release_stale(
            svc.engine, group=group, node_id=node_id, now=datetime.now(UTC)
        )
    )
    if not dropped:
        raise NotFoundError(f"{node_id} holds no lock in {group}")
    await run_in_threadpool(actions.log_lock_release, svc.engine, "", group, node_id, who)
    return dropped


ROUTES = [
    # The protocol has no authentication of its own: a group may require a token (Basic/Bearer).
    APIRoute("/v1/pre-reboot", pre_reboot, methods=["POST"], tags=["fleetlock"]),
    APIRoute("/v1/steady-state", steady_state, methods=["POST"], tags=["fleetlock"]),
    APIRoute("/api/v1/fleetlock/groups", groups, methods=["GET"], tags=["fleetlock"]),
    APIRoute("/api/v1/fleetlock/holders", holders, methods=["GET"], tags=["fleetlock"]),
    APIRoute(
        "/api/v1/fleetlock/groups/{group}/holders/{node_id:path}",  # any id, even with a "/"
        unlock,
        methods=["DELETE"],
        tags=["fleetlock"],
    ),
]
"""FleetLock's part of the server's route table."""
