"""Omaha check-ins per second, latency and CPU of `flotilla updates serve`, optionally vs Nebraska.

Every request is what Flatcar's update_engine sends, byte for byte (built by
``flotilla.updates.node.omaha_client.build_request``, which a test compares with
``omaha_request_action.cc``'s text): ping, updatecheck, and the
``<event eventtype="3" eventresult="2" previousversion="">`` update_engine adds to every check.
Machines were last seen 45 minutes ago (update_engine checks every 45 min +- 5) and each stored
machine checks in at most once per run, as in a real fleet. Scenarios:

- steady: stored machines on the channel's version get noupdate (the bulk of all traffic);
- rollout: machines never seen before, on an older version, register and get the update granted;
- mix: 98 % steady, 2 % rollout.

Load: closed loop (``--connections`` keep-alive connections back to back: maximum throughput) and
open loop at fixed offered rates (``--rates``; latency measured from each request's intended
send time, so queueing behind a slow server counts). CPU per check-in is the user + system time of
the server's and the postmaster's process trees, counting exited processes (cutime/cstime), so
short-lived backends are not missed. Writes per check-in come from ``pg_stat_database``. The load
generator (this process: asyncio, requests built before each run's clock starts) reports its own
CPU per check-in too, since it shares the cores with the servers.

PostgreSQL is a private cluster started here (Debian's postgresql 15, loopback and a socket in
``--pg-root``), stopped at the end. With ``FLOTILLA_BENCH_NEBRASKA`` set to a Nebraska binary
(``bench/build_nebraska.sh`` builds 3.0.0 from source), Nebraska runs the same scenarios on the
same PostgreSQL, the ratios are printed, and the update agent is driven against Nebraska to check
the statuses it records (Downloading, Downloaded, Installed, Complete).

    .venv/bin/python bench/updates_checkin.py [--seconds 10] [--machines 300000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.node.omaha_client import Identity, build_request, update_check_event
from flotilla.updates.server.catalog import apply_fleet
from flotilla.updates.server.fleetspec import group_id, parse_fleet
from flotilla.updates.server.schema import make_engine, migrate

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Nebraska 3.0.0 seeds Flatcar's stable channel (amd64) with 2191.5.0: both servers serve that.
OLD, NEW = "2135.6.0", "2191.5.0"
NEBRASKA_STABLE_GROUP = "9a2deb70-37be-4026-853f-bfdd6b347bbe"
NEBRASKA_STABLE_PACKAGE = "84b4c599-9b6b-44a8-b13c-d4263fff0403"
NEBRASKA_STATUS = {
    1: "Undefined",
    2: "UpdateGranted",
    3: "Error",
    4: "Complete",
    5: "Installed",
    6: "Downloaded",
    7: "Downloading",
    8: "OnHold",
}
SEEN_AGO = timedelta(minutes=45)
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def tree_cpu(root: int) -> float:
    """CPU seconds of a process tree: utime + stime + cutime + cstime of every live member.

    cutime/cstime hold the CPU of children that exited and were reaped (PostgreSQL backends of
    closed connections, short-lived workers), which a sum over live processes misses.
    """
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
        times[int(d.name)] = sum(int(f) for f in fields[11:15]) / CLK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(c for c, p in parents.items() if p == pid)
    return total


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[tuple[str, int]]:
    """A private PostgreSQL cluster in ``root`` on a loopback port: (URL, postmaster pid)."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    data = root / "data"
    initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    subprocess.run(as_postgres([*initdb, "--no-sync"]), check=True, capture_output=True)
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c shared_buffers=256MB -c synchronous_commit=off"
    )
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log")]
    subprocess.run(as_postgres([*ctl, "-o", opts, "-w", "start"]), check=True, capture_output=True)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", pid
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(as_postgres(stop), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_db(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


# --- the machines -------------------------------------------------------------------------------


def machine_id(i: int) -> str:
    return f"{i:032x}"


def identity(machine: str, version: str) -> Identity:
    """A Flatcar machine as update.conf and the release files describe it."""
    boot = uuid.uuid5(uuid.NAMESPACE_OID, machine)
    return Identity(
        machine_id=machine,
        version=version,
        track="stable",
        boot_id=str(boot),
        oem="qemu",
        oem_version="0.1.0",
        aleph_version=OLD,
    )


def checkin_body(machine: str, version: str) -> bytes:
    """update_engine's scheduled check: ping, updatecheck and 3/2 with previousversion=""."""
    ident = identity(machine, version)
    return build_request(ident, events=(update_check_event(version, None),))


class Machines:
    """Hands out stored machines, each at most once per benchmark (they were seen 45 min ago)."""

    def __init__(self, n: int, seed: int) -> None:
        order = list(range(n))
        random.Random(seed).shuffle(order)
        self._it = itertools.cycle(order)
        self.rng = random.Random(seed + 1)

    def body(self, rollout_share: float) -> bytes:
        if rollout_share and self.rng.random() < rollout_share:
            return checkin_body(uuid.UUID(int=self.rng.getrandbits(128)).hex, OLD)
        return checkin_body(machine_id(next(self._it)), NEW)


# --- setting up each server's database ----------------------------------------------------------


def fleet_doc() -> str:
    pkg = {
        "version": NEW,
        "arch": "amd64",
        "url": f"https://update.release.flatcar-linux.net/amd64-usr/{NEW}/",
        "filename": "flatcar_production_update.gz",
        "size": 465881871,
        "sha256": "ab" * 32,
    }
    app = {
        "id": FLATCAR_APP_ID,
        "name": "Flatcar",
        "packages": [pkg],
        "channels": [{"name": "stable", "package": NEW}],
        "groups": [{"name": "stable", "track": "stable", "channel": "stable"}],
    }
    return yaml.safe_dump({"applications": [app]})


def setup_flotilla(url: str, n: int) -> None:
    engine = make_engine(url, pool_size=1)
    migrate(engine)
    apply_fleet(engine, parse_fleet(fleet_doc()))
    engine.dispose()
    gid = group_id(FLATCAR_APP_ID, "stable")
    seen = datetime.now(UTC) - SEEN_AGO
    cols = "machine_id, app_id, group_id, version, status, arch, alias, oem, oem_version, "
    cols += "aleph_version, boot_id, ip, first_seen, last_seen, update_in_progress"
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY instances ({cols}) FROM STDIN") as copy:
            for i in range(n):
                m = machine_id(i)
                boot = str(uuid.uuid5(uuid.NAMESPACE_OID, m))
                row = (m, FLATCAR_APP_ID, gid, NEW, "Complete", "amd64", "", "qemu", "0.1.0")
                copy.write_row((*row, OLD, boot, "127.0.0.1", seen, seen, False))
        cur.execute("ANALYZE instances")


def setup_nebraska(url: str, n: int) -> None:
    """Nebraska migrated its database at start; store the same machines, seen 45 min ago."""
    seen = datetime.now(UTC) - SEEN_AGO
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO instance (id, ip, created_ts, alias)"
            " SELECT lpad(to_hex(i), 32, '0'), '127.0.0.1', %s, ''"
            " FROM generate_series(0, %s - 1) AS i",
            (seen, n),
        )
        conn.execute(
            "INSERT INTO instance_application (instance_id, application_id, group_id, version,"
            " created_ts, status, last_check_for_updates, update_in_progress)"
            " SELECT lpad(to_hex(i), 32, '0'), %s, %s, %s, %s, 4, %s, false"
            " FROM generate_series(0, %s - 1) AS i",
            (FLATCAR_APP_ID, NEBRASKA_STABLE_GROUP, NEW, seen, seen, n),
        )
        conn.execute("ANALYZE")


# --- the servers ---------------------------------------------------------------------------------


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def flotilla_server(url: str, workers: int) -> Iterator[tuple[int, int]]:
    """A `flotilla updates serve` process: (pid, port)."""
    port = free_port()
    cmd = [sys.executable, "-m", "flotilla.updates", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--retention", "0"]
    proc = subprocess.Popen(cmd, env={**os.environ, "FLOTILLA_UPDATES_DB": url})
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, "flotilla")
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def nebraska_server(binary: str, url: str, tmp: Path) -> Iterator[tuple[int, int]]:
    """Nebraska with no auth on loopback (the build patches it to bind 127.0.0.1): (pid, port)."""
    port = free_port()
    static = tmp / "static"
    static.mkdir(exist_ok=True)
    env = {**os.environ, "NEBRASKA_DB_URL": url.replace("postgresql://", "postgres://")}
    env["NEBRASKA_DB_URL"] += "?sslmode=disable"
    cmd = [binary, "-auth-mode", "noop", "-port", str(port), "-http-static-dir", str(static)]
    log = (tmp / f"nebraska-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, "nebraska")
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- load ----------------------------------------------------------------------------------------


def http_request(path: str, payload: bytes) -> bytes:
    """The whole HTTP/1.1 request, as update_engine's libcurl sends it (minus its User-Agent)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(reader: Any, writer: Any, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(head[9:12])


@dataclass
class Load:
    """How to drive one run: closed loop (rate None) or open loop at ``rate`` per second."""

    rollout_share: float
    rate: float | None
    seconds: float
    connections: int


PREPARED_RATE = 4000
"""Closed loop: requests built before the clock starts, per second of the run (more are built
on the fly if a server is faster), so the load generator spends its CPU on sending."""


async def drive(port: int, path: str, machines: Machines, load: Load) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    n_prepared = int(load.seconds * (load.rate or PREPARED_RATE)) + load.connections
    share = load.rollout_share
    prepared = iter([http_request(path, machines.body(share)) for _ in range(n_prepared)])
    start = time.perf_counter() + 0.05
    end = start + load.seconds
    counter = itertools.count()

    async def conn_loop() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                request = next(prepared, None) or http_request(path, machines.body(share))
                if load.rate is None:
                    intended = time.perf_counter()
                    if intended >= end:
                        return
                else:
                    intended = start + next(counter) / load.rate
                    if intended >= end:
                        return
                    delay = intended - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                status = await _exchange(reader, writer, request)
                lat.append(time.perf_counter() - intended)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(conn_loop() for _ in range(load.connections)))
    gen_cpu = time.process_time() - cpu0
    wall = max(time.perf_counter() - start, 1e-9)
    lat.sort()
    n = len(lat)
    return {
        "n": n,
        "rps": n / wall,
        "p50": lat[n // 2] * 1000 if n else 0.0,
        "p99": lat[max(0, int(n * 0.99) - 1)] * 1000 if n else 0.0,
        "errors": errors,
        "gen": gen_cpu / max(n, 1) * 1000,
    }


def db_counters(url: str) -> tuple[int, int, int]:
    """(rows written, commits, sessions opened) so far in this database."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit, sessions"
            " FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@dataclass
class Target:
    name: str
    pid: int
    port: int
    path: str
    url: str
    machines: Machines


def measure(t: Target, pg_pid: int, load: Load) -> dict[str, float]:
    w0, c0, s0 = db_counters(t.url)
    cpu0, db0 = tree_cpu(t.pid), tree_cpu(pg_pid)
    r = asyncio.run(drive(t.port, t.path, t.machines, load))
    cpu1, db1 = tree_cpu(t.pid), tree_cpu(pg_pid)
    time.sleep(1.5)  # PostgreSQL 15 reports statistics when a backend goes idle (and every 1 s)
    w1, c1, s1 = db_counters(t.url)
    n = max(r["n"], 1)
    # The counter reads themselves: 1 commit and 1 session each.
    r.update(
        cpu=(cpu1 - cpu0) / n * 1000,
        db_cpu=(db1 - db0) / n * 1000,
        writes=(w1 - w0) / n,
        commits=max(0, c1 - c0 - 1) / n,
        sessions=max(0, s1 - s0 - 1),
        load=os.getloadavg()[0],
    )
    return r


def plan(args: argparse.Namespace) -> list[tuple[str, Load]]:
    out = [
        ("steady, closed loop", Load(0.0, None, args.seconds, args.connections)),
        ("rollout, closed loop", Load(1.0, None, args.seconds, args.connections)),
        ("98/2 mix, closed loop", Load(0.02, None, args.seconds, args.connections)),
    ]
    for rate in args.rates:
        out.append((f"steady, {rate:g}/s offered", Load(0.0, rate, args.seconds, args.open_conns)))
    out.append(("98/2 mix, 1000/s offered", Load(0.02, 1000, args.seconds, args.open_conns)))
    return out


def run_target(t: Target, pg_pid: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    print(f"== {t.name}", flush=True)
    warm = Load(0.0, None, 2, args.connections)
    asyncio.run(drive(t.port, t.path, t.machines, warm))
    results: dict[str, dict[str, float]] = {}
    for label, load in plan(args):
        r = measure(t, pg_pid, load)
        results[label] = r
        print(
            f"  {label}: {r['rps']:.0f}/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms;"
            f" CPU/check-in server {r['cpu']:.2f} ms, PostgreSQL {r['db_cpu']:.2f} ms,"
            f" load generator {r['gen']:.2f} ms;"
            f" rows written {r['writes']:.3f}, commits {r['commits']:.3f} per check-in;"
            f" {r['sessions']:.0f} sessions opened; {r['errors']:.0f} errors;"
            f" load {r['load']:.1f}",
            flush=True,
        )
    return results


# --- the agent against Nebraska ------------------------------------------------------------------


@contextlib.contextmanager
def payload_http(data: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def agent_against_nebraska(binary: str, admin_url: str, tmp: Path) -> list[str]:
    """Drive the update agent through an update served by Nebraska; return the statuses recorded."""
    from flotilla.updates.node.agent import Agent, AgentSettings

    url = create_db(admin_url, "nebraska_agent")
    payload = os.urandom(256 * 1024)
    work = tmp / "agent"
    work.mkdir()
    boot = work / "boot_id"
    boot.write_text("boot-1\n")
    with payload_http(payload) as base, nebraska_server(binary, url, tmp) as (_, port):
        sha256 = base64.b64encode(hashlib.sha256(payload).digest()).decode()
        with psycopg.connect(url) as conn:
            conn.execute(
                "UPDATE package SET url = %s, filename = 'update.gz', size = %s WHERE id = %s",
                (base, str(len(payload)), NEBRASKA_STABLE_PACKAGE),
            )
            conn.execute(
                "UPDATE flatcar_action SET sha256 = %s WHERE package_id = %s",
                (sha256, NEBRASKA_STABLE_PACKAGE),
            )
        settings = AgentSettings(
            server=f"http://127.0.0.1:{port}/v1/update/",
            state_dir=work / "state",
            slot_a=work / "usr-a.img",
            slot_b=work / "usr-b.img",
            identity=replace(identity(uuid.uuid4().hex, OLD), boot_id=""),
            boot_id_file=boot,
        )
        asyncio.run(Agent(settings).check())  # check, 13/1, download, 14/1, stage, 3/1, 800/1
        boot.write_text("boot-2\n")  # the simulated reboot into slot B
        asyncio.run(Agent(settings).check())  # 3/2 previousversion=OLD with the next check
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT status FROM instance_status_history WHERE instance_id = %s ORDER BY id",
                (settings.identity.machine_id,),
            ).fetchall()
    return [NEBRASKA_STATUS.get(int(r[0]), str(r[0])) for r in rows]


# --- main ----------------------------------------------------------------------------------------


def table(flo: dict[str, dict[str, float]], neb: dict[str, dict[str, float]] | None) -> None:
    """The markdown table for docs/benchmarks.md (ratios when Nebraska ran)."""
    head = "| run | check-ins/s | p50 ms | p99 ms"
    head += " | CPU ms/check-in: server + PostgreSQL (+ load generator)"
    head += " | rows written / commits per check-in | sessions opened |"
    if neb:
        head += " Nebraska check-ins/s | p50 ms | p99 ms | CPU ms: server + PostgreSQL"
        head += " | rows / commits | sessions | throughput vs Nebraska | Nebraska p99 / ours |"
    print(head)
    print("|---" * (7 + (8 if neb else 0)) + "|")
    for label, r in flo.items():
        line = f"| {label} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f}"
        line += f" | {r['cpu']:.2f} + {r['db_cpu']:.2f} (+ {r['gen']:.2f})"
        line += f" | {r['writes']:.3f} / {r['commits']:.3f}"
        line += f" | {r['sessions']:.0f} |"
        if neb:
            b = neb[label]
            line += f" {b['rps']:.0f} | {b['p50']:.1f} | {b['p99']:.1f}"
            line += f" | {b['cpu']:.2f} + {b['db_cpu']:.2f} (+ {b['gen']:.2f})"
            line += f" | {b['writes']:.3f} / {b['commits']:.3f} | {b['sessions']:.0f}"
            line += f" | {r['rps'] / max(b['rps'], 1e-9):.2f}x"
            line += f" | {b['p99'] / max(r['p99'], 1e-9):.2f}x |"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="length of each measured run")
    ap.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    ap.add_argument("--open-conns", type=int, default=128, help="open-loop connections")
    ap.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[500.0, 1000.0, 2000.0],
        help="open-loop offered rates per second, comma-separated",
    )
    ap.add_argument("--machines", type=int, default=300_000, help="stored machines per server")
    ap.add_argument("--workers", type=int, default=2, help="flotilla server processes")
    ap.add_argument("--pg-root", type=Path, default=None, help="PostgreSQL cluster directory")
    args = ap.parse_args()
    nebraska = os.environ.get("FLOTILLA_BENCH_NEBRASKA", "")
    print(f"load average at start: {os.getloadavg()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp_s:
        tmp = Path(tmp_s)
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres", "postgres")
        pg_root = args.pg_root or tmp / "pg"
        with postgres(pg_root) as (admin, pg_pid):
            flo_url = create_db(admin, "flotilla")
            t0 = time.perf_counter()
            setup_flotilla(flo_url, args.machines)
            print(f"flotilla: {args.machines:,} machines stored in {time.perf_counter() - t0:.0f}s")
            with flotilla_server(flo_url, args.workers) as (pid, port):
                name = f"Flotilla, {args.workers} workers"
                machines = Machines(args.machines, 1)
                flo_t = Target(name, pid, port, "/v1/update/", flo_url, machines)
                flo = run_target(flo_t, pg_pid, args)
            neb: dict[str, dict[str, float]] | None = None
            statuses: list[str] = []
            if nebraska:
                neb_url = create_db(admin, "nebraska")
                with nebraska_server(nebraska, neb_url, tmp) as (pid, port):
                    t0 = time.perf_counter()
                    setup_nebraska(neb_url, args.machines)
                    took = time.perf_counter() - t0
                    print(f"nebraska: {args.machines:,} machines stored in {took:.0f}s")
                    machines = Machines(args.machines, 1)
                    neb_t = Target("Nebraska 3.0.0", pid, port, "/v1/update/", neb_url, machines)
                    neb = run_target(neb_t, pg_pid, args)
                statuses = agent_against_nebraska(nebraska, admin, tmp)
    print(f"\nload average at the end: {os.getloadavg()}, {os.cpu_count()} cores\n")
    table(flo, neb)
    if nebraska:
        want = ["Downloading", "Downloaded", "Installed", "Complete"]
        seen = [s for s in statuses if s in want]
        ok = seen == want
        print(f"\nagent against Nebraska: statuses recorded {statuses} -> {'OK' if ok else 'FAIL'}")
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
