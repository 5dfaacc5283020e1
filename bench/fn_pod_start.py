"""Cold start of a function's pod on the real node: scale-up to Running, first answer, Ready.

What it answers: once the image is on the node, how long does a new instance of a function take,
and how much of it is the runtime? Its own environment (control plane, one real node, a private
dockerd); the Python and Node ``hello`` images built as ``fn build`` builds them, pushed to the
environment's registry and deployed as ``fn deploy --target kubernetes`` renders them. Then, per
runtime and ``--starts`` times: scale the Deployment 0 → 1 and time, on this machine's clock,

- the pod ``Running`` (sandbox and container started),
- the first 200 from the pod's own address (polled every 5 ms from here),
- the pod ``Ready`` (the kubelet's startup probe, period 1 s, then the readiness probe),

and read the runtime's own ``faas_init_duration_seconds`` (its process start to serving).

    .venv/bin/python bench/fn_pod_start.py [--starts 7]

No peer runs here: the comparison that matters (functions-framework) is per process and image
in ``fn_image_stack.py``; this one says what the node adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment

from flotilla.core.kube import client_from_kubeconfig, list_raw, wait_until
from flotilla.fn.deploy import apply_objects, invoke_service, wait_ready
from flotilla.fn.image import build_context, build_image, push_image, push_reference, tag_image
from flotilla.fn.manifests import kubernetes_objects
from flotilla.fn.model import parse_spec
from flotilla.testenv.cluster import ControlPlane
from flotilla.testenv.realnode import REAL_NODE_LABEL

SOURCES = {
    "python": {"func.py": b'def handle(request):\n    return "hello"\n'},
    "node": {"index.js": b"exports.handle = async () => 'hello';\n"},
}
NAMESPACE = "default"


def pods_of(client: Client, name: str) -> list[dict[str, Any]]:
    return list_raw(
        client, "v1", "Pod", namespace=NAMESPACE, labels={"flotilla.dev/function": name}
    )


def scale(client: Client, name: str, replicas: int) -> None:
    client.patch(Deployment, name, {"spec": {"replicas": replicas}}, namespace=NAMESPACE)


def one_start(client: Client, name: str, port: int) -> dict[str, float]:
    """Scale 0 → 1 and time what follows; the Deployment is at 0 with no pods when called."""
    t0 = time.monotonic()
    scale(client, name, 1)
    marks: dict[str, float] = {}
    address = ""
    http = httpx.Client(timeout=0.5)
    deadline = t0 + 120
    try:
        while len(marks) < 3 and time.monotonic() < deadline:
            pods = pods_of(client, name) if "running" not in marks or "ready" not in marks else []
            for pod in pods:
                status = pod.get("status") or {}
                if status.get("phase") == "Running" and "running" not in marks:
                    marks["running"] = time.monotonic() - t0
                address = address or status.get("podIP", "")
                conditions = status.get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    marks.setdefault("ready", time.monotonic() - t0)
            if address and "first_200" not in marks:
                try:
                    if http.get(f"http://{address}:{port}/").status_code == 200:
                        marks["first_200"] = time.monotonic() - t0
                except httpx.HTTPError:
                    pass
            time.sleep(0.005)
    finally:
        http.close()
    if len(marks) < 3:
        raise RuntimeError(f"{name}: only {sorted(marks)} within 120 s")
    _, _, body = invoke_service(client, NAMESPACE, name, "/metrics")
    line = next(
        x for x in body.decode().splitlines() if x.startswith("faas_init_duration_seconds_sum")
    )
    marks["init"] = float(line.rsplit(" ", 1)[1])
    scale(client, name, 0)
    wait_until(lambda: True if not pods_of(client, name) else None, timeout=60, what="no pods")
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=7)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fn-pod-start-") as tmp:
        plane = ControlPlane(Path(tmp))
        try:
            state = plane.up(nodes=1, real_nodes=("real-node",), docker=True)
            registry = f"127.0.0.1:{state.registry_port}"
            with client_from_kubeconfig(plane.layout.kubeconfig) as client:
                for runtime, files in SOURCES.items():
                    name = f"start-{runtime}"
                    spec = parse_spec(
                        {
                            "name": name,
                            "runtime": runtime,
                            "deploy": {"nodeSelector": {REAL_NODE_LABEL: "true"}},
                        }
                    )
                    built = build_image(
                        build_context(spec, files),
                        f"flotilla.local/{name}:bench",
                        docker_host=state.docker_host,
                    )
                    target = push_reference(built.image, registry)
                    tag_image(built.image_id, target, docker_host=state.docker_host)
                    digest = push_image(target, docker_host=state.docker_host)
                    image = f"{target.rsplit(':', 1)[0]}@{digest}"
                    apply_objects(client, kubernetes_objects(spec, image, NAMESPACE))
                    wait_ready(client, NAMESPACE, name, timeout=180)  # the pull, once
                    scale(client, name, 0)
                    wait_until(
                        lambda n=name: True if not pods_of(client, n) else None,
                        timeout=60,
                        what="no pods",
                    )
                    results[runtime] = [
                        one_start(client, name, spec.deploy.port) for _ in range(args.starts)
                    ]
        finally:
            plane.down()
    load_after = os.getloadavg()
    print(f"{'runtime':8} {'Running':>9} {'first 200':>10} {'Ready':>8} {'init (in process)':>18}")
    for runtime, runs in results.items():

        def med(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] * 1e3 for r in runs]
            return f"{statistics.median(values):.0f} ms"

        print(
            f"{runtime:8} {med('running'):>9} {med('first_200'):>10} {med('ready'):>8} "
            f"{med('init'):>18}"
        )
    print(
        f"medians of {args.starts} scale-ups 0 -> 1 per runtime, image already on the node; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )


if __name__ == "__main__":
    main()
