"""Omaha check-ins per second and latency for `flotilla updates serve`, on SQLite and PostgreSQL.

Simulated Flatcar machines post update_engine-shaped requests over keep-alive HTTP/1.1 on
loopback; latency is measured by the client per request. Scenarios:

- steady: machines already registered and on the channel's version ask for updates and get
  noupdate (what a fleet does between releases: the bulk of all traffic), drawn at random from
  --pool stored instances;
- rollout: machines never seen before, on an older version, register and get the update granted
  (two writes per check-in: the worst case);
- steady with N instances already stored (N = --preload, default 1,000,000), to see that the
  cost stays flat as the instance table grows.

PostgreSQL is a throwaway cluster started here (Debian's postgresql 15, as in the tests).

    .venv/bin/python bench/updates_checkin.py [--seconds 10] [--preload 1000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.server.catalog import apply_fleet
from flotilla.updates.server.fleetspec import group_id, parse_fleet
from flotilla.updates.server.schema import make_engine, migrate

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OLD, NEW = "3510.2.0", "3760.2.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


CLK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(d.name)] = int(fields[1])
        times[int(d.name)] = (int(fields[11]) + int(fields[12])) / CLK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(c for c, p in parents.items() if p == pid)
    return total


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL cluster on a loopback port: (URL, postmaster pid)."""
    root = Path(tempfile.mkdtemp(prefix="flotilla-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data = root / "data"
    subprocess.run(
        as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c shared_buffers=256MB -c synchronous_commit=off"
    )
    subprocess.run(
        as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                opts,
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        subprocess.run(
            as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def fleet_doc() -> str:
    pkgs = [
        {
            "version": v,
            "arch": "amd64",
            "url": f"https://dl.example.test/{v}",
            "filename": "flatcar_production_update.gz",
            "size": 400_000_000,
            "sha256": "ab" * 32,
        }
        for v in (OLD, NEW)
    ]
    return yaml.safe_dump(
        {
            "applications": [
                {
                    "id": FLATCAR_APP_ID,
                    "name": "Flatcar",
                    "packages": pkgs,
                    "channels": [{"name": "stable", "package": NEW}],
                    "groups": [{"name": "stable", "track": "stable", "channel": "stable"}],
                }
            ]
        }
    )


def setup_db(url: str, preload: int) -> None:
    engine = make_engine(url, pool_size=1)
    migrate(engine)
    apply_fleet(engine, parse_fleet(fleet_doc()))
    engine.dispose()
    if preload:
        t0 = time.perf_counter()
        preload_instances(url, preload)
        print(f"  preloaded {preload:,} instances in {time.perf_counter() - t0:.1f}s", flush=True)


def preload_instances(url: str, n: int) -> None:
    gid = group_id(FLATCAR_APP_ID, "stable")
    now = datetime.now(UTC)
    cols = (
        "machine_id",
        "app_id",
        "group_id",
        "version",
        "status",
        "arch",
        "alias",
        "oem",
        "oem_version",
        "aleph_version",
        "boot_id",
        "ip",
        "first_seen",
        "last_seen",
        "update_in_progress",
    )

    def rows() -> Iterator[tuple[object, ...]]:
        for i in range(n):
            machine = f"pre{i:029d}"
            yield (
                machine,
                FLATCAR_APP_ID,
                gid,
                NEW,
                "Complete",
                "amd64",
                "",
                "qemu",
                "0.1.0",
                OLD,
                str(uuid.uuid5(uuid.NAMESPACE_OID, machine)),
                "127.0.0.1",  # what the check-ins will report: their first one is read-only too
                now,
                now,
                False,
            )

    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY instances ({', '.join(cols)}) FROM STDIN") as copy:
                for r in rows():
                    copy.write_row(r)
            cur.execute("ANALYZE instances")
    else:
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        iso = now.isoformat(sep=" ")
        conn.executemany(
            f"INSERT INTO instances ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            ((*r[:12], iso, iso, 0) for r in rows()),
        )
        conn.commit()
        conn.execute("ANALYZE")
        conn.close()


def body(machine: str, version: str) -> bytes:
    """An update check exactly as update_engine sends it (one boot id per machine)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<request protocol="3.0" version="update_engine-0.4.10"'
        ' updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">\n'
        f'<os version="Chateau" platform="CoreOS" sp="{version}_x86_64"></os>\n'
        f'<app appid="{{{FLATCAR_APP_ID}}}" version="{version}" track="stable" '
        f'bootid="{{{uuid.uuid5(uuid.NAMESPACE_OID, machine)}}}" oem="qemu" oemversion="0.1.0" '
        f'alephversion="{OLD}" '
        f'machineid="{machine}" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" '
        'delta_okay="false">\n<ping active="1"></ping>\n<updatecheck></updatecheck>\n</app>\n'
        "</request>\n"
    ).encode()


async def client(
    port: int, version: str, pool: int, stop: float, lat: list[float], errors: list[int]
) -> None:
    """One keep-alive connection posting check-ins back to back until ``stop``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rnd = random.Random()
    try:
        while time.perf_counter() < stop:
            machine = f"pre{rnd.randrange(pool):029d}" if version == NEW else uuid.uuid4().hex
            payload = body(machine, version)
            req = (
                f"POST /v1/update/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


async def load(port: int, version: str, seconds: float, conns: int, pool: int) -> dict[str, float]:
    lat: list[float] = []
    errors: list[int] = []
    stop = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(client(port, version, pool, stop, lat, errors) for _ in range(conns)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "rps": len(lat) / wall,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[int(len(lat) * 0.99) - 1] * 1000,
        "n": len(lat),
        "errors": len(errors),
    }


@contextlib.contextmanager
def server(url: str, workers: int) -> Iterator[tuple[int, int]]:
    """A `flotilla updates serve` process: (pid, port)."""
    port = free_port()
    env = {**os.environ, "FLOTILLA_UPDATES_DB": url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flotilla.updates",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--retention",
            "0",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(
    label: str,
    url: str,
    workers: int,
    args: argparse.Namespace,
    preload: int,
    pg_pid: int | None,
    results: list[tuple[str, dict[str, float]]],
) -> None:
    """Set up one database, start the server on it, measure each scenario."""
    print(f"== {label}", flush=True)
    stored = max(preload, args.pool)
    setup_db(url, stored)
    with server(url, workers) as (pid, port):
        asyncio.run(load(port, NEW, 2, args.connections, stored))  # warm-up
        for scenario, version in (("steady", NEW), ("rollout", OLD)):
            if preload and scenario == "rollout":
                continue
            cpu0, db0 = tree_cpu(pid), tree_cpu(pg_pid) if pg_pid else 0.0
            r = asyncio.run(load(port, version, args.seconds, args.connections, stored))
            r["cpu"] = (tree_cpu(pid) - cpu0) / r["n"] * 1000
            r["db_cpu"] = ((tree_cpu(pg_pid) - db0) / r["n"] * 1000) if pg_pid else 0.0
            results.append((f"{label}, {scenario}", r))
            print(
                f"  {scenario}: {r['rps']:.0f} check-ins/s, p50 {r['p50']:.1f} ms, "
                f"p99 {r['p99']:.1f} ms; CPU per check-in: server {r['cpu']:.2f} ms, "
                f"PostgreSQL {r['db_cpu']:.2f} ms ({r['n']:.0f} requests, "
                f"{r['errors']:.0f} errors)",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="length of each measured run")
    ap.add_argument("--connections", type=int, default=32, help="concurrent client connections")
    ap.add_argument("--pool", type=int, default=20_000, help="stored machines in plain runs")
    ap.add_argument("--preload", type=int, default=1_000_000, help="instances stored beforehand")
    ap.add_argument("--workers", type=int, default=2, help="server processes (PostgreSQL runs)")
    args = ap.parse_args()
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite, 1 process", f"sqlite:///{tmp}/a.db", 1, args, 0, None, results)
    with postgres() as (pg, pg_pid):
        base = pg.rsplit("/", 1)[0]
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_a")
            conn.execute("CREATE DATABASE bench_b")
        run(
            f"PostgreSQL, {args.workers} processes",
            f"{base}/bench_a",
            args.workers,
            args,
            0,
            pg_pid,
            results,
        )
        if args.preload:
            run(
                f"PostgreSQL, {args.workers} processes, {args.preload:,} instances stored",
                f"{base}/bench_b",
                args.workers,
                args,
                args.preload,
                pg_pid,
                results,
            )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n| run | check-ins/s | p50 ms | p99 ms | CPU ms/check-in: server | PostgreSQL |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results:
        print(
            f"| {label} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['cpu']:.2f} "
            f"| {r['db_cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
