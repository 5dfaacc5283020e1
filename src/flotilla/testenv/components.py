"""What to run: the command line of each control-plane component, as pure data.

Nothing here starts a process; ``cluster.py`` does. Keeping the flags in one pure function
makes them easy to read, test and compare with upstream defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flotilla.testenv.build import BuildSpec, default_cache_root, kwok_stages_path
from flotilla.testenv.pki import ADMIN, CONTROLLER_MANAGER, SCHEDULER, ClientIdentity

SERVICE_CIDR = "10.96.0.0/16"
# The kube-dns Service's ClusterIP, which the kubelet writes into every pod's resolv.conf.
CLUSTER_DNS_IP = "10.96.0.10"
POD_CIDR = "10.244.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

# What the controller manager runs. '*' is upstream's default set; nothing we need is off by
# default (bootstrapsigner and tokencleaner are, and we do not need them).
CONTROLLERS = "*"


def default_state_dir() -> Path:
    """One default environment per machine, next to the binary cache."""
    return default_cache_root().parent / "testenv" / "default"


@dataclass(frozen=True)
class Ports:
    """Loopback ports; chosen free at ``up`` and recorded in the state file."""

    etcd_client: int
    etcd_peer: int
    apiserver: int


@dataclass(frozen=True)
class Layout:
    """Where one environment keeps everything: certificates, etcd data, logs, kubeconfigs."""

    state_dir: Path

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig handed to users and tests."""
        return self.state_dir / "kubeconfig"

    def component_kubeconfig(self, identity: ClientIdentity) -> Path:
        if identity == ADMIN:
            return self.kubeconfig
        return self.state_dir / f"{identity.file_stem}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclass(frozen=True)
class Component:
    """One process of the control plane."""

    name: str
    argv: tuple[str, ...]


def kubeconfig_document(layout: Layout, ports: Ports, identity: ClientIdentity) -> dict[str, Any]:
    """A kubeconfig with absolute paths to the certificates, so it works from any directory."""
    cluster = "flotilla-testenv"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": f"https://127.0.0.1:{ports.apiserver}",
                    "certificate-authority": str(layout.pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": identity.user,
                "user": {
                    "client-certificate": str(layout.pki / f"{identity.file_stem}.crt"),
                    "client-key": str(layout.pki / f"{identity.file_stem}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": cluster,
                "context": {"cluster": cluster, "user": identity.user, "namespace": "default"},
            }
        ],
        "current-context": cluster,
    }


def plan_components(
    spec: BuildSpec, layout: Layout, ports: Ports, advertise_address: str = "127.0.0.1"
) -> list[Component]:
    """The processes in start order: etcd, API server, controller manager, scheduler, kwok.

    ``advertise_address`` is what the ``kubernetes`` Service's endpoint points at, so pods reach
    the API server (in-cluster clients): a loopback address publishes no endpoint at all. When it
    is not loopback the API server listens on every address, loopback included, so the
    kubeconfigs keep 127.0.0.1.
    """
    loopback = advertise_address.startswith("127.")
    pki = layout.pki
    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    etcd = Component(
        "etcd",
        (
            str(spec.binary("etcd")),
            "--name=default",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            # A test cluster is thrown away; fsync only slows every write down.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ),
    )
    apiserver = Component(
        "kube-apiserver",
        (
            str(spec.binary("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={'127.0.0.1' if loopback else '0.0.0.0'}",
            f"--advertise-address={advertise_address}",
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            # Node names ("real-node") do not resolve; the kubelet's InternalIP does.
            "--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
        ),
    )
    controller_manager = Component(
        "kube-controller-manager",
        (
            str(spec.binary("kube-controller-manager")),
            f"--kubeconfig={layout.component_kubeconfig(CONTROLLER_MANAGER)}",
            f"--authentication-kubeconfig={layout.component_kubeconfig(CONTROLLER_MANAGER)}",
            f"--authorization-kubeconfig={layout.component_kubeconfig(CONTROLLER_MANAGER)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--controllers={CONTROLLERS}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Fast retries keep PV binding and namespace clean-up quick in tests.
            "--pvclaimbinder-sync-period=2s",
            "--profiling=false",
        ),
    )
    scheduler = Component(
        "kube-scheduler",
        (
            str(spec.binary("kube-scheduler")),
            f"--kubeconfig={layout.component_kubeconfig(SCHEDULER)}",
            f"--authentication-kubeconfig={layout.component_kubeconfig(SCHEDULER)}",
            f"--authorization-kubeconfig={layout.component_kubeconfig(SCHEDULER)}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--profiling=false",
        ),
    )
    kwok = Component(
        "kwok",
        (
            str(spec.binary("kwok")),
            f"--kubeconfig={layout.kubeconfig}",
            f"--config={kwok_stages_path(spec)}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            "--server-address=",
        ),
    )
    return [etcd, apiserver, controller_manager, scheduler, kwok]


def node_document(name: str) -> dict[str, Any]:
    """A kwok-managed node with the capacity of a mid-size machine and the usual labels."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "capacity": {
                "cpu": "16",
                "memory": "64Gi",
                "pods": "110",
                "ephemeral-storage": "200Gi",
            },
            "allocatable": {
                "cpu": "16",
                "memory": "64Gi",
                "pods": "110",
                "ephemeral-storage": "200Gi",
            },
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
                "osImage": "kwok",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]
