"""Several real nodes: in one environment drains really move pods; across environments on one
machine, real nodes never touch each other's pods (cgroup roots, links, runc state per node)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from flotilla.core.kube import client_from_kubeconfig, wait_until
from tests.conftest import FLOTILLA, TestCluster
from tests.e2e.test_real_node import ON_REAL_NODE, apply, kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SLEEPER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper"},
    "spec": {
        "nodeSelector": ON_REAL_NODE,
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "s",
                "image": "flotilla.local/busybox:latest",
                "command": ["busybox", "sleep", "3600"],
            }
        ],
    },
}


def short_dir(name: str) -> Path:
    """containerd's sockets live in the state dir, and unix socket paths stop at 104 bytes."""
    return Path(tempfile.mkdtemp(prefix=f"fl-{name}-"))


@contextmanager
def environment(state_dir: Path, *up_args: str) -> Iterator[Path]:
    """Another environment with real nodes, as a developer's beside the suite; always downed."""

    def flotilla(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLOTILLA, "testenv", *args, "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=600,
        )

    try:
        up = flotilla("up", "--nodes", "0", *up_args)
        assert up.returncode == 0, up.stderr
        yield Path(up.stdout.strip().splitlines()[-1])
    finally:
        flotilla("down")
        shutil.rmtree(state_dir, ignore_errors=True)


def identity(kube: Client, namespace: str, name: str = "sleeper") -> tuple[str, str, int] | None:
    """(pod uid, container id, restarts) once Running; any change means the pod was disturbed."""
    pod = kube.get(Pod, name, namespace=namespace)
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    if not statuses or statuses[0].state is None or statuses[0].state.running is None:
        return None
    assert pod.metadata is not None and pod.metadata.uid is not None
    return pod.metadata.uid, statuses[0].containerID or "", statuses[0].restartCount


def start_sleeper(kube: Client, kubeconfig: Path, namespace: str) -> tuple[str, str, int]:
    apply(kubeconfig, namespace, SLEEPER)
    return wait_until(lambda: identity(kube, namespace), timeout=120, what="sleeper running")


def test_pods_stay_up_while_other_environments_start_and_stop(
    kube: Client,
    kubeconfig: Path,
    namespace: str,
    real_node: str,
    test_cluster: TestCluster,
) -> None:
    ours = start_sleeper(kube, kubeconfig, namespace)
    b_dir = short_dir("b")
    with environment(b_dir, "--real-node") as b_config, client_from_kubeconfig(b_config) as b_kube:
        kubectl(b_config, "create", "namespace", "iso")
        wait_until(
            lambda: (
                True
                if kubectl(b_config, "-n", "iso", "get", "sa", "default", check=False).returncode
                == 0
                else None
            ),
            timeout=60,
            what="default service account in iso",
        )
        theirs = start_sleeper(b_kube, b_config, "iso")
        with environment(short_dir("c"), "--real-node"):
            assert identity(kube, namespace) == ours
            assert identity(b_kube, "iso") == theirs
        # The third environment stopped: its drain and clean-up touched only its own node.
        assert identity(kube, namespace) == ours
        assert identity(b_kube, "iso") == theirs
        status = json.loads(
            subprocess.run(
                [*FLOTILLA, "testenv", "status", "-o", "json", "--state-dir", str(b_dir)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        session = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)
        assert not set(status["real_node_cgroup_roots"].values()) & set(
            session["real_node_cgroup_roots"].values()
        )
        assert status["services_note"]  # the session's kube-proxy serves this machine
    assert identity(kube, namespace) == ours  # and after the second one went too


def test_a_drain_moves_pods_to_the_other_real_node() -> None:
    two_dir = short_dir("two")
    with (
        environment(two_dir, "--real-nodes", "2") as config,
        client_from_kubeconfig(config) as kube,
    ):
        status = json.loads(
            subprocess.run(
                [*FLOTILLA, "testenv", "status", "-o", "json", "--state-dir", str(two_dir)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert status["real_nodes"] == ["real-node", "real-node-2"]
        assert len(set(status["real_node_ips"].values())) == 2
        assert len(set(status["real_node_cgroup_roots"].values())) == 2
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sleepers"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "sleepers"}},
                "template": {
                    "metadata": {"labels": {"app": "sleepers"}},
                    "spec": {
                        **SLEEPER["spec"],  # type: ignore[dict-item]
                        "nodeSelector": ON_REAL_NODE,
                    },
                },
            },
        }
        kubectl(config, "cordon", "real-node-2")  # both replicas start on real-node
        apply(config, "default", deployment)
        assert wait_until(
            lambda: nodes_of(kube) if nodes_of(kube) == ["real-node"] * 2 else None,
            timeout=120,
            what="two sleepers on real-node",
        )
        kubectl(config, "uncordon", "real-node-2")
        kubectl(
            config,
            "drain",
            "real-node",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
            timeout=180,
        )
        moved = wait_until(
            lambda: nodes_of(kube) if nodes_of(kube) == ["real-node-2"] * 2 else None,
            timeout=120,
            what="both sleepers running on real-node-2",
        )
        assert moved == ["real-node-2", "real-node-2"]


def nodes_of(kube: Client) -> list[str]:
    """Nodes of the running sleepers (of the deployment), sorted."""
    return sorted(
        p.spec.nodeName or ""
        for p in kube.list(Pod, namespace="default", labels={"app": "sleepers"})
        if p.spec is not None
        and p.status is not None
        and p.status.phase == "Running"
        and p.metadata is not None
        and p.metadata.deletionTimestamp is None
    )
