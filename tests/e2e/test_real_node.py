"""On the real node pods really run: images, probes, logs, exec, port-forward, volumes, cleanup."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Node, Pod

from flotilla.core.kube import wait_until
from flotilla.testenv.build import BuildSpec
from flotilla.testenv.realnode import REAL_NODE_LABEL, RealNodeLayout
from tests.conftest import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KUBECTL = str(BuildSpec().binary("kubectl"))
ON_REAL_NODE = {REAL_NODE_LABEL: "true"}


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def apply(kubeconfig: Path, namespace: str, document: dict[str, object]) -> None:
    subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "-n", namespace, "apply", "-f", "-"],
        input=yaml.safe_dump(document),
        text=True,
        check=True,
        capture_output=True,
    )


def web_deployment(replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": ON_REAL_NODE,
                    "containers": [
                        {
                            "name": "web",
                            "image": "flotilla.local/python:3.11",
                            "command": ["python3", "-u", "-m", "http.server", "8080"],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": 8080},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def running_tasks(cluster: TestCluster, node: str) -> set[str]:
    layout = RealNodeLayout(cluster.state_dir, node)
    out = subprocess.run(
        ["ctr", "--address", str(layout.containerd_socket), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        line.split()[0]
        for line in out.stdout.splitlines()[1:]
        if line.split() and line.split()[-1] == "RUNNING"
    }


@pytest.fixture
def web(kube: Client, kubeconfig: Path, namespace: str, real_node: str) -> list[Pod]:
    apply(kubeconfig, namespace, web_deployment(2))

    def available() -> list[Pod] | None:
        deployment = kube.get(Deployment, "web", namespace=namespace)
        if deployment.status is None or (deployment.status.availableReplicas or 0) < 2:
            return None
        return list(kube.list(Pod, namespace=namespace, labels={"app": "web"}))

    return wait_until(available, timeout=120, what="2 replicas of web to be available")


def test_the_real_node_reports_a_real_runtime(kube: Client, real_node: str) -> None:
    node = kube.get(Node, real_node)
    assert node.status is not None
    assert node.status.nodeInfo is not None
    assert node.status.nodeInfo.containerRuntimeVersion.startswith("containerd://")
    assert node.status.nodeInfo.kubeletVersion == "v1.34.10"
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_a_deployment_of_two_replicas_becomes_ready(
    web: list[Pod], real_node: str, test_cluster: TestCluster
) -> None:
    status = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)
    pod_subnet = ipaddress.ip_network(status["real_node_pod_cidr"])
    assert len(web) == 2
    for pod in web:
        assert pod.spec is not None
        assert pod.spec.nodeName == real_node
        assert pod.status is not None
        assert pod.status.podIP is not None
        assert ipaddress.ip_address(pod.status.podIP) in pod_subnet


def test_logs_exec_and_port_forward(
    web: list[Pod], kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    name = web[0].metadata.name if web[0].metadata else ""
    assert name
    # The readiness probe's requests are in the server's log.
    logs = kubectl(kubeconfig, "-n", namespace, "logs", name).stdout
    assert '"GET / HTTP/1.1" 200' in logs
    marker = uuid.uuid4().hex
    out = kubectl(
        kubeconfig,
        "-n",
        namespace,
        "exec",
        name,
        "--",
        "sh",
        "-c",
        f"echo {marker} > /tmp/m && cat /tmp/m && hostname",
    ).stdout.split()
    assert out == [marker, name]

    # python's http.server lists the container's /etc, so we reached the pod, not the host.
    listing = port_forward_get(kubeconfig, namespace, name, 8080, "/etc/", tmp_path)
    assert "debian_version" in listing


def port_forward_get(
    kubeconfig: Path, namespace: str, pod: str, port: int, path: str, workdir: Path
) -> str:
    """GET ``path`` through `kubectl port-forward`, waiting until it says it is forwarding."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
    out, err = workdir / "pf.out", workdir / "pf.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        forward = subprocess.Popen(
            [
                KUBECTL,
                "--kubeconfig",
                str(kubeconfig),
                "-n",
                namespace,
                "port-forward",
                pod,
                f"{local}:{port}",
            ],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until(
            lambda: True if "Forwarding from" in out.read_text() else None,
            timeout=60,
            what=f"port-forward to start ({err.read_text()!r})",
        )
        reply = httpx.get(f"http://127.0.0.1:{local}{path}", timeout=30)
        assert reply.status_code == 200, err.read_text()
        return reply.text
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_host_path_volume_writes_land_on_the_host(
    kube: Client, kubeconfig: Path, namespace: str, real_node: str, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "writer"},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "writer",
                        "image": "flotilla.local/busybox:latest",
                        "command": ["sh", "-c", f"echo {marker} > /out/result.txt"],
                        "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                    }
                ],
                "volumes": [
                    {"name": "out", "hostPath": {"path": str(host_dir), "type": "Directory"}}
                ],
            },
        },
    )

    def finished() -> str | None:
        pod = kube.get(Pod, "writer", namespace=namespace)
        phase = pod.status.phase if pod.status else None
        return phase if phase in {"Succeeded", "Failed"} else None

    assert wait_until(finished, timeout=90, what="the writer pod to finish") == "Succeeded"
    assert (host_dir / "result.txt").read_text().strip() == marker


def test_deleting_a_pod_stops_its_container(
    kube: Client, kubeconfig: Path, namespace: str, real_node: str, test_cluster: TestCluster
) -> None:
    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "sleeper",
                        "image": "flotilla.local/busybox:latest",
                        "command": ["sleep", "3600"],
                    }
                ],
            },
        },
    )
    kubectl(
        kubeconfig, "-n", namespace, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s"
    )
    pod = kube.get(Pod, "sleeper", namespace=namespace)
    assert pod.status is not None
    assert pod.status.containerStatuses
    container_id = pod.status.containerStatuses[0].containerID or ""
    assert container_id.startswith("containerd://")
    task = container_id.removeprefix("containerd://")
    assert task in running_tasks(test_cluster, real_node)
    kube.delete(Pod, "sleeper", namespace=namespace)
    wait_until(
        lambda: True if task not in running_tasks(test_cluster, real_node) else None,
        timeout=60,
        what="the pod's container to stop",
    )


def test_images_pull_by_reference_from_the_local_registry(
    kube: Client, kubeconfig: Path, namespace: str, real_node: str
) -> None:
    """imagePullPolicy Always makes containerd resolve flotilla.local through the registry."""
    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "puller"},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "puller",
                        "image": "flotilla.local/busybox:latest",
                        "imagePullPolicy": "Always",
                        "command": ["true"],
                    }
                ],
            },
        },
    )
    started = time.monotonic()

    def done() -> str | None:
        pod = kube.get(Pod, "puller", namespace=namespace)
        phase = pod.status.phase if pod.status else None
        return phase if phase in {"Succeeded", "Failed"} else None

    assert wait_until(done, timeout=90, what="the puller pod") == "Succeeded"
    assert time.monotonic() - started < 90
    events = kubectl(kubeconfig, "-n", namespace, "get", "events", "-o", "yaml").stdout
    assert "Successfully pulled image" in events
