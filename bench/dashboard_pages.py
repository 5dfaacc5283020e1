"""Dashboard page render times with 100,000 instances in the database (SQLite by default).

    .venv/bin/python bench/dashboard_pages.py [--instances 100000] [--db URL] [--runs 5]

Fills a fresh database with a synthetic fleet mid-rollout (two groups), then requests every page
through the ASGI app in process (no network) and prints the median and worst render time of each,
with the HTTP status and response size. No peer runs here, so there is no ratio: Nebraska's
dashboard is an SPA over a Go API on PostgreSQL.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from starlette.testclient import TestClient

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.api import create_app
from flotilla.updates.server.catalog import apply_fleet
from flotilla.updates.server.dashboard.queries import sample
from flotilla.updates.server.dashboard.synthetic import NEW, OLD, populate
from flotilla.updates.server.fleetspec import group_id, parse_fleet
from flotilla.updates.server.schema import make_engine, migrate
from flotilla.updates.server.settings import ServerSettings

APP = FLATCAR_APP_ID
TOKEN = "bench-admin"


def fleet_doc() -> str:
    pkgs = [
        {
            "version": v,
            "url": f"https://dl.example.test/{v}/",
            "filename": "flatcar_production_update.gz",
            "size": 400_000_000,
            "sha256": "b4" * 32,
        }
        for v in (OLD, NEW)
    ]
    return yaml.safe_dump(
        {
            "applications": [
                {
                    "id": APP,
                    "name": "Flatcar",
                    "packages": pkgs,
                    "channels": [{"name": "stable", "package": NEW}],
                    "groups": [
                        {"name": "stable", "track": "stable", "channel": "stable"},
                        {"name": "canary", "track": "canary", "channel": "stable"},
                    ],
                }
            ]
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--db", default="", help="database URL (default: a temp SQLite file)")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="flotilla-bench-")
    db = args.db or f"sqlite:///{Path(tmp.name) / 'updates.db'}"
    engine = make_engine(db, pool_size=2)
    migrate(engine)
    apply_fleet(engine, parse_fleet(fleet_doc()))
    t0 = time.perf_counter()
    populate(engine, APP, args.instances)
    t1 = time.perf_counter()
    sample(engine)
    t2 = time.perf_counter()
    engine.dispose()
    print(f"backend {engine.dialect.name}, {args.instances:,} instances written in {t1 - t0:.1f} s")
    print(f"one sample of every group's status counts: {(t2 - t1) * 1000:.1f} ms")
    gid = group_id(APP, "stable")
    group = f"/ui/apps/{APP}/groups/{gid}"
    settings = ServerSettings(db_url=db, admin_tokens=(TOKEN,), sample_interval=0)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        first = c.get(group + "/instances").text
        m = re.search(r"/instances/([0-9a-f]{32})", first)
        machine = m.group(1) if m else "none"
        last_page = -(-(args.instances // 2) // 50)
        pages = [
            ("applications", "/"),
            ("application (groups, channels)", f"/ui/apps/{APP}"),
            ("group (charts, policy)", group),
            ("group live data (poll)", "/ui/data" + group.removeprefix("/ui")),
            ("instances, page 1", group + "/instances"),
            ("instances, last page by version", f"{group}/instances?page={last_page}&sort=version"),
            ("instances, search alias", group + "/instances?q=node-01234"),
            ("instances, status+version filter", f"{group}/instances?status=OnHold&version={OLD}"),
            ("instance with history", f"/ui/apps/{APP}/instances/{machine}"),
            ("activity", "/ui/activity"),
        ]
        print(f"{'page':40} {'median ms':>10} {'max ms':>8} {'status':>6} {'KiB':>6}")
        for name, url in pages:
            times = []
            status, size = 0, 0
            for _ in range(args.runs):
                s = time.perf_counter()
                r = c.get(url)
                times.append((time.perf_counter() - s) * 1000)
                status, size = r.status_code, len(r.content)
            print(
                f"{name:40} {statistics.median(times):10.1f} {max(times):8.1f} "
                f"{status:>6} {size / 1024:6.1f}"
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
