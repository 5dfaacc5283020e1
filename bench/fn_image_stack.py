"""The function images against functions-framework's, in one dockerd, in the same run.

What it answers: does the image stack (uvloop + httptools for Python, the pinned Node 20) keep
flotilla's per-request cost below functions-framework's with metrics and tracing on, and how long
does a container take from its process start to the first answer?

Four images are built from the same trivial ``hello`` function:
- flotilla Python (``def`` and ``async def``) and flotilla Node, as ``fn build`` builds them, with a
  span per request exported over OTLP/HTTP to a collector in this process;
- functions-framework-python 3.10.2 (gunicorn, as it ships) on the same Python base image, its
  distributions copied from this environment the way ``fn build`` copies flotilla's;
- @google-cloud/functions-framework 5.0.5 (Express) on the same Node base image, installed here
  with ``npm install`` (bench only).

Per image: the server's CPU per request (the container cgroup's ``cpu_usage.total_usage``, which
counts every process the container ran, exited ones included) and requests/s, under 16 and 64
keep-alive connections from ``fn_overhead.py``'s client; then cold start: the container's own
``State.StartedAt`` to the first 200, median of ``--starts``. Ratios are functions-framework's
figure over ours (above 1 means flotilla costs less), per runtime.

    .venv/bin/python bench/fn_image_stack.py [--seconds 5] [--starts 7] [--docker-host URL]

Without ``--docker-host`` it starts a private dockerd of its own (``flotilla.testenv.dockerd``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fn_overhead import (
    FF_MAIN,
    FLOTILLA_ASYNC,
    FLOTILLA_SYNC,
    NullCollector,
    _worker,
    first_response,
    free_port,
)

FF_NODE_VERSION = "5.0.5"
FF_NODE_MAIN = (
    "const functions = require('@google-cloud/functions-framework');\n"
    "functions.http('hello', (req, res) => { res.send('hello'); });\n"
)
NODE_HELLO = "exports.handle = async () => 'hello';\n"
CONNECTIONS = (16, 64)


@contextmanager
def private_dockerd() -> Iterator[str]:
    from flotilla.testenv.components import Layout
    from flotilla.testenv.dockerd import DockerLayout, kill_containers, start_dockerd
    from flotilla.testenv.nodehost import unmount_under
    from flotilla.testenv.processes import stop_process

    with tempfile.TemporaryDirectory(prefix="fn-stack-") as tmp:
        layout = Layout(Path(tmp))
        layout.logs.mkdir(parents=True)
        record, host = start_dockerd(layout)
        try:
            yield host
        finally:
            kill_containers(DockerLayout(layout.state_dir))
            stop_process(record)
            unmount_under(layout.state_dir)  # dockerd's netns bind mount


def ff_python_context() -> dict[str, bytes]:
    """functions-framework-python and what it requires, copied as flotilla's own runtime is."""
    from flotilla.fn.image import _distribution_files, python_runtime_distributions

    files = {
        f"deps/{rel}": data
        for rel, data in _distribution_files(python_runtime_distributions(("functions-framework",)))
    }
    files["app/main.py"] = FF_MAIN.encode()
    files["Dockerfile"] = (
        b"FROM flotilla.local/python:3.11\n"
        b"COPY deps/ /opt/ff/site/\n"
        b"RUN python3 -m compileall -q /opt/ff/site\n"
        b'ENV PYTHONPATH="/opt/ff/site" PYTHONUNBUFFERED="1"\n'
        b"COPY app/ /app/\n"
        b"USER 65532:65532\n"
        b'CMD ["python3", "-m", "functions_framework", "--target", "hello", '
        b'"--source", "/app/main.py"]\n'
    )
    return files


def ff_node_context(work: Path) -> dict[str, bytes]:
    """@google-cloud/functions-framework from npm, its node_modules copied into the image."""
    app = work / "ff-node"
    app.mkdir()
    (app / "index.js").write_text(FF_NODE_MAIN)
    (app / "package.json").write_text('{"name": "ff-bench", "version": "1.0.0"}\n')
    subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--omit=dev",
            f"@google-cloud/functions-framework@{FF_NODE_VERSION}",
        ],
        cwd=app,
        check=True,
        capture_output=True,
    )
    files = {
        f"app/{p.relative_to(app).as_posix()}": p.read_bytes()
        for p in app.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    files["Dockerfile"] = (
        b"FROM flotilla.local/node:20\n"
        b"COPY app/ /app/\n"
        b"WORKDIR /app\n"
        b'ENV NODE_ENV="production"\n'
        b"USER 65532:65532\n"
        b'CMD ["node", "node_modules/@google-cloud/functions-framework/build/src/main.js", '
        b'"--target=hello"]\n'
    )
    return files


def build_all(docker_host: str, work: Path) -> dict[str, tuple[str, str]]:
    """name -> (image tag, runtime), every image built in ``docker_host``."""
    from flotilla.fn.image import build_context, build_image
    from flotilla.fn.model import parse_spec

    images: dict[str, tuple[str, str]] = {}
    flotilla = {
        "flotilla python (def)": ("python", {"func.py": FLOTILLA_SYNC.encode()}),
        "flotilla python (async def)": ("python", {"func.py": FLOTILLA_ASYNC.encode()}),
        "flotilla node": ("node", {"index.js": NODE_HELLO.encode()}),
    }
    for index, (name, (runtime, files)) in enumerate(flotilla.items()):
        spec = parse_spec({"name": "bench", "runtime": runtime})
        tag = f"flotilla.local/stack-{index}:latest"
        build_image(build_context(spec, files), tag, docker_host=docker_host)
        images[name] = (tag, runtime)
    peers = {
        "functions-framework python": ("python", ff_python_context()),
        "functions-framework node": ("node", ff_node_context(work)),
    }
    from flotilla.fn.image import BuildContext

    for index, (name, (runtime, files)) in enumerate(peers.items()):
        tag = f"flotilla.local/stack-peer-{index}:latest"
        build_image(BuildContext(files), tag, docker_host=docker_host)
        images[name] = (tag, runtime)
    return images


def _started_at(attrs: dict[str, Any]) -> float:
    """``State.StartedAt`` (RFC 3339 with nanoseconds) as a Unix time."""
    text = attrs["State"]["StartedAt"]
    head, _, frac = text.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return base + float("0." + (frac or "0")[:9])


def drive(port: int, seconds: float, connections: int) -> list[float]:
    """Closed-loop keep-alive load for ``seconds``; the latency of every answered request."""
    import asyncio

    import uvloop

    async def run() -> list[float]:
        latencies: list[float] = []
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_worker(port, stop, latencies) for _ in range(connections)))
        return latencies

    return uvloop.run(run())


def cpu_ns(client: Any, container_id: str) -> int:
    stats = client.api.stats(container_id, stream=False, one_shot=True)
    return int(stats["cpu_stats"]["cpu_usage"]["total_usage"])


def run_container(client: Any, tag: str, port: int, collector: str) -> Any:
    return client.containers.run(
        tag,
        detach=True,
        network_mode="host",
        environment={
            "PORT": str(port),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
        },
    )


def measure(client: Any, tag: str, collector: str, seconds: float, starts: int) -> dict[str, float]:
    out: dict[str, float] = {}
    port = free_port()
    container = run_container(client, tag, port, collector)
    try:
        if not first_response(port, time.perf_counter() + 30):
            raise RuntimeError(f"{tag} did not answer: {container.logs()[-2000:]!r}")
        for connections in CONNECTIONS:
            drive(port, 0.5, connections)  # warm-up, not counted
            before = cpu_ns(client, container.id)
            latencies = drive(port, seconds, connections)
            used = cpu_ns(client, container.id) - before
            latencies.sort()
            out[f"rps_{connections}"] = len(latencies) / seconds
            out[f"p99_ms_{connections}"] = latencies[int(len(latencies) * 0.99)] * 1e3
            out[f"cpu_us_{connections}"] = used / 1e3 / len(latencies)
    finally:
        container.remove(force=True)
    colds = []
    for _ in range(starts):
        port = free_port()
        container = run_container(client, tag, port, collector)
        try:
            if not first_response(port, time.perf_counter() + 30):
                raise RuntimeError(f"{tag} did not answer")
            answered = time.time()
            container.reload()
            colds.append((answered - _started_at(container.attrs)) * 1e3)
        finally:
            container.remove(force=True)
    out["cold_ms"] = statistics.median(colds)
    out["cold_min_ms"] = min(colds)
    out["cold_max_ms"] = max(colds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--docker-host", help="a dockerd with the flotilla.local base images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import docker

    load_before = os.getloadavg()
    collector = NullCollector()
    results: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        private_dockerd() if not args.docker_host else nullcontext(args.docker_host) as host,
    ):
        images = build_all(host, Path(tmp))
        client = docker.DockerClient(base_url=host, timeout=120)
        try:
            for name, (tag, _runtime) in images.items():
                results[name] = measure(client, tag, collector.endpoint, args.seconds, args.starts)
        finally:
            client.close()
    collector.close()
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"results": results, "spans": collector.spans}, indent=2))
        return
    print(
        f"{'image':30} {'conns':>5} {'req/s':>8} {'p99 ms':>7} {'CPU us/req':>10} "
        f"{'FF/ours CPU':>11} {'ours/FF req/s':>13}"
    )
    for name, r in results.items():
        peer = results[f"functions-framework {images[name][1]}"]
        for c in CONNECTIONS:
            print(
                f"{name:30} {c:5d} {r[f'rps_{c}']:8.0f} {r[f'p99_ms_{c}']:7.1f} "
                f"{r[f'cpu_us_{c}']:10.0f} {peer[f'cpu_us_{c}'] / r[f'cpu_us_{c}']:10.2f}x "
                f"{r[f'rps_{c}'] / peer[f'rps_{c}']:12.2f}x"
            )
    print()
    print(f"{'image':30} {'cold start: StartedAt -> first 200, ms (median, min-max)':>40}")
    for name, r in results.items():
        print(f"{name:30} {r['cold_ms']:6.0f} ({r['cold_min_ms']:.0f}-{r['cold_max_ms']:.0f})")
    print(
        f"\nspans exported by flotilla during the run: {collector.spans}; {args.seconds:.0f} s per "
        f"load step, {os.cpu_count()} CPUs shared by client and server; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )


if __name__ == "__main__":
    main()
