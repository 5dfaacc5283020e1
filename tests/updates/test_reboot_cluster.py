"""The reboot coordinator and node agents on the real control plane (kwok nodes and pods).

Five nodes all need a reboot, at most two at a time, a PodDisruptionBudget allows one disruption
of a three-replica Deployment: never more than two cordoned, the budget never broken, all five
rebooted once and uncordoned in the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client

from flotilla.core.kube import (
    apply_raw,
    client_from_kubeconfig,
    delete_raw,
    evict_pod,
    list_raw,
    patch_merge_raw,
    wait_until,
)
from flotilla.updates.reboots import planning as reboots
from flotilla.updates.reboots.coordinator import Coordinator, NodeAgent, NodeAgentSettings
from flotilla.updates.reboots.planning import CoordinatorConfig

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CHECK = "example.com/before-reboot-ok"


def _node(name: str, pool: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name,
                     "annotations": {"kwok.x-k8s.io/node": "fake",
                                     "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "type": "kwok", "flotilla.dev/test-pool": pool}},
        "status": {"capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                   "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}},
    }


@pytest.fixture
def pool(kube: Client, namespace: str) -> Iterator[list[str]]:
    names = [f"{namespace}-n{i}" for i in range(1, 6)]
    for n in names:
        apply_raw(kube, _node(n, namespace))
    try:
        yield names
    finally:
        for n in names:
            delete_raw(kube, "v1", "Node", n)


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return pod.get("status", {}).get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def test_five_nodes_two_at_a_time_with_a_pdb(
    kube: Client, kubeconfig: Path, namespace: str, pool: list[str], tmp_path: Path
) -> None:
    labels = {"app": "web"}
    apply_raw(kube, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "nodeSelector": {"flotilla.dev/test-pool": namespace},
                     "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "web", "image": "flotilla.local/busybox"}]}}},
    })
    apply_raw(kube, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": labels}},
    })

    def pods() -> list[dict[str, Any]]:
        return list_raw(kube, "v1", "Pod", namespace=namespace, labels=labels)

    wait_until(lambda: True if sum(map(_ready, pods())) == 3 else None, timeout=90,
               what="3 ready replicas")
    def allowed(n: int) -> None:
        wait_until(lambda: True if (list_raw(kube, "policy/v1", "PodDisruptionBudget",
                                             namespace=namespace)[0].get("status") or {})
                   .get("disruptionsAllowed") == n else None, timeout=60, what="PDB status")

    # The drain's eviction honours the budget: with no disruption allowed it is refused.
    pdb_patch = {"spec": {"minAvailable": 3}}
    patch_merge_raw(kube, "policy/v1", "PodDisruptionBudget", "web", pdb_patch,
                    namespace=namespace)
    allowed(0)
    victim = pods()[0]["metadata"]["name"]
    assert evict_pod(kube, victim, namespace) is False
    patch_merge_raw(kube, "policy/v1", "PodDisruptionBudget", "web",
                    {"spec": {"minAvailable": 2}}, namespace=namespace)
    allowed(1)

    stop = threading.Event()
    clients: list[Client] = []
    agents: list[NodeAgent] = []
    threads: list[threading.Thread] = []
    for name in pool:
        (tmp_path / f"{name}.boot").write_text("boot-0")
        (tmp_path / f"{name}.needed").write_text("3760.2.0")
        boot = tmp_path / f"{name}.boot"
        c = client_from_kubeconfig(kubeconfig)
        clients.append(c)
        agent = NodeAgent(c, NodeAgentSettings(
            node=name,
            # A harmless "reboot": a new boot id, and the update agent's marker is gone.
            reboot_command=["sh", "-c", f"echo boot-$$ > {boot}; rm -f {tmp_path}/{name}.needed"],
            reboot_needed_file=tmp_path / f"{name}.needed",
            boot_id_file=boot, drain_timeout=5, interval=0.3))
        agents.append(agent)
        threads.append(threading.Thread(target=agent.run, args=(stop,), daemon=True))
    cc = client_from_kubeconfig(kubeconfig)
    clients.append(cc)
    coord = Coordinator(cc, CoordinatorConfig(max_rebooting=2, before_annotations=(CHECK,)),
                        interval=0.3, selector={"flotilla.dev/test-pool": namespace})
    threads.append(threading.Thread(target=coord.run, args=(stop,), daemon=True))
    for t in threads:
        t.start()

    max_cordoned = 0
    min_ready = 3
    deadline = time.monotonic() + 240
    try:
        while True:
            nodes = list_raw(kube, "v1", "Node", labels={"flotilla.dev/test-pool": namespace})
            cordoned = sum(1 for n in nodes if (n.get("spec") or {}).get("unschedulable"))
            max_cordoned = max(max_cordoned, cordoned)
            min_ready = min(min_ready, sum(map(_ready, pods())))
            for n in nodes:  # the before-reboot check: pass it once a node is picked
                view = reboots.NodeView.from_node(n)
                if view.before and not view.checks_pass((CHECK,)):
                    patch_merge_raw(kube, "v1", "Node", view.name,
                                    {"metadata": {"annotations": {CHECK: "true"}}})
            done = all(a.reboots == 1 for a in agents) and cordoned == 0 and all(
                not reboots.NodeView.from_node(n).busy
                and not reboots.NodeView.from_node(n).reboot_needed for n in nodes)
            if done:
                break
            assert time.monotonic() < deadline, f"not done: {[a.reboots for a in agents]}"
            time.sleep(0.15)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for c in clients:
            c.close()
    assert max_cordoned <= 2
    assert max_cordoned >= 1
    assert min_ready >= 2, "the PodDisruptionBudget was violated"
    assert [a.reboots for a in agents] == [1] * 5
    print("evictions refused by the PDB:", sum(a.refused for a in agents))
    for n in list_raw(kube, "v1", "Node", labels={"flotilla.dev/test-pool": namespace}):
        ann = n["metadata"].get("annotations") or {}
        assert reboots.LAST_REBOOT in ann
        assert not any(k in ann for k in (reboots.REBOOT_OK, reboots.REBOOT_IN_PROGRESS,
                                          reboots.MADE_UNSCHEDULABLE, reboots.REBOOT_NEEDED))
    events = list_raw(kube, "v1", "Event", namespace="default")
    assert any(e.get("reason") == "Rebooting" and e["involvedObject"]["name"] in pool
               for e in events)
    assert sum(map(_ready, pods())) == 3


def test_the_commands_run_a_reboot_cycle(
    kube: Client, kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    """`flotilla updates reboot-coordinator` and `--node-agent` as processes, one node."""
    import subprocess
    import sys

    name = f"{namespace}-cli"
    apply_raw(kube, _node(name, namespace))
    boot, marker = tmp_path / "boot", tmp_path / "reboot-needed"
    boot.write_text("b1")
    marker.write_text("3760.2.0")
    base = [sys.executable, "-m", "flotilla", "updates", "reboot-coordinator",
            "--kubeconfig", str(kubeconfig), "--interval", "1s", "--log-level", "warning"]
    agent = subprocess.Popen([
        *base, "--node-agent", "--node", name, "--boot-id-file", str(boot),
        "--reboot-needed-file", str(marker), "--drain-timeout", "30s",
        "--reboot-command", f"sh -c 'echo b2 > {boot}; rm -f {marker}'"])
    coord = subprocess.Popen([*base, "--max-rebooting", "1",
                              "--selector", f"flotilla.dev/test-pool={namespace}"])
    try:
        def finished() -> bool | None:
            node = list_raw(kube, "v1", "Node", labels={"flotilla.dev/test-pool": namespace})[0]
            ann = node["metadata"].get("annotations") or {}
            done = reboots.LAST_REBOOT in ann and not (node.get("spec") or {}).get(
                "unschedulable") and reboots.REBOOT_OK not in ann
            return True if done else None

        wait_until(finished, timeout=120, interval=0.5, what="the node's reboot cycle")
        assert boot.read_text().strip() == "b2" and not marker.exists()
    finally:
        for p in (agent, coord):
            p.terminate()
        codes = [p.wait(30) for p in (agent, coord)]
        delete_raw(kube, "v1", "Node", name)
    assert codes == [0, 0]
