"""Bring a real node up next to the kwok nodes, and take it down without leaving containers."""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod

from flotilla.core.kube import KubeNotFoundError, client_from_kubeconfig, kube_errors, wait_until
from flotilla.testenv.build import BuildSpec
from flotilla.testenv.components import Layout, Ports, kubeconfig_document
from flotilla.testenv.images import BUSYBOX_IMAGE, NODE_IMAGE, PYTHON_IMAGE, build_images
from flotilla.testenv.nodehost import (
    Ctr,
    claim_slot,
    ensure_cgroup_root,
    ensure_node_link,
    other_live_slots,
    release_slot,
    remove_cgroup_root,
    remove_links,
    require_tools,
    unmount_under,
)
from flotilla.testenv.pki import CertificateAuthority, node_identity
from flotilla.testenv.processes import (
    ProcessRecord,
    ensure_alive,
    is_running,
    start_process,
    stop_process,
)
from flotilla.testenv.realnode import (
    NodeNetwork,
    RealNodeLayout,
    RegistryLayout,
    cni_conflist_text,
    containerd_component,
    containerd_config,
    kubelet_component,
    kubelet_config,
    registry_component,
    registry_config,
    registry_hosts,
)
from flotilla.testenv.services_lifecycle import clean_service_rules

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 120.0
DRAIN_TIMEOUT_SECONDS = 60.0
# In the registry as well, so an in-cluster build (kaniko) finds the function base images.
PUSHED_IMAGES = (BUSYBOX_IMAGE, PYTHON_IMAGE, NODE_IMAGE)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(layout: Layout, tools: dict[str, str]) -> tuple[ProcessRecord, int]:
    registry = RegistryLayout(layout.state_dir)
    registry.storage.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    registry.config.write_text(registry_config(registry, port))
    component = registry_component(registry, tools["docker-registry"])
    record = start_process(component, layout.log(component.name), layout.state_dir)

    def answering() -> bool | None:
        ensure_alive(record)
        try:
            return True if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).is_success else None
        except httpx.TransportError:
            return None

    wait_until(answering, timeout=30, interval=0.1, what="the local registry")
    return record, port


def start_real_node(
    layout: Layout,
    spec: BuildSpec,
    ports: Ports,
    name: str,
    network: NodeNetwork,
    registry_port: int,
    tools: dict[str, str],
    started: Callable[[ProcessRecord], None],
    extra_images: dict[str, Path] | None = None,
    cluster_dns: bool = True,
) -> None:
    """containerd, images, then the kubelet, until the node is Ready.

    ``started`` is told of each process as soon as it runs, so a failure half-way still leaves
    a state file from which ``down`` can stop it.
    """
    node = RealNodeLayout(layout.state_dir, name)
    for directory in (
        node.containerd_dir,
        node.hosts_dir,
        node.cni_conf_dir,
        node.cni_ipam_dir,
        node.kubelet_root,
        node.pod_logs,
    ):
        directory.mkdir(parents=True, exist_ok=True)
    ensure_node_link(network)
    ensure_cgroup_root(network)
    node.containerd_config.write_text(containerd_config(node))
    for host, body in registry_hosts(registry_port).items():
        (node.hosts_dir / host).mkdir(exist_ok=True)
        (node.hosts_dir / host / "hosts.toml").write_text(body)
    (node.cni_conf_dir / "10-flotilla.conflist").write_text(cni_conflist_text(node, network))
    host_resolv = Path("/etc/resolv.conf")
    node.resolv_conf.write_text(host_resolv.read_text() if host_resolv.exists() else "")

    records: list[ProcessRecord] = []
    containerd = containerd_component(node, tools["containerd"])
    records.append(start_process(containerd, layout.log(containerd.name), layout.state_dir))
    started(records[-1])
    ctr = Ctr(node, tools["ctr"])

    def containerd_ready() -> bool | None:
        ensure_alive(records[0])
        if not node.containerd_socket.exists():
            return None
        return True if ctr.run("version", check=False).returncode == 0 else None

    wait_until(containerd_ready, timeout=30, interval=0.1, what="containerd")
    present = ctr.image_names()
    for reference, archive in {**build_images(), **(extra_images or {})}.items():
        if reference not in present:
            ctr.import_image(archive)
    for reference in (*PUSHED_IMAGES, *(extra_images or {})):
        ctr.push(reference)  # so pulls by reference (imagePullPolicy: Always) work too

    ca = CertificateAuthority.load(layout.pki)
    identity = node_identity(name)
    kubelet_pki = node.kubelet_dir / "pki"
    kubelet_pki.mkdir(exist_ok=True)
    ca.write_client(kubelet_pki, identity)
    document = kubeconfig_document(layout, ports, identity)
    document["users"][0]["user"] = {
        "client-certificate": str(kubelet_pki / f"{identity.file_stem}.crt"),
        "client-key": str(kubelet_pki / f"{identity.file_stem}.key"),
    }
    node.kubelet_kubeconfig.write_text(yaml.safe_dump(document))
    node.kubelet_config.write_text(
        yaml.safe_dump(
            kubelet_config(
                node, network, layout.pki / "ca.crt", _free_port(), _free_port(), cluster_dns
            )
        )
    )
    kubelet = kubelet_component(node, network, spec.binary("kubelet"))
    records.append(start_process(kubelet, layout.log(kubelet.name), layout.state_dir))
    started(records[-1])
    with client_from_kubeconfig(layout.kubeconfig) as client:
        wait_until(
            lambda: _node_ready(client, name, records),
            timeout=READY_TIMEOUT_SECONDS,
            what=f"real node {name} to be Ready (log: {records[-1].log})",
        )


def _node_ready(client: Client, name: str, records: list[ProcessRecord]) -> bool | None:
    for record in records:
        ensure_alive(record)
    try:
        with kube_errors(f"get node {name}"):
            node = client.get(Node, name)
    except KubeNotFoundError:
        return None
    conditions = (node.status.conditions if node.status else None) or []
    return True if any(c.type == "Ready" and c.status == "True" for c in conditions) else None


def drain_real_node(kubeconfig: Path, name: str) -> None:
    """Cordon, then delete the node's pods so the kubelet stops their containers properly.

    Cordoning first keeps controllers from placing replacements on the node while it drains.
    """
    with client_from_kubeconfig(kubeconfig) as client:
        with kube_errors(f"cordon {name}"):
            client.patch(Node, name, {"spec": {"unschedulable": True}})
        pods = list(client.list(Pod, namespace="*", fields={"spec.nodeName": name}))
        for pod in pods:
            if pod.metadata is None or pod.metadata.name is None:
                continue
            try:
                with kube_errors(f"delete pod {pod.metadata.name}"):
                    client.delete(
                        Pod, pod.metadata.name, namespace=pod.metadata.namespace, grace_period=1
                    )
            except KubeNotFoundError:
                pass

        def gone() -> bool | None:
            remaining = list(client.list(Pod, namespace="*", fields={"spec.nodeName": name}))
            return True if not remaining else None

        wait_until(gone, timeout=DRAIN_TIMEOUT_SECONDS, what=f"pods on {name} to stop")


def stop_real_nodes(
    layout: Layout,
    records: list[ProcessRecord],
    nodes: dict[str, NodeNetwork],
    api_running: bool,
    kube_proxy_binary: Path,
) -> list[str]:
    """Drain, stop kubelets, remove leftover containers, stop containerd and the registry.

    Then each node's links, cgroup root and slot go; kube-proxy's rules too unless another
    environment on this machine still runs real nodes (the chains are machine-wide).
    """
    stopped: list[str] = []
    if api_running and nodes:
        _cordon(layout.kubeconfig, list(nodes))  # so drained pods never land on a sibling
    for name in nodes:
        kubelet = next((r for r in records if r.name == f"kubelet-{name}"), None)
        if api_running and kubelet is not None and is_running(kubelet):
            try:
                drain_real_node(layout.kubeconfig, name)
            except Exception as exc:  # clean up below all the same
                logger.warning("draining %s failed: %s", name, exc)
        if kubelet is not None and stop_process(kubelet):
            stopped.append(kubelet.name)
        containerd = next((r for r in records if r.name == f"containerd-{name}"), None)
        node = RealNodeLayout(layout.state_dir, name)
        if containerd is not None and is_running(containerd):
            ctr_path = shutil.which("ctr") or "ctr"
            Ctr(node, ctr_path).remove_all_containers()
            stop_process(containerd)
            stopped.append(containerd.name)
        unmount_under(node.root)
        remove_links(nodes[name])
        remove_cgroup_root(nodes[name])
        release_slot(layout.state_dir, nodes[name])
    proxy = next((r for r in records if r.name == "kube-proxy"), None)
    if proxy is not None:
        if stop_process(proxy):
            stopped.append(proxy.name)
        if not other_live_slots(layout.state_dir):
            clean_service_rules(kube_proxy_binary)
    registry = next((r for r in records if r.name == "registry"), None)
    if registry is not None and stop_process(registry):
        stopped.append(registry.name)
    return stopped


def _cordon(kubeconfig: Path, names: list[str]) -> None:
    try:
        with client_from_kubeconfig(kubeconfig) as client:
            for name in names:
                with kube_errors(f"cordon {name}"):
                    client.patch(Node, name, {"spec": {"unschedulable": True}})
    except Exception as exc:  # draining below reports what matters
        logger.warning("cordoning %s failed: %s", names, exc)


def prepare_host(state_dir: Path, node: str) -> tuple[dict[str, str], NodeNetwork]:
    """Check the tools and take a free machine-wide slot for this real node."""
    tools = require_tools()
    return tools, claim_slot(state_dir, node)
