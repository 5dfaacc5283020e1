"""Start kube-proxy and deploy CoreDNS once an environment has a real node; clean up after."""

from __future__ import annotations

import logging
import socket
import subprocess
from pathlib import Path

import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.resources.apps_v1 import Deployment

from flotilla.core.kube import KubeConflictError, client_from_kubeconfig, kube_errors, wait_until
from flotilla.testenv.build import BuildSpec
from flotilla.testenv.components import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    Layout,
    Ports,
    kubeconfig_document,
)
from flotilla.testenv.errors import StartError
from flotilla.testenv.images import binary_image
from flotilla.testenv.pki import CertificateAuthority
from flotilla.testenv.processes import ProcessRecord, ensure_alive, start_process
from flotilla.testenv.services import (
    COREDNS,
    COREDNS_IMAGE_NAME,
    DNS_NAMESPACE,
    KUBE_PROXY,
    coredns_kubeconfig,
    coredns_objects,
    dns_answer_count,
    dns_query,
    kube_proxy_component,
    kube_proxy_config,
    kube_proxy_dir,
)

logger = logging.getLogger(__name__)

DNS_READY_TIMEOUT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def coredns_image(spec: BuildSpec) -> tuple[str, Path]:
    """The CoreDNS image reference and archive, built from the cached binary."""
    binary = spec.binary("coredns")
    if not binary.exists():
        raise StartError(f"{binary} is missing; run `flotilla testenv build`")
    archive = binary_image(f"{COREDNS_IMAGE_NAME}:{spec.coredns_version}", binary)
    return f"{COREDNS_IMAGE_NAME}:{spec.coredns_version}", archive


def enable_forwarding() -> None:
    """Service traffic is routed between bridges: the host must forward IPv4."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
    except OSError as exc:
        raise StartError(f"cannot enable IPv4 forwarding ({path}): {exc}") from exc


def start_kube_proxy(
    layout: Layout, spec: BuildSpec, ports: Ports, node_name: str
) -> ProcessRecord:
    """One kube-proxy for the environment: the real nodes share the host's network stack."""
    enable_forwarding()
    directory = kube_proxy_dir(layout)
    directory.mkdir(parents=True, exist_ok=True)
    CertificateAuthority.load(layout.pki).write_client(directory, KUBE_PROXY)
    document = kubeconfig_document(layout, ports, KUBE_PROXY)
    document["users"][0]["user"] = {
        "client-certificate": str(directory / f"{KUBE_PROXY.file_stem}.crt"),
        "client-key": str(directory / f"{KUBE_PROXY.file_stem}.key"),
    }
    (directory / "kubeconfig").write_text(yaml.safe_dump(document))
    (directory / "config.yaml").write_text(
        yaml.safe_dump(kube_proxy_config(layout, _free_port(), _free_port()))
    )
    component = kube_proxy_component(layout, spec.binary("kube-proxy"), node_name)
    return start_process(component, layout.log(component.name), layout.state_dir)


def deploy_coredns(layout: Layout, ports: Ports, image: str, kube_proxy: ProcessRecord) -> None:
    """Apply CoreDNS and ``kube-dns``, then wait until the Service answers a cluster name."""
    directory = kube_proxy_dir(layout).parent / "coredns"
    directory.mkdir(parents=True, exist_ok=True)
    CertificateAuthority.load(layout.pki).write_client(directory, COREDNS)
    secret = {
        "kubeconfig": coredns_kubeconfig(ports.apiserver),
        "ca.crt": (layout.pki / "ca.crt").read_text(),
        "client.crt": (directory / f"{COREDNS.file_stem}.crt").read_text(),
        "client.key": (directory / f"{COREDNS.file_stem}.key").read_text(),
    }
    with client_from_kubeconfig(layout.kubeconfig) as client:
        for document in coredns_objects(image, secret):
            resource = from_dict(document)
            try:
                with kube_errors(f"create {document['kind']} {document['metadata']['name']}"):
                    client.create(resource)
            except KubeConflictError:
                pass
        wait_until(
            lambda: _deployment_ready(client, kube_proxy),
            timeout=DNS_READY_TIMEOUT_SECONDS,
            what="CoreDNS to be Ready",
        )
    name = f"kubernetes.default.svc.{CLUSTER_DOMAIN}"
    wait_until(
        lambda: True if resolve_through_service(name) else None,
        timeout=DNS_READY_TIMEOUT_SECONDS,
        interval=0.5,
        what=f"kube-dns ({CLUSTER_DNS_IP}) to answer {name}",
    )


def _deployment_ready(client: Client, kube_proxy: ProcessRecord) -> bool | None:
    ensure_alive(kube_proxy)
    with kube_errors("get deployment coredns"):
        deployment = client.get(Deployment, "coredns", namespace=DNS_NAMESPACE)
    ready = deployment.status.readyReplicas if deployment.status else None
    return True if ready else None


def resolve_through_service(name: str, server: str = CLUSTER_DNS_IP) -> bool:
    """Ask kube-dns over UDP from the host: proves kube-proxy's DNAT and CoreDNS together."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendto(dns_query(name), (server, 53))
            reply, _ = sock.recvfrom(4096)
        except OSError:
            return False
    return dns_answer_count(reply) > 0


def clean_service_rules(binary: Path) -> None:
    """Remove kube-proxy's iptables chains; only when no other environment's proxy needs them."""
    if binary.exists():
        result = subprocess.run(
            [str(binary), "--cleanup"], capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0:
            logger.warning("kube-proxy --cleanup failed: %s", result.stderr.strip()[-500:])
