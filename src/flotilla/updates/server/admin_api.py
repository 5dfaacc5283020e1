"""HTTP adapter for the admin API: create, update and delete what ``apply`` declares.

Module-level handlers over the server's services (:mod:`web`); :data:`ROUTES` is this part of
the server's route table. The bodies are documented with pydantic models for the OpenAPI page,
then checked by :func:`fleetspec.parse_part` (through :mod:`catalog_admin`), the same code that
checks fleet files, so the API and ``apply`` accept and refuse the same things.

No ``from __future__ import annotations``: FastAPI evaluates the route annotations.
"""

from typing import Any

from fastapi import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from flotilla.updates.server import catalog_admin
from flotilla.updates.server.web import AdminRole, Svc

APP = "/api/v1/apps/{app_id}"


class AppIn(BaseModel):
    """Body of ``POST /api/v1/apps`` (``id`` ignored on ``PUT``)."""

    id: str = ""
    name: str
    description: str = ""


class GroupIn(BaseModel):
    """Body of ``PUT /api/v1/apps/{app}/groups/{name}``: what a fleet file's group holds."""

    track: str | None = None
    channel: str | None = None
    policy: dict[str, Any] = Field(default_factory=dict)


class AliasIn(BaseModel):
    """Body of ``PUT /api/v1/apps/{app}/instances/{machine_id}``."""

    alias: str = Field(max_length=256)


async def _write(svc: Any, fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, svc.engine, *args)
    finally:
        svc.store.invalidate()


async def create_app(body: AppIn, svc: Svc, who: AdminRole) -> Any:
    """Create an application."""
    return await _write(svc, catalog_admin.create_app, body.model_dump(), who)


async def update_app(app_id: str, body: AppIn, svc: Svc, who: AdminRole) -> Any:
    """Rename an application or change its description."""
    return await _write(svc, catalog_admin.update_app, app_id, body.model_dump(), who)


async def delete_app(app_id: str, svc: Svc, who: AdminRole) -> Response:
    """Delete an application with its packages and channels (refused while it has groups)."""
    await _write(svc, catalog_admin.delete_app, app_id, who)
    return Response(status_code=204)


async def delete_package(
    app_id: str, version: str, arch: str, svc: Svc, who: AdminRole
) -> Response:
    """Delete one package (refused while a channel serves it or a group pins it)."""
    await _write(svc, catalog_admin.delete_package, app_id, version, arch, who)
    return Response(status_code=204)


async def delete_channel(app_id: str, name: str, svc: Svc, who: AdminRole) -> Response:
    """Delete a channel (refused while groups follow it; the answer names them)."""
    await _write(svc, catalog_admin.delete_channel, app_id, name, who)
    return Response(status_code=204)


async def put_group(app_id: str, name: str, body: GroupIn, svc: Svc, who: AdminRole) -> Any:
    """Create a group or change its track, channel and policy."""
    raw = {k: v for k, v in body.model_dump().items() if v is not None and v != {}}
    return await _write(svc, catalog_admin.put_group, app_id, name, raw, who)


async def delete_group(app_id: str, group: str, svc: Svc, who: AdminRole) -> Response:
    """Delete a group with its instances and their history."""
    await _write(svc, catalog_admin.delete_group, app_id, group, who)
    return Response(status_code=204)


async def set_alias(app_id: str, machine_id: str, body: AliasIn, svc: Svc, who: AdminRole) -> Any:
    """Name a machine."""
    await _write(svc, catalog_admin.set_alias, app_id, machine_id, body.alias, who)
    return {"machine_id": machine_id, "alias": body.alias}


def _route(path: str, endpoint: Any, method: str, tag: str, **kw: Any) -> APIRoute:
    return APIRoute(path, endpoint, methods=[method], tags=[tag], **kw)


ROUTES = [
    _route("/api/v1/apps", create_app, "POST", "apps", status_code=201),
    _route(APP, update_app, "PUT", "apps"),
    _route(APP, delete_app, "DELETE", "apps", status_code=204),
    _route(f"{APP}/packages/{{version}}/{{arch}}", delete_package, "DELETE", "packages",
           status_code=204),
    _route(f"{APP}/channels/{{name}}", delete_channel, "DELETE", "channels", status_code=204),
    _route(f"{APP}/groups/{{name}}", put_group, "PUT", "groups"),
    _route(f"{APP}/groups/{{group}}", delete_group, "DELETE", "groups", status_code=204),
    _route(f"{APP}/instances/{{machine_id}}", set_alias, "PUT", "instances"),
]  # fmt: skip
