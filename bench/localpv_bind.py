"""Bind 100 and 500 PVCs (each with a consumer pod) at once; time to all Bound, p50/p99 per claim.

Starts its own control plane (6 kwok nodes: 3 x 110 pods would not hold 500 consumers), the localpv
controller and one agent per node as processes, a hostpath class, then per round creates N claims
and N pods from 8 threads and records each claim's creation-to-Bound time from a watch.

    .venv/bin/python bench/localpv_bind.py [--counts 100 500] [--nodes 6] [--sequential 10]

Peer figures (no peer runs here: OpenEBS and local-path-provisioner need container images):
OpenEBS hostpath with helper pods, openebs/openebs#4050: 100 claims avg 95 s, 500 avg 591 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Namespace, PersistentVolumeClaim, Pod, ServiceAccount
from lightkube.resources.storage_v1 import CSIStorageCapacity, StorageClass

from flotilla.core.kube import client_from_kubeconfig, to_dict, wait_until, warm_up_decoders
from flotilla.localpv.cli import install_crds
from flotilla.localpv.manifests import capacity_name
from flotilla.localpv.resources import create_object
from flotilla.testenv.build import BuildSpec, is_built
from flotilla.testenv.cluster import ControlPlane

FLOTILLA = [sys.executable, "-m", "flotilla", "localpv"]
CLASS = "bench-local"


def _claim(i: int, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"c{i}", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": CLASS,
                     "resources": {"requests": {"storage": "10Mi"}}}}


def _pod(i: int, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": f"c{i}"}}],
                     "tolerations": [{"operator": "Exists"}]}}


def run_round(kube: Client, count: int) -> dict[str, float]:
    ns = f"bench-{count}-{int(time.time())}"
    create_object(kube, Namespace, {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
    wait_until(lambda: True if any(True for _ in kube.list(ServiceAccount, namespace=ns))
               else None, timeout=30, what="service account")
    created: dict[str, float] = {}
    bound: dict[str, float] = {}
    done = threading.Event()

    def watch() -> None:
        for _kind, obj in kube.watch(PersistentVolumeClaim, namespace=ns):
            d = to_dict(obj)
            name = d["metadata"]["name"]
            if d.get("status", {}).get("phase") == "Bound" and name not in bound:
                bound[name] = time.monotonic()
                if len(bound) == count:
                    done.set()
                    return

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.5)
    start = time.monotonic()

    def make(i: int) -> None:
        created[f"c{i}"] = time.monotonic()
        create_object(kube, PersistentVolumeClaim, _claim(i, ns))
        create_object(kube, Pod, _pod(i, ns))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(count)))
    submitted = time.monotonic() - start
    if not done.wait(600):
        raise SystemExit(f"only {len(bound)}/{count} bound after 600 s")
    total = max(bound.values()) - start
    latencies = sorted(bound[k] - created[k] for k in bound)
    kube.delete(Namespace, ns)
    return {"claims": count, "submit_s": submitted, "all_bound_s": total,
            "p50_s": statistics.median(latencies),
            "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def sequential(kube: Client, count: int) -> dict[str, float]:
    """One claim at a time: the latency of the path itself, without queueing behind others."""
    ns = f"bench-seq-{int(time.time())}"
    create_object(kube, Namespace, {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns}})
    wait_until(lambda: True if any(True for _ in kube.list(ServiceAccount, namespace=ns))
               else None, timeout=30, what="service account")
    latencies = []
    for i in range(count):
        start = time.monotonic()
        create_object(kube, PersistentVolumeClaim, _claim(i, ns))
        create_object(kube, Pod, _pod(i, ns))
        wait_until(lambda i=i: True if to_dict(kube.get(
            PersistentVolumeClaim, f"c{i}", namespace=ns)).get("status", {}).get(
            "phase") == "Bound" else None, timeout=60, interval=0.02, what=f"c{i} Bound")
        latencies.append(time.monotonic() - start)
    kube.delete(Namespace, ns)
    latencies.sort()
    return {"p50_s": statistics.median(latencies), "max_s": latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--sequential", type=int, default=10,
                        help="claims bound one at a time first (0: skip)")
    args = parser.parse_args()
    warm_up_decoders(Namespace, PersistentVolumeClaim, Pod, ServiceAccount, StorageClass,
                     CSIStorageCapacity)
    if not is_built(BuildSpec()):
        raise SystemExit("build the test binaries first: flotilla testenv build")
    work = Path(tempfile.mkdtemp(prefix="localpv-bench-"))
    plane = ControlPlane(work / "env")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        state = plane.up(nodes=args.nodes)
        kubeconfig = work / "env" / "kubeconfig"
        install_crds(kubeconfig)
        log = (work / "processes.log").open("ab")
        procs.append(subprocess.Popen([*FLOTILLA, "controller", "--kubeconfig", str(kubeconfig)],
                                      stdout=log, stderr=subprocess.STDOUT))
        for node in state.nodes:
            root = work / node
            root.mkdir()
            procs.append(subprocess.Popen(
                [*FLOTILLA, "agent", "--kubeconfig", str(kubeconfig), "--node", node,
                 "--hostpath-root", f"{root}=100Gi", "--heartbeat", "2"],
                stdout=log, stderr=subprocess.STDOUT))
        with client_from_kubeconfig(kubeconfig) as kube:
            create_object(kube, StorageClass, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": CLASS}, "provisioner": "localpv.flotilla.dev",
                "volumeBindingMode": "WaitForFirstConsumer"})

            def capacity_ready() -> bool | None:
                for node in state.nodes:
                    try:
                        obj = to_dict(kube.get(CSIStorageCapacity, capacity_name(CLASS, node),
                                               namespace="flotilla-localpv"))
                    except Exception:
                        return None
                    if int(str(obj.get("capacity") or 0)) == 0:
                        return None
                return True

            wait_until(capacity_ready, timeout=60, what="capacity published")
            if args.sequential:
                seq = sequential(kube, args.sequential)
                print(f"one at a time ({args.sequential} claims): p50 {seq['p50_s']:.2f} s, "
                      f"max {seq['max_s']:.2f} s", flush=True)
            print(f"{'claims':>7} {'submit s':>9} {'all Bound s':>12} {'p50 s':>7} {'p99 s':>7}")
            for count in args.counts:
                r = run_round(kube, count)
                print(f"{r['claims']:>7.0f} {r['submit_s']:>9.1f} {r['all_bound_s']:>12.1f} "
                      f"{r['p50_s']:>7.2f} {r['p99_s']:>7.2f}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        plane.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
