"""Services and cluster DNS on the real node: kube-proxy and CoreDNS as users meet them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Pod

from flotilla import __version__
from flotilla.core.kube import wait_until
from tests.conftest import TestCluster
from tests.e2e.test_real_node import ON_REAL_NODE, apply, kubectl, web_deployment

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BUSYBOX = "flotilla.local/busybox:latest"


def service(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
            **spec,
        },
    }


def wait_pods(kube: Client, namespace: str, labels: dict[str, str], count: int) -> list[Pod]:
    def ready() -> list[Pod] | None:
        pods = [
            p
            for p in kube.list(Pod, namespace=namespace, labels=labels)
            if p.status is not None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return pods if len(pods) >= count else None

    return wait_until(ready, timeout=120, what=f"{count} ready pods {labels} in {namespace}")


@pytest.fixture
def services(
    kube: Client, kubeconfig: Path, namespace: str, real_node: str, test_cluster: TestCluster
) -> list[str]:
    """web (2 replicas) behind a ClusterIP, a headless and a NodePort Service; a client pod."""
    note = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["services_note"]
    if note:  # another environment on this machine runs the one kube-proxy
        pytest.fail(f"the test environment has no Services: {note}", pytrace=False)
    apply(kubeconfig, namespace, web_deployment(2))
    apply(kubeconfig, namespace, service("web"))
    apply(kubeconfig, namespace, service("web-headless", clusterIP="None"))
    apply(kubeconfig, namespace, service("web-nodeport", type="NodePort"))
    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "labels": {"app": "c"}},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "c", "image": BUSYBOX, "command": ["busybox", "sleep", "3600"]}
                ],
            },
        },
    )
    wait_pods(kube, namespace, {"app": "c"}, 1)
    pods = wait_pods(kube, namespace, {"app": "web"}, 2)
    return sorted(p.status.podIP for p in pods if p.status and p.status.podIP)


def in_client(kubeconfig: Path, namespace: str, *command: str) -> str:
    return kubectl(kubeconfig, "-n", namespace, "exec", "client", "--", *command, timeout=60).stdout


def fetch(kubeconfig: Path, namespace: str, url: str) -> str:
    """GET from inside the client pod, retried while endpoints and rules settle.

    (No ``wget -T``: Debian's busybox 1.35 wget segfaults with it.)
    """

    def get() -> str | None:
        result = kubectl(
            kubeconfig,
            "-n",
            namespace,
            "exec",
            "client",
            "--",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            url,
            check=False,
            timeout=60,
        )
        return result.stdout if result.returncode == 0 else None

    return wait_until(get, timeout=60, interval=1, what=f"{url} from a pod")


def test_a_pod_reaches_a_service_by_its_full_dns_name(
    services: list[str], kubeconfig: Path, namespace: str
) -> None:
    body = fetch(kubeconfig, namespace, f"http://web.{namespace}.svc.cluster.local:8080/etc/")
    assert "debian_version" in body  # python's listing of the web pod's /etc


def test_a_pod_reaches_a_service_by_its_short_name(
    services: list[str], kubeconfig: Path, namespace: str
) -> None:
    resolv = in_client(kubeconfig, namespace, "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in resolv
    assert f"search {namespace}.svc.cluster.local" in resolv
    assert "debian_version" in fetch(kubeconfig, namespace, "http://web:8080/etc/")


def test_a_headless_service_resolves_to_the_pod_ips(
    services: list[str], kubeconfig: Path, namespace: str
) -> None:
    name = f"web-headless.{namespace}.svc.cluster.local"

    def addresses() -> list[str] | None:
        out = kubectl(
            kubeconfig,
            "-n",
            namespace,
            "exec",
            "client",
            "--",
            "busybox",
            "nslookup",
            name,
            check=False,
            timeout=60,
        ).stdout
        found = sorted(set(re.findall(r"Address: (10\.244\.\d+\.\d+)", out)))
        return found if found == services else None

    assert wait_until(addresses, timeout=60, interval=1, what=f"{name} -> {services}") == services


def test_a_node_port_answers_from_the_host(
    services: list[str], kube: Client, namespace: str, test_cluster: TestCluster
) -> None:
    from lightkube.resources.core_v1 import Service

    svc = kube.get(Service, "web-nodeport", namespace=namespace)
    assert svc.spec is not None and svc.spec.ports
    node_port = svc.spec.ports[0].nodePort
    node_ip = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["real_node_ip"]

    def answered() -> str | None:
        try:
            reply = httpx.get(f"http://{node_ip}:{node_port}/etc/", timeout=3)
        except httpx.TransportError:
            return None
        return reply.text if reply.status_code == 200 else None

    assert "debian_version" in wait_until(
        answered, timeout=60, interval=1, what=f"NodePort {node_ip}:{node_port}"
    )


def test_flotillas_own_image_runs_on_the_real_node(
    kube: Client, kubeconfig: Path, namespace: str, real_node: str
) -> None:
    apply(
        kubeconfig,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "flotilla"},
            "spec": {
                "nodeSelector": ON_REAL_NODE,
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "flotilla",
                        "image": f"flotilla.local/flotilla:{__version__}",
                        "imagePullPolicy": "Always",  # from the registry, by reference
                        "command": ["flotilla", "--version"],
                    }
                ],
            },
        },
    )

    def finished() -> str | None:
        pod = kube.get(Pod, "flotilla", namespace=namespace)
        phase = pod.status.phase if pod.status else None
        assert phase != "Failed", kubectl(
            kubeconfig, "-n", namespace, "logs", "flotilla", check=False
        ).stdout
        return phase if phase == "Succeeded" else None

    wait_until(finished, timeout=120, what="the flotilla pod to finish")
    logs = kubectl(kubeconfig, "-n", namespace, "logs", "flotilla").stdout
    assert logs.strip() == f"flotilla {__version__}"
