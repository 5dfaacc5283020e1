"""Rate limits hold under parallel load: threads on one server, and two server processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.updates.conftest import Server, apply_doc, fleet, free_port, ue_request
from tests.updates.test_http_lifecycle import updatecheck

LIMIT = 3


def _policy_group(limit: int) -> dict[str, object]:
    return {
        "name": "stable",
        "track": "stable",
        "channel": "stable",
        "policy": {"max_updates_per_period": limit, "period_interval": "1h"},
    }


def _fire(urls: list[str], machines: list[str], workers: int = 16) -> list[str]:
    """Send one update check per machine, round-robin over the servers, all at once."""
    clients = [httpx.Client(base_url=u, timeout=60) for u in urls]

    def one(i: int) -> str:
        r = clients[i % len(clients)].post(
            "/v1/update/", content=ue_request(machines[i]), headers={"Content-Type": "text/xml"}
        )
        assert r.status_code == 200, r.text
        return str(updatecheck(r.content).get("status"))

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(len(machines))))
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize(
    ("policy", "limit"),
    [
        ({"max_updates_per_period": LIMIT, "period_interval": "1h"}, LIMIT),  # per period
        ({"max_updates_per_period": LIMIT, "period_interval": "1s"}, LIMIT),  # concurrent
        ({"safe_mode": True, "max_updates_per_period": 10}, 1),  # safe mode: one at a time
    ],
    ids=["per-period", "concurrent", "safe-mode"],
)
def test_parallel_checkins_never_exceed_the_limit(
    db_url: str, serve: Callable[..., Server], policy: dict[str, object], limit: int
) -> None:
    group = {"name": "stable", "track": "stable", "channel": "stable", "policy": policy}
    apply_doc(db_url, fleet(group))
    s = serve(db_url)
    results = _fire([s.url], [f"{i:032x}" for i in range(48)])
    assert results.count("ok") == limit
    # Machines that got the grant get it again (a retried download), without using up the limit.
    again = _fire([s.url], [f"{i:032x}" for i in range(48)])
    assert again.count("ok") == limit


@contextlib.contextmanager
def processes(db_url: str, tmp_path: Path, count: int, *extra: str) -> Iterator[list[str]]:
    """``count`` independent ``flotilla updates serve`` processes on one database."""
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    env = {**os.environ, "FLOTILLA_UPDATES_DB": db_url}
    for i in range(count):
        port = free_port()
        cmd = [sys.executable, "-m", "flotilla.updates", "serve", "--port", str(port)]
        with (tmp_path / f"server{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [*cmd, "--log-level", "warning", *extra],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        for url in urls:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    logs = [(tmp_path / f"server{i}.log").read_text() for i in range(count)]
                    pytest.fail(f"servers did not start: {logs}")
                time.sleep(0.1)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_two_server_processes_share_the_limit(db_url: str, tmp_path: Path) -> None:
    apply_doc(db_url, fleet(_policy_group(LIMIT)))
    with processes(db_url, tmp_path, 2) as urls:
        results = _fire(urls, [f"{i:032x}" for i in range(60)], workers=20)
    assert results.count("ok") == LIMIT


@pytest.mark.slow
def test_serve_with_worker_processes(sqlite_url: str, tmp_path: Path) -> None:
    apply_doc(sqlite_url, fleet(_policy_group(LIMIT)))
    with processes(sqlite_url, tmp_path, 1, "--workers", "2") as urls:
        results = _fire(urls, [f"{i:032x}" for i in range(30)], workers=10)
    assert results.count("ok") == LIMIT
