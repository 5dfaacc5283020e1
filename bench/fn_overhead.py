"""Per-request overhead and cold start of a trivial Python function vs functions-framework.

flotilla serves it with observability on (metrics, a span per request exported over OTLP to a
local collector, trace context); functions-framework-python serves it as it ships (gunicorn, no
metrics or tracing). Both run on this machine in the same run; the load generator is a
keep-alive asyncio client in this process. Prints requests per second, p50/p99 latency, the
ratio, the server's CPU per request (its whole process tree from /proc, exited children included),
at 16 and then 64 connections, and cold start (process spawn to first 200 response), median of
several starts.

    .venv/bin/python bench/fn_overhead.py [--seconds 5] [--connections 16] [--starts 7] [--java]
        [--docker-host unix:///…/docker.sock]   # also: cold start of the built images

With ``--docker-host`` it also builds the function's Python and Node images in that dockerd and
reports, per ``docker run``, the runtime's own ``faas_init_duration_seconds`` (process start to
serving), median of ``--starts``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FLOTILLA_SYNC = 'def handle(request):\n    return "hello"\n'
FLOTILLA_ASYNC = 'async def handle(request):\n    return "hello"\n'
FF_MAIN = (
    "import functions_framework\n\n\n@functions_framework.http\n"
    'def hello(request):\n    return "hello"\n'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NullCollector:
    """Accepts OTLP/HTTP posts and counts spans, so export really happens during the run."""

    def __init__(self) -> None:
        self.spans = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["content-length"])))
                collector.spans += sum(
                    len(ss["spans"]) for rs in doc["resourceSpans"] for ss in rs["scopeSpans"]
                )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


JAVA_HELLO = """package function;

import dev.flotilla.fn.Request;

public class Function {
    public String handle(Request request) {
        return "hello";
    }
}
"""


def java_commands(
    work: Path, port: int, collector: str
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The same function in Java (``fn init --runtime java``'s project, body returning "hello"),
    started as ``fn run`` starts it, and the same without the class-data archive."""
    from flotilla.fn.jvm import build_function, class_archive, java_argv, java_runtime
    from flotilla.fn.model import parse_spec
    from flotilla.fn.templates import project_files

    project = work / "java"
    spec = parse_spec({"name": "bench", "runtime": "java"})
    for rel, text in project_files(spec, "http").items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    (project / "src/main/java/function/Function.java").write_text(JAVA_HELLO)
    (project / "src/test/java/function/FunctionTest.java").unlink()
    runtime = java_runtime()
    built = build_function(project)
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "FLOTILLA_FN_SOURCE": str(project),
        "FLOTILLA_FN_NAME": "bench",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
    }
    argv = java_argv(runtime, built, class_archive(runtime))
    plain = [a for a in argv if not a.startswith("-XX:SharedArchiveFile=")]
    return {"flotilla java": (argv, env), "flotilla java (no CDS archive)": (plain, env)}


def commands(work: Path, port: int, collector: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    base = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1"}
    fl = {
        **base,
        "FLOTILLA_FN_SOURCE": str(work),
        "FLOTILLA_FN_NAME": "bench",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
    }
    ff_bin = shutil.which("functions-framework", path=str(Path(sys.executable).parent))
    return {
        "flotilla (sync def)": (
            [sys.executable, "-m", "flotilla.fn.runtime"],
            {**fl, "FLOTILLA_FN_HANDLER": "func_sync:handle"},
        ),
        "flotilla (async def)": (
            [sys.executable, "-m", "flotilla.fn.runtime"],
            {**fl, "FLOTILLA_FN_HANDLER": "func_async:handle"},
        ),
        "functions-framework": (
            [
                ff_bin or "functions-framework",
                "--target",
                "hello",
                "--source",
                str(work / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            base,
        ),
    }


def first_response(port: int, deadline: float) -> bool:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def cold_start(argv: list[str], env: dict[str, str], port: int, starts: int) -> float:
    """Median seconds from spawn to the first 200 answer."""
    times = []
    for _ in range(starts):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=env.get("FLOTILLA_FN_SOURCE"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if not first_response(port, t0 + 20):
                raise RuntimeError(f"{argv} did not answer")
            times.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(10)
    return statistics.median(times)


async def _worker(port: int, stop: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    try:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:200])
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()
        await writer.wait_closed()


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and every descendant, exited ones too: each live process's own utime+stime
    plus its reaped children's (cutime+cstime), from /proc (gunicorn's workers are children)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is None:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        todo += children.get(current, [])
    return total / tick


def load(port: int, seconds: float, connections: int) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency (seconds) over ``seconds`` of steady load."""

    async def main() -> list[float]:
        latencies: list[float] = []
        await asyncio.gather(
            *(_worker(port, time.perf_counter() + 0.5, []) for _ in range(connections))
        )  # warm-up
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_worker(port, stop, latencies) for _ in range(connections)))
        return latencies

    try:
        import uvloop

        latencies = uvloop.run(main())
    except ImportError:
        latencies = asyncio.run(main())
    latencies.sort()
    return (
        len(latencies) / seconds,
        latencies[len(latencies) // 2],
        latencies[int(len(latencies) * 0.99)],
    )


def image_cold_starts(
    docker_host: str, starts: int, java_project: Path | None = None
) -> dict[str, float]:
    """Median ``faas_init_duration_seconds`` over ``starts`` container starts, per runtime."""
    import docker
    import httpx

    from flotilla.fn.image import build_context, build_image, function_files
    from flotilla.fn.model import parse_spec

    sources = {
        "python": {"func.py": FLOTILLA_SYNC.encode()},
        "node": {"index.js": b"exports.handle = async () => 'hello';\n"},
    }
    if java_project is not None:
        sources["java"] = {}
    out: dict[str, float] = {}
    client = docker.DockerClient(base_url=docker_host)
    try:
        for runtime, files in sources.items():
            spec = parse_spec({"name": f"bench-{runtime}", "runtime": runtime})
            tag = f"flotilla.local/bench-{runtime}:latest"
            context = (
                build_context(spec, function_files(java_project), project=java_project)
                if runtime == "java" and java_project is not None
                else build_context(spec, files)
            )
            build_image(context, tag, docker_host=docker_host)
            seconds = []
            for _ in range(starts):
                port = free_port()
                container = client.containers.run(
                    tag, detach=True, network_mode="host", environment={"PORT": str(port)}
                )
                try:
                    first_response(port, time.perf_counter() + 20)
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                    line = next(
                        x
                        for x in text.splitlines()
                        if x.startswith("faas_init_duration_seconds_sum")
                    )
                    seconds.append(float(line.rsplit(" ", 1)[1]))
                finally:
                    container.remove(force=True)
            out[runtime] = statistics.median(seconds) * 1e3
    finally:
        client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--connections-high", type=int, default=64, help="a second load step (0: none)"
    )
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--docker-host", help="also measure the images' cold start here")
    parser.add_argument(
        "--java", action="store_true", help="also the same function in the Java runtime"
    )
    args = parser.parse_args()
    collector = NullCollector()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "func_sync.py").write_text(FLOTILLA_SYNC)
        (work / "func_async.py").write_text(FLOTILLA_ASYNC)
        (work / "main.py").write_text(FF_MAIN)
        port = free_port()
        servers = commands(work, port, collector.endpoint)
        if args.java:
            servers.update(java_commands(work, port, collector.endpoint))
        for name, (argv, env) in servers.items():
            cold = cold_start(argv, env, port, args.starts)
            proc = subprocess.Popen(
                argv, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                first_response(port, time.perf_counter() + 20)
                cpu_before = tree_cpu_seconds(proc.pid)
                rps, p50, p99 = load(port, args.seconds, args.connections)
                cpu = tree_cpu_seconds(proc.pid) - cpu_before
                busier = {}
                if args.connections_high:
                    before_high = tree_cpu_seconds(proc.pid)
                    rps_high, _, p99_high = load(port, args.seconds, args.connections_high)
                    cpu_high = tree_cpu_seconds(proc.pid) - before_high
                    busier = {
                        "rps_high": rps_high,
                        "p99_ms_high": p99_high * 1e3,
                        # load() runs 0.5 s of uncounted warm-up in the same CPU window
                        "cpu_us_high": cpu_high * 1e6 / (rps_high * (args.seconds + 0.5)),
                    }
            finally:
                proc.terminate()
                proc.wait(10)
            results[name] = {
                "rps": rps,
                "p50_ms": p50 * 1e3,
                "p99_ms": p99 * 1e3,
                "cold_start_ms": cold * 1e3,
                "cpu_us": cpu * 1e6 / (rps * (args.seconds + 0.5)),
                **busier,
            }
        java_project = work / "java" if args.java else None
        images = (
            image_cold_starts(args.docker_host, args.starts, java_project)
            if args.docker_host
            else {}
        )
    collector.close()
    ff = results["functions-framework"]["rps"]
    if args.json:
        print(
            json.dumps(
                {"results": results, "spans_exported": collector.spans, "image_init_ms": images},
                indent=2,
            )
        )
        return
    ff_cpu = results["functions-framework"]["cpu_us"]
    print(
        f"{'server':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cold start ms':>14} {'vs FF':>6}"
        f" {'CPU us/req':>10} {'FF/ours CPU':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:24} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['cold_start_ms']:14.0f} {r['rps'] / ff:5.2f}x {r['cpu_us']:10.0f} "
            f"{ff_cpu / r['cpu_us']:10.2f}x"
        )
    if args.connections_high:
        ff_high = results["functions-framework"]
        print(f"at {args.connections_high} connections:")
        for name, r in results.items():
            print(
                f"{name:24} {r['rps_high']:9.0f} req/s, p99 {r['p99_ms_high']:.2f} ms, "
                f"{r['cpu_us_high']:.0f} us CPU/req; vs FF: "
                f"{r['rps_high'] / ff_high['rps_high']:.2f}x req/s, "
                f"{ff_high['cpu_us_high'] / r['cpu_us_high']:.2f}x less CPU"
            )
    print(f"load average: {os.getloadavg()[0]:.1f} (1 min, at the end)")
    print(f"spans exported to the local OTLP collector during the run: {collector.spans}")
    print(
        f"{args.connections} keep-alive connections, {args.seconds:.0f} s per server, "
        f"{os.cpu_count()} CPUs shared by client and server; cold start is the median of "
        f"{args.starts} spawns"
    )
    for runtime, ms in images.items():
        print(
            f"image cold start ({runtime}, process start to serving, median of "
            f"{args.starts} docker runs): {ms:.0f} ms"
        )


if __name__ == "__main__":
    main()
