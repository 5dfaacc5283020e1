"""Real node: time from `up --real-node` to node Ready, and pod start latency on it.

Run: .venv/bin/python bench/testenv_real_node.py [--pods N]
Pod start latency is create → Running for a pod whose image is already in containerd
(flotilla.local/busybox, imagePullPolicy IfNotPresent), measured one pod at a time, then for N pods
created at once. No peer runs here (kind needs images from the internet).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from flotilla.core.kube import client_from_kubeconfig, wait_until
from flotilla.testenv.build import BuildSpec, is_built
from flotilla.testenv.cluster import ControlPlane
from flotilla.testenv.realnode import REAL_NODE_LABEL


def pod(name: str) -> Pod:
    return Pod(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=PodSpec(
            nodeSelector={REAL_NODE_LABEL: "true"},
            terminationGracePeriodSeconds=0,
            containers=[
                Container(
                    name="c",
                    image="flotilla.local/busybox:latest",
                    imagePullPolicy="IfNotPresent",
                    command=["sleep", "3600"],
                )
            ],
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--sequential", type=int, default=5)
    args = parser.parse_args()
    if not is_built(BuildSpec()):
        raise SystemExit("binaries missing: run `flotilla testenv build`")
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        plane = ControlPlane(Path(tmp))
        try:
            started = time.monotonic()
            state = plane.up(nodes=1, real_node="real-node")
            print(
                f"control plane ready {state.ready_seconds:.2f}s; real node Ready "
                f"{state.real_node_ready_seconds['real-node']:.2f}s after that; "
                f"`up --real-node` total {time.monotonic() - started:.2f}s"
            )
            with client_from_kubeconfig(plane.layout.kubeconfig) as client:

                def running(name: str) -> bool | None:
                    p = client.get(Pod, name, namespace="default")
                    return True if p.status is not None and p.status.phase == "Running" else None

                one_by_one = []
                for i in range(args.sequential):
                    t0 = time.monotonic()
                    client.create(pod(f"seq-{i}"))
                    wait_until(
                        lambda n=f"seq-{i}": running(n),
                        timeout=60,
                        interval=0.05,
                        what="pod Running",
                    )
                    one_by_one.append(time.monotonic() - t0)
                print(
                    f"pod start latency, one at a time ({args.sequential}): median "
                    f"{statistics.median(one_by_one):.2f}s, min {min(one_by_one):.2f}s, "
                    f"max {max(one_by_one):.2f}s"
                )
                t0 = time.monotonic()
                names = [f"batch-{i}" for i in range(args.pods)]
                for name in names:
                    client.create(pod(name))
                done: dict[str, float] = {}
                deadline = time.monotonic() + 180
                while len(done) < len(names) and time.monotonic() < deadline:
                    for name in names:
                        if name not in done and running(name):
                            done[name] = time.monotonic() - t0
                    time.sleep(0.05)
                lat = sorted(done.values())
                print(
                    f"{len(names)} pods at once: all Running in {max(lat):.2f}s, "
                    f"p50 {statistics.median(lat):.2f}s ({len(done)}/{len(names)} started)"
                )
        finally:
            t0 = time.monotonic()
            plane.down()
            print(f"down (drain + stop) {time.monotonic() - t0:.2f}s")


if __name__ == "__main__":
    main()
