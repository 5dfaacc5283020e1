"""Dev-loop latency: file save → the running process serves the change, on the real node.

Runs ``examples/dev/python-app`` with the dev engine against a ``flotilla testenv`` cluster with a
real node, its dockerd and registry, then times two loops through the port-forward:
- live update: edit ``app/server.py`` (sync + run + process restart in the container);
- full rebuild: edit ``requirements.txt`` (under ``fall_back_on``) and the server together
  (docker build, push, apply, rollout, port-forward to the new pod).

No Tilt runs here, so the comparison is with Tilt's published figures for its Python guide
(live_update 1-2 s, naive rebuild 10-11 s; tilt.build docs/example_python.md).

    .venv/bin/python bench/dev_loop.py [--state-dir DIR] [--live N] [--rebuild N]

Without ``--state-dir`` it starts its own environment in a temporary directory and stops it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from flotilla.core.kube import apply_raw, client_from_kubeconfig, delete_raw
from flotilla.dev.runtime.engine import Engine, EngineConfig

ROOT = Path(__file__).resolve().parents[1]
FLOTILLA = [sys.executable, "-m", "flotilla", "testenv"]
TILT_LIVE_UPDATE_S = (1.0, 2.0)
TILT_NAIVE_REBUILD_S = (10.0, 11.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.3) as resp:
            return str(resp.read().decode().strip())
    except OSError:
        return ""


def until_served(port: int, text: str, timeout: float = 120.0) -> float:
    start = time.monotonic()
    while fetch(port) != text:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{text!r} not served after {timeout:.0f}s")
        time.sleep(0.005)
    return time.monotonic() - start


def environment(state_dir: Path | None) -> tuple[Path, dict[str, str], bool]:
    started = state_dir is None
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="flotilla-bench-dev-"))
        subprocess.run(
            [
                *FLOTILLA,
                "up",
                "--nodes",
                "1",
                "--real-node",
                "--docker",
                "--state-dir",
                str(state_dir),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
    status = json.loads(
        subprocess.run(
            [*FLOTILLA, "status", "-o", "json", "--state-dir", str(state_dir)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    return state_dir, status, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--live", type=int, default=10, help="live-update iterations")
    parser.add_argument("--rebuild", type=int, default=3, help="full-rebuild iterations")
    args = parser.parse_args()
    state_dir, status, started = environment(args.state_dir)
    kubeconfig = state_dir / "kubeconfig"
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="flotilla-bench-app-"))
    app = work / "python-app"
    shutil.copytree(ROOT / "examples" / "dev" / "python-app", app)
    port = free_port()
    tf = app / "Tiltfile"
    tf.write_text(tf.read_text().replace("18080", str(port)))
    server = app / "app" / "server.py"
    client = client_from_kubeconfig(kubeconfig)
    apply_raw(client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    engine = Engine(
        EngineConfig(
            tiltfile=tf,
            kubeconfig=kubeconfig,
            namespace=namespace,
            registry=str(status["registry"]),
            docker_host=str(status["docker_host"]),
            debounce_ms=20,
        )
    )
    live: list[float] = []
    rebuild: list[float] = []
    detect: list[float] = []  # save → the engine starts the update (watch + debounce)
    update: list[float] = []  # the live update itself (one exec: copy, run, restart)
    try:
        t0 = time.monotonic()
        engine.load()
        engine.start()
        until_served(port, "hello from flotilla dev v1", timeout=300)
        first = time.monotonic() - t0
        version = 1
        st = engine.states["hello-py"]
        for _ in range(args.live):
            text = server.read_text()
            version += 1
            written = time.time()
            server.write_text(text.replace(f"dev v{version - 1}", f"dev v{version}"))
            live.append(until_served(port, f"hello from flotilla dev v{version}"))
            rec = st.last
            if rec is not None and rec.action == "live_update":
                detect.append(rec.started - written)
                update.append(rec.seconds)
            time.sleep(0.3)
        for i in range(args.rebuild):
            text = server.read_text()
            version += 1
            (app / "requirements.txt").write_text(f"# rebuild {i}\n")
            server.write_text(text.replace(f"dev v{version - 1}", f"dev v{version}"))
            rebuild.append(until_served(port, f"hello from flotilla dev v{version}"))
            time.sleep(0.5)
    finally:
        engine.stop()
        delete_raw(client, "v1", "Namespace", namespace)
        client.close()
        shutil.rmtree(work, ignore_errors=True)
        if started:
            subprocess.run(
                [*FLOTILLA, "down", "--state-dir", str(state_dir)], capture_output=True, check=False
            )
    report("first up (build, push, apply, ready, served)", [first])
    report("live update: save -> served", live, TILT_LIVE_UPDATE_S, goal=0.3)
    report("  of which save -> update starts (watch, debounce)", detect)
    report("  of which the update (one exec: copy, run, restart)", update)
    report("full rebuild: save -> served", rebuild, TILT_NAIVE_REBUILD_S, goal=5.0)


def report(
    name: str,
    samples: list[float],
    tilt: tuple[float, float] | None = None,
    goal: float | None = None,
) -> None:
    if not samples:
        return
    med = statistics.median(samples)
    line = (
        f"{name}: median {med * 1000:.0f} ms, min {min(samples) * 1000:.0f} ms, "
        f"max {max(samples) * 1000:.0f} ms (n={len(samples)})"
    )
    if tilt is not None:
        line += (
            f"; Tilt's published {tilt[0]:.0f}-{tilt[1]:.0f} s → "
            f"{tilt[0] / med:.1f}-{tilt[1] / med:.1f}x faster"
        )
    if goal is not None:  # the goals: live update < 0.3 s, rebuild fallback < 5 s
        line += f"; goal < {goal:g} s: {'met' if med < goal else 'NOT met'}"
    print(line)


if __name__ == "__main__":
    main()
