"""How long the real control plane takes to build (from build.json) and to start, in this run.

Run: .venv/bin/python bench/testenv_startup.py [--runs N]
Start-up is measured twice: to a ready API (/readyz) and to every node Ready with the default
service account present (what tests wait for). No peer runs here: kind and envtest download
release binaries, which this machine cannot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from flotilla.testenv.build import BuildSpec, is_built
from flotilla.testenv.cluster import ControlPlane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    spec = BuildSpec()
    if not is_built(spec):
        raise SystemExit("binaries missing: run `flotilla testenv build` (or `make testenv-build`)")
    record = json.loads((spec.directory / "build.json").read_text())
    timings: dict[str, float] = record.get("timings", {})
    print(f"Kubernetes v{spec.kubernetes_version}, kwok v{spec.kwok_version}")
    print("last cold build, seconds per step (from build.json):")
    for step, seconds in timings.items():
        print(f"  {step:<75} {seconds:7.1f}")
    print(f"  {'total':<75} {sum(timings.values()):7.1f}")

    ready: list[float] = []
    api: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
            plane = ControlPlane(Path(tmp), spec)
            started = time.monotonic()
            try:
                state = plane.up(nodes=args.nodes)
                ready.append(state.ready_seconds)
                api.append(state.api_ready_seconds)
                print(
                    f"run {run + 1}: API /readyz in {state.api_ready_seconds:.2f}s; "
                    f"{args.nodes} nodes Ready + default SA in {state.ready_seconds:.2f}s; "
                    f"wall {time.monotonic() - started:.2f}s"
                )
            finally:
                stop_started = time.monotonic()
                plane.down()
                print(f"        down in {time.monotonic() - stop_started:.2f}s")
    print(f"start-up to API ready: median {statistics.median(api):.2f}s")
    print(
        f"start-up to ready: median {statistics.median(ready):.2f}s, "
        f"min {min(ready):.2f}s, max {max(ready):.2f}s over {len(ready)} runs (goal < 20 s)"
    )


if __name__ == "__main__":
    main()
