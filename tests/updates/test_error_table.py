"""The server's one exception table: each domain error becomes one status code and body shape.

Table-driven over a bare app that only raises (so every row is checked without a database),
then through the real server for the rows a client can provoke, and a check that the table has
no row this file forgets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError, OperationalError, SQLAlchemyError
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from flotilla.updates.models import InvalidVersionError
from flotilla.updates.reboots.fleetlock import FleetLockError
from flotilla.updates.server.api import create_app
from flotilla.updates.server.catalog import CatalogError, NotFoundError
from flotilla.updates.server.catalog_admin import InUseError
from flotilla.updates.server.fleetspec import FleetFileError
from flotilla.updates.server.omaha import OmahaError
from flotilla.updates.server.settings import ServerSettings
from flotilla.updates.server.web import EXCEPTION_HANDLERS, BodyTooLargeError

from .conftest import OLD, apply_doc, fleet, ue_request

BAD_VALUE = "a value is out of range, too long or contains a NUL byte"
DB_DOWN = OperationalError("SELECT 1", {}, Exception("connection refused"))

# (error raised, path it is raised on, status, body as JSON or text, extra headers expected)
CASES: list[tuple[Exception, str, int, Any, dict[str, str]]] = [
    (OmahaError("not XML"), "/v1/update/", 400, "bad request: not XML\n", {}),
    (
        FleetLockError("bad_request", "no id"),
        "/v1/pre-reboot",
        400,
        {"kind": "bad_request", "value": "no id"},
        {},
    ),
    (BodyTooLargeError("too big"), "/api/v1/apply", 413, {"detail": "too big"}, {}),
    (
        FleetFileError(["line 1: x: bad", "line 2: y: bad"]),
        "/api/v1/apply",
        422,
        {"detail": ["line 1: x: bad", "line 2: y: bad"]},
        {},
    ),
    (
        NotFoundError("no such group"),
        "/api/v1/apps/a/groups/g",
        404,
        {"detail": "no such group"},
        {},
    ),
    (
        InUseError("channel beta is used by groups canary"),
        "/api/v1/apps/a/channels/beta",
        409,
        {"detail": "channel beta is used by groups canary"},
        {},
    ),
    (
        CatalogError("no package 9.9.9"),
        "/api/v1/apps/a/channels/c",
        422,
        {"detail": "no package 9.9.9"},
        {},
    ),
    (
        InvalidVersionError("not a version: x"),
        "/api/v1/apps/a/packages",
        422,
        {"detail": "not a version: x"},
        {},
    ),
    (
        ValueError("limit must be positive"),
        "/api/v1/apps",
        422,
        {"detail": "limit must be positive"},
        {},
    ),
    (
        DataError("INSERT", {}, Exception("value too long")),
        "/api/v1/apps",
        422,
        {"detail": BAD_VALUE},
        {},
    ),
    (
        DataError("INSERT", {}, Exception("NUL")),
        "/v1/update/",
        400,
        f"bad request: {BAD_VALUE}\n",
        {},
    ),
    (OverflowError("int too big"), "/api/v1/apps", 422, {"detail": BAD_VALUE}, {}),
    (RecursionError("too deep"), "/api/v1/apply", 422, {"detail": BAD_VALUE}, {}),
    (DB_DOWN, "/v1/update/", 503, "database unavailable\n", {"retry-after": "60"}),
    (DB_DOWN, "/v1/update", 503, "database unavailable\n", {"retry-after": "60"}),
    (
        DB_DOWN,
        "/v1/steady-state",
        503,
        {"kind": "unavailable", "value": "database unavailable"},
        {},
    ),
    (DB_DOWN, "/api/v1/apps", 503, {"detail": "database unavailable"}, {}),
    (DB_DOWN, "/ui/activity", 503, "database unavailable\n", {}),
]


def _raising_app(exc: Exception, path: str) -> FastAPI:
    async def boom(_request: Request) -> None:
        raise exc

    routes: list[BaseRoute] = [Route(path, boom, methods=["GET"])]
    return FastAPI(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


@pytest.mark.parametrize(
    ("exc", "path", "status", "body", "headers"),
    CASES,
    ids=[f"{type(c[0]).__name__}@{c[1]}" for c in CASES],
)
def test_each_domain_error_maps_to_its_status(
    exc: Exception, path: str, status: int, body: Any, headers: dict[str, str]
) -> None:
    with TestClient(_raising_app(exc, path), raise_server_exceptions=False) as client:
        r = client.get(path)
    assert r.status_code == status
    assert (r.text if isinstance(body, str) else r.json()) == body
    for k, v in headers.items():
        assert r.headers[k] == v


def test_every_row_of_the_table_is_checked() -> None:
    # OperationalError stands for every SQLAlchemyError (the table's row is the base class).
    covered = {type(c[0]) for c in CASES if c[0] is not DB_DOWN} | {SQLAlchemyError}
    missing = [k for k in EXCEPTION_HANDLERS if isinstance(k, type) and k not in covered]
    assert missing == []


def test_an_unmapped_error_stays_a_500() -> None:
    with TestClient(
        _raising_app(RuntimeError("bug"), "/api/v1/apps"), raise_server_exceptions=False
    ) as client:
        r = client.get("/api/v1/apps")
    assert r.status_code == 500


# --- through the real server ---------------------------------------------------------------------

ADMIN = "admin-token-for-tests"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(
        db_url=f"sqlite:///{tmp_path / 'u.db'}", admin_tokens=(ADMIN,), sample_interval=0
    )
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "text/xml"}
    with TestClient(create_app(settings), headers=headers) as c:
        yield c


def test_real_routes_answer_through_the_table(client: TestClient) -> None:
    assert client.post("/v1/update/", content=b"<not-xml").status_code == 400
    r = client.get("/api/v1/apps/nope/groups/nope")
    assert (r.status_code, set(r.json())) == (404, {"detail"})
    r = client.post(
        "/api/v1/apps/a/packages",
        json={
            "version": "not-a-version",
            "url": "https://x.test/",
            "filename": "f",
            "size": 1,
            "sha256": "a" * 64,
        },
    )
    assert r.status_code == 422
    r = client.put("/api/v1/apps/a/groups/g/policy", json={"max_updates_per_period": "lots"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    r = client.post("/api/v1/apply", content=b"\xff\xfe")
    assert r.status_code == 422
    r = client.post("/api/v1/apply", content=b"x" * (4 * 1024 * 1024 + 1))
    assert r.status_code == 413
    r = client.post("/v1/pre-reboot", json={"client_params": {"id": "n1"}})
    assert r.json() == {
        "kind": "missing_header",
        "value": "the fleet-lock-protocol header must be true",
    }
    r = client.delete("/api/v1/fleetlock/groups/default/holders/n1")
    assert r.status_code == 404


def test_omaha_requests_are_counted_by_the_status_the_table_gave(
    client: TestClient, tmp_path: Path
) -> None:
    apply_doc(f"sqlite:///{tmp_path / 'u.db'}", fleet())
    assert client.post("/v1/update/", content=b"<not-xml").status_code == 400
    assert client.post("/v1/update/", content=ue_request("a" * 32, OLD)).status_code == 200
    metrics = client.get("/metrics").text
    assert 'flotilla_updates_omaha_requests_total{code="400"} 1.0' in metrics
    assert 'flotilla_updates_omaha_requests_total{code="200"} 1.0' in metrics


def test_the_lifespan_owns_every_periodic_task(tmp_path: Path) -> None:
    settings = ServerSettings(db_url=f"sqlite:///{tmp_path / 'u.db'}", sample_interval=60)
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/healthz").text == "ok\n"
        tasks = app.state.tasks
        assert tasks.names == [
            "flotilla-updates-last-seen",
            "flotilla-updates-prune",
            "flotilla-dashboard-sampler",
        ]
        running = tasks.tasks
        assert running and not any(t.done() for t in running)
    assert all(t.done() for t in running)  # cancelled on the way out
    assert tasks.names == []
