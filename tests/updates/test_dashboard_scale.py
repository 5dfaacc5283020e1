"""The dashboard on 100,000 instances: every page answers, paged and aggregated in the database.

Speed is measured by bench/dashboard_pages.py, not asserted here (a loaded machine is no clock).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.api import create_app
from flotilla.updates.server.dashboard.queries import PER_PAGE, sample
from flotilla.updates.server.dashboard.synthetic import NEW, OLD, populate
from flotilla.updates.server.fleetspec import group_id
from flotilla.updates.server.schema import make_engine
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, apply_doc, fleet

pytestmark = pytest.mark.slow

N = 100_000
APP = FLATCAR_APP_ID
GIDS = [group_id(APP, "stable"), group_id(APP, "canary")]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, int]]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('big') / 'updates.db'}"
    apply_doc(
        db,
        fleet(
            {"name": "stable", "track": "stable", "channel": "stable"},
            {"name": "canary", "track": "canary", "channel": "stable"},
        ),
    )
    engine = make_engine(db, pool_size=1)
    counts = populate(engine, APP, N, target=NEW, old=OLD)
    sample(engine)
    engine.dispose()
    settings = ServerSettings(db_url=db, admin_tokens=(ADMIN,), sample_interval=0)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c, counts


def _found(html: str) -> int:
    m = re.search(r'id="total">([\d,]+) found', html)
    assert m is not None
    return int(m.group(1).replace(",", ""))


def test_overview_pages_count_everything(big: tuple[TestClient, dict[str, int]]) -> None:
    c, counts = big
    home = c.get("/")
    assert home.status_code == 200
    assert "100,000" in home.text
    app = c.get(f"/ui/apps/{APP}")
    assert app.status_code == 200
    live = c.get(f"/ui/data/apps/{APP}").json()
    assert sum(sum(g.values()) for g in live.values()) == N
    per_status = {s: sum(g.get(s, 0) for g in live.values()) for s in counts}
    assert per_status == counts
    assert c.get("/ui/activity").status_code == 200


def test_group_page_and_charts_read_aggregates(big: tuple[TestClient, dict[str, int]]) -> None:
    c, _ = big
    page = c.get(f"/ui/apps/{APP}/groups/{GIDS[0]}")
    assert page.status_code == 200
    data = c.get(f"/ui/data/apps/{APP}/groups/{GIDS[0]}").json()
    assert data["total"] == N // 2
    assert sum(n for _, n in data["versions"]) == N // 2
    assert {v for v, _ in data["versions"]} == {OLD, NEW}
    series = data["progress"]["series"]
    assert len(data["progress"]["labels"]) == 2  # the one sample, then now
    assert series["Complete"][-1] == data["status"]["Complete"]


def test_instances_are_paged_searched_and_sorted(big: tuple[TestClient, dict[str, int]]) -> None:
    c, _ = big
    base = f"/ui/apps/{APP}/groups/{GIDS[0]}/instances"
    first = c.get(base)
    assert first.status_code == 200
    assert _found(first.text) == N // 2
    assert first.text.count('href="/ui/apps/') >= PER_PAGE
    last_page = -(-(N // 2) // PER_PAGE)
    last = c.get(base, params={"page": last_page, "sort": "version", "order": "asc"})
    assert f"page {last_page} of {last_page}" in last.text
    assert _found(c.get(base, params={"q": "node-00000"}).text) >= 1
    held = c.get(base, params={"status": "OnHold", "version": OLD})
    assert 0 < _found(held.text) < N // 2
    m = re.search(r"/instances/([0-9a-f]{32})", first.text)
    assert m is not None
    one = c.get(f"/ui/apps/{APP}/instances/{m.group(1)}")
    assert one.status_code == 200
    assert 'id="history"' in one.text


def test_bench_script_exists() -> None:
    assert (Path(__file__).parents[2] / "bench" / "dashboard_pages.py").exists()
