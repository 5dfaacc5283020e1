"""HTTP adapter for FleetLock: the protocol endpoints and the holders in the REST API.

No ``from __future__ import annotations``: FastAPI evaluates the route annotations.
"""

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from flotilla.updates.reboots import fleetlock
from flotilla.updates.reboots.fleetlock import FleetLockError
from flotilla.updates.server import fleetlock_store

logger = logging.getLogger(__name__)


def _error(status: int, kind: str, value: str) -> JSONResponse:
    """FleetLock errors: any non-200 status with ``{"kind": ..., "value": ...}``."""
    return JSONResponse({"kind": kind, "value": value}, status)


async def _params(request: Request) -> tuple[str, str]:
    if request.headers.get(fleetlock.PROTOCOL_HEADER, "").lower() != "true":
        raise FleetLockError("missing_header", f"the {fleetlock.PROTOCOL_HEADER} header must "
                             "be true")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > fleetlock.MAX_BODY:
            break
    return fleetlock.parse_client_params(body)


def router(engine: Engine, reader: Callable[..., str], admin: Callable[..., str]) -> APIRouter:
    """The FleetLock endpoints (open, as the protocol has no auth) and the REST reads/unlock."""
    r = APIRouter()
    read_role = Annotated[str, Depends(reader)]
    admin_role = Annotated[str, Depends(admin)]

    @r.post("/v1/pre-reboot", tags=["fleetlock"])
    async def pre_reboot(request: Request) -> Any:
        """Take a reboot slot in the client's group (recursive for a holder)."""
        try:
            node_id, group = await _params(request)
            decision = await run_in_threadpool(
                fleetlock_store.acquire, engine, node_id, group, datetime.now(UTC))
        except FleetLockError as e:
            return _error(400, e.kind, str(e))
        except SQLAlchemyError:
            logger.exception("database error on pre-reboot")
            return _error(503, "unavailable", "database unavailable")
        if not decision.ok:
            return _error(409, "failed_lock", decision.reason)
        logger.info("fleetlock: %s holds a slot in %s", node_id, group)
        return {}

    @r.post("/v1/steady-state", tags=["fleetlock"])
    async def steady_state(request: Request) -> Any:
        """Give the slot back (a success also when none was held)."""
        try:
            node_id, group = await _params(request)
            await run_in_threadpool(fleetlock_store.release, engine, node_id, group)
        except FleetLockError as e:
            return _error(400, e.kind, str(e))
        except SQLAlchemyError:
            logger.exception("database error on steady-state")
            return _error(503, "unavailable", "database unavailable")
        return {}

    @r.get("/api/v1/fleetlock/groups", tags=["fleetlock"])
    async def groups(_: read_role) -> Any:
        """FleetLock groups with their maximum, windows and current holders."""
        return await run_in_threadpool(fleetlock_store.list_groups, engine)

    @r.get("/api/v1/fleetlock/holders", tags=["fleetlock"])
    async def holders(_: read_role, group: str | None = None) -> Any:
        """Current lock holders, oldest first."""
        return await run_in_threadpool(fleetlock_store.list_holders, engine, group)

    @r.delete("/api/v1/fleetlock/groups/{group}/holders/{node_id}", tags=["fleetlock"])
    async def unlock(group: str, node_id: str, _: admin_role) -> Any:
        """Release a stale lock (a node that died holding its slot)."""
        dropped = await run_in_threadpool(
            lambda: fleetlock_store.release_stale(engine, group=group, node_id=node_id,
                                            now=datetime.now(UTC)))
        if not dropped:
            return JSONResponse({"detail": f"{node_id} holds no lock in {group}"}, 404)
        return dropped

    return r
