"""10,000 simulated update_engine machines in one process against `flotilla updates serve`.

The simulator (`flotilla updates simulate`'s engine) runs the fleet with time compressed so the
server is kept busy; a rollout of a new version runs while we measure. Prints check-ins per
second sustained (update checks; events counted apart), the simulator's own CPU per 1,000
machines (at the measured rate, and scaled to update_engine's real 45-minute cadence), and the
server's CPU. The server is a separate process on SQLite (or PostgreSQL with --db).

    .venv/bin/python bench/fleet_simulate.py [--instances 10000] [--seconds 40] [--time-scale 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.node.agent import Schedule
from flotilla.updates.node.simulator import Fleet, SimSettings
from flotilla.updates.server.catalog import apply_fleet
from flotilla.updates.server.fleetspec import parse_fleet
from flotilla.updates.server.schema import make_engine, migrate

OLD, NEW = "3510.2.0", "3760.2.0"
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def fleet_doc() -> dict[str, object]:
    pkgs = [{"version": v, "url": "https://dl.example.test/", "filename": "u.gz",
             "size": 1000, "sha256": "ab" * 32} for v in (OLD, NEW)]
    return {"applications": [{
        "id": FLATCAR_APP_ID, "name": "Flatcar", "packages": pkgs,
        "channels": [{"name": "stable", "package": NEW}],
        "groups": [{"name": "stable", "track": "stable", "channel": "stable",
                    "policy": {"max_updates_per_period": 500, "period_interval": "10s"}}],
    }]}


async def measure(url: str, args: argparse.Namespace, server_pid: int) -> None:
    settings = SimSettings(
        server=url, instances=args.instances, version=OLD, time_scale=args.time_scale,
        schedule=Schedule(initial_delay=0), download=60, reboot_delay=300,
        concurrency=args.concurrency,
    )
    fleet = Fleet(settings)
    stop = asyncio.Event()
    t0 = time.monotonic()
    runner = asyncio.create_task(fleet.run(stop), name="fleet")
    await asyncio.sleep(args.warmup)
    c0, e0, w0 = fleet.tally.checkins, fleet.tally.events, time.monotonic()
    cpu0, scpu0 = time.process_time(), proc_cpu(server_pid)
    await asyncio.sleep(args.seconds)
    c1, e1, w1 = fleet.tally.checkins, fleet.tally.events, time.monotonic()
    cpu1, scpu1 = time.process_time(), proc_cpu(server_pid)
    stop.set()
    await runner
    wall = w1 - w0
    checkins = c1 - c0
    rate = checkins / wall
    sim_cpu = cpu1 - cpu0
    requests = checkins + (e1 - e0)
    per_req = sim_cpu / max(requests, 1)
    demand = args.instances / (settings.schedule.interval / args.time_scale)
    real_rate_per_1000 = 1000 / settings.schedule.interval  # checks/s from 1,000 real machines
    print(f"machines                       {args.instances:,} in one process "
          f"(time scale {args.time_scale:g}: a 45-min interval is "
          f"{settings.schedule.interval / args.time_scale:.1f} s)")
    print(f"offered check-in rate          {demand:,.0f}/s (if the server kept up)")
    print(f"check-ins sustained            {rate:,.0f}/s over {wall:.0f} s "
          f"(+ {(e1 - e0) / wall:,.0f} events/s; errors so far {fleet.tally.errors})")
    print(f"simulator CPU                  {sim_cpu / wall * 100:.0f}% of a core "
          f"= {sim_cpu / wall * 100 / (args.instances / 1000):.1f}% per 1,000 machines "
          f"at this rate; {per_req * 1e6:.0f} µs per request")
    print(f"  at the real 45-min cadence   {per_req * real_rate_per_1000 * 1.1 * 100:.4f}% "
          "of a core per 1,000 machines (update checks + ~10% events)")
    print(f"server CPU                     {(scpu1 - scpu0) / wall * 100:.0f}% of a core")
    print(f"versions at the end            {dict(fleet.versions())}  "
          f"(after {time.monotonic() - t0:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--time-scale", type=float, default=200)
    ap.add_argument("--concurrency", type=int, default=8,
                    help="requests in flight (httpx's pool gets slower per request with more)")
    ap.add_argument("--db", default="", help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flotilla-sim-"))
    db = args.db or f"sqlite:///{tmp / 'updates.db'}"
    engine = make_engine(db, pool_size=1)
    migrate(engine)
    apply_fleet(engine, parse_fleet(yaml.safe_dump(fleet_doc())))
    engine.dispose()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flotilla", "updates", "serve", "--db", db, "--port", str(port),
         "--log-level", "warning", "--retention", "0"],
        stderr=open(tmp / "server.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        asyncio.run(measure(f"http://127.0.0.1:{port}/v1/update/", args, server.pid))
    finally:
        server.terminate()
        server.wait(20)


if __name__ == "__main__":
    main()
