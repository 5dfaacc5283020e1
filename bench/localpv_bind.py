"""Bind 100 and 500 PVCs (each with a consumer pod) at once; time to all Bound, p50/p99 per claim.

Starts its own control plane (6 kwok nodes: 3 x 110 pods would not hold 500 consumers), the localpv
controller and one agent per node as processes, a hostpath class, then per round creates N claims
and N pods from 8 threads and records each claim's creation-to-Bound time from a watch.

    .venv/bin/python bench/localpv_bind.py [--counts 100 500] [--nodes 6] [--sequential 10]
        [--stages] [--controller-arg=--no-bind-claims ...]

Peer figures (no peer runs here: OpenEBS and local-path-provisioner need container images):
OpenEBS hostpath with helper pods, openebs/openebs#4050: 100 claims avg 95 s, 500 avg 591 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import (
    Namespace,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
    ServiceAccount,
)
from lightkube.resources.storage_v1 import CSIStorageCapacity, StorageClass

from flotilla.core.kube import client_from_kubeconfig, to_dict, wait_until, warm_up_decoders
from flotilla.localpv.cli import install_crds
from flotilla.localpv.manifests import capacity_name
from flotilla.localpv.model import SELECTED_NODE
from flotilla.localpv.policies import parse_quantity
from flotilla.localpv.resources import LocalVolume, create_object
from flotilla.testenv.build import BuildSpec, is_built
from flotilla.testenv.cluster import ControlPlane

FLOTILLA = [sys.executable, "-m", "flotilla", "localpv"]
CLASS = "bench-local"


def _claim(i: int, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"c{i}", "namespace": ns},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": CLASS,
            "resources": {"requests": {"storage": "10Mi"}},
        },
    }


def _pod(i: int, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": ns},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                }
            ],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": f"c{i}"}}],
            "tolerations": [{"operator": "Exists"}],
        },
    }


STAGES = ("created", "node selected", "LocalVolume", "Ready", "PV", "Bound")


def _process_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return cpu, rss


def _watch_stages(kube: Client, ns: str, stamps: dict[str, dict[str, float]]) -> None:
    """Record, per claim, when each stage was first seen on a watch."""

    def mark(stage: str, claim: str) -> None:
        stamps[stage].setdefault(claim, time.monotonic())

    def claims() -> None:
        for _kind, obj in kube.watch(PersistentVolumeClaim, namespace=ns):
            d = to_dict(obj)
            name = d["metadata"]["name"]
            if SELECTED_NODE in (d["metadata"].get("annotations") or {}):
                mark("node selected", name)

    def volumes() -> None:
        for _kind, obj in kube.watch(LocalVolume):
            d = to_dict(obj)
            claim = d.get("spec", {}).get("claim") or {}
            if claim.get("namespace") == ns:
                mark("LocalVolume", claim["name"])
                if (d.get("status") or {}).get("phase") == "Ready":
                    mark("Ready", claim["name"])

    def pvs() -> None:
        for _kind, obj in kube.watch(PersistentVolume):
            ref = to_dict(obj).get("spec", {}).get("claimRef") or {}
            if ref.get("namespace") == ns:
                mark("PV", ref["name"])

    def forever(watch: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while True:  # the server ends watches now and then; the first stamp per stage stays
                with contextlib.suppress(Exception):  # any transport error: watch again
                    watch()

        return run

    for target in (claims, volumes, pvs):
        threading.Thread(target=forever(target), daemon=True).start()


def run_round(kube: Client, count: int, controller_pid: int, stages: bool) -> dict[str, float]:
    ns = f"bench-{count}-{int(time.time())}"
    create_object(
        kube, Namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    wait_until(
        lambda: True if any(True for _ in kube.list(ServiceAccount, namespace=ns)) else None,
        timeout=30,
        what="service account",
    )
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
    stamps: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
    if stages:
        _watch_stages(kube, ns, stamps)
    time.sleep(0.5)
    cpu_before, _ = _process_usage(controller_pid)
    load = os.getloadavg()[0]
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
    cpu_after, rss = _process_usage(controller_pid)
    if stages:
        stamps["created"], stamps["Bound"] = created, bound
        print(f"  stages, {count} claims (seconds after the first create; p50 / last):")
        for stage in STAGES:
            seen = sorted(t - start for t in stamps[stage].values())
            if seen:
                print(
                    f"    {stage:<14} {statistics.median(seen):6.2f} / {seen[-1]:6.2f}"
                    f"  ({len(seen)} claims)"
                )
    kube.delete(Namespace, ns)
    return {
        "claims": count,
        "submit_s": submitted,
        "all_bound_s": total,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "load": load,
        "controller_cpu_s": cpu_after - cpu_before,
        "controller_rss_mb": rss / 2**20,
    }


def sequential(kube: Client, count: int) -> dict[str, float]:
    """One claim at a time: the latency of the path itself, without queueing behind others."""
    ns = f"bench-seq-{int(time.time())}"
    create_object(
        kube, Namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    wait_until(
        lambda: True if any(True for _ in kube.list(ServiceAccount, namespace=ns)) else None,
        timeout=30,
        what="service account",
    )
    latencies = []
    for i in range(count):
        start = time.monotonic()
        create_object(kube, PersistentVolumeClaim, _claim(i, ns))
        create_object(kube, Pod, _pod(i, ns))
        wait_until(
            lambda i=i: (
                True
                if to_dict(kube.get(PersistentVolumeClaim, f"c{i}", namespace=ns))
                .get("status", {})
                .get("phase")
                == "Bound"
                else None
            ),
            timeout=60,
            interval=0.02,
            what=f"c{i} Bound",
        )
        latencies.append(time.monotonic() - start)
    kube.delete(Namespace, ns)
    latencies.sort()
    return {"p50_s": statistics.median(latencies), "max_s": latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument(
        "--sequential", type=int, default=10, help="claims bound one at a time first (0: skip)"
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also print when each claim reached each stage (more watches)",
    )
    parser.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        help="extra flag for the controller (repeatable), to compare settings",
    )
    args = parser.parse_args()
    warm_up_decoders(
        Namespace, PersistentVolumeClaim, Pod, ServiceAccount, StorageClass, CSIStorageCapacity
    )
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
        procs.append(
            subprocess.Popen(
                [*FLOTILLA, "controller", "--kubeconfig", str(kubeconfig), *args.controller_arg],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        for node in state.nodes:
            root = work / node
            root.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        *FLOTILLA,
                        "agent",
                        "--kubeconfig",
                        str(kubeconfig),
                        "--node",
                        node,
                        "--hostpath-root",
                        f"{root}=100Gi",
                        "--heartbeat",
                        "2",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        with client_from_kubeconfig(kubeconfig) as kube:
            create_object(
                kube,
                StorageClass,
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": CLASS},
                    "provisioner": "localpv.flotilla.dev",
                    "volumeBindingMode": "WaitForFirstConsumer",
                },
            )

            def capacity_ready() -> bool | None:
                for node in state.nodes:
                    try:
                        obj = to_dict(
                            kube.get(
                                CSIStorageCapacity,
                                capacity_name(CLASS, node),
                                namespace="flotilla-localpv",
                            )
                        )
                    except Exception:
                        return None
                    if parse_quantity(str(obj.get("capacity") or 0)) == 0:
                        return None
                return True

            wait_until(capacity_ready, timeout=30 + 6 * len(state.nodes), what="capacity published")
            if args.sequential:
                seq = sequential(kube, args.sequential)
                print(
                    f"one at a time ({args.sequential} claims): p50 {seq['p50_s']:.2f} s, "
                    f"max {seq['max_s']:.2f} s",
                    flush=True,
                )
            print(
                f"{'claims':>7} {'submit s':>9} {'all Bound s':>12} {'p50 s':>7} {'p99 s':>7}"
                f" {'load':>5} {'ctl CPU s':>9} {'ctl RSS MiB':>11}"
            )
            for count in args.counts:
                r = run_round(kube, count, procs[0].pid, args.stages)
                print(
                    f"{r['claims']:>7.0f} {r['submit_s']:>9.1f} {r['all_bound_s']:>12.1f} "
                    f"{r['p50_s']:>7.2f} {r['p99_s']:>7.2f} {r['load']:>5.1f} "
                    f"{r['controller_cpu_s']:>9.1f} {r['controller_rss_mb']:>11.0f}",
                    flush=True,
                )
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
