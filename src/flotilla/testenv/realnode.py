"""A real node: kubelet + containerd + CNI + a local registry, so pods really run.

Pure functions here write the configuration; ``cluster.py`` starts the processes. Facts that
shape the configuration (see docs/testenv.md for the evidence):

- kubelet 1.34 runs on cgroup v1 with a warning (``failCgroupV1: false`` keeps it explicit).
- containerd 1.6 has no RuntimeConfig RPC, so the kubelet's ``cgroupDriver: cgroupfs`` must match
  containerd's ``SystemdCgroup = false``.
- containerd 1.6.20 does not pin the sandbox image; ``imageGCHighThresholdPercent: 100`` keeps the
  kubelet from collecting it.
- The kubelet refuses a loopback node IP, so the node gets an address of its own on a port-less
  bridge (this kernel has no dummy links). Pods get addresses on a second bridge from host-local.
  Each real node takes a machine-wide numbered slot, so links, subnets and its cgroup root
  never collide with another node's, in this environment or another.
- Every kubelet has a cgroup root of its own (``cgroupRoot``): kubelets sharing ``/kubepods``
  delete each other's pod cgroups as orphans, killing the pods (exit 137, SandboxChanged).
- ``flotilla.local/*`` images resolve to the local registry through containerd's hosts.toml.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flotilla.testenv.components import CLUSTER_DNS_IP, CLUSTER_DOMAIN, Component
from flotilla.testenv.images import PAUSE_IMAGE

CNI_BIN_DIR = "/usr/lib/cni"
LOCAL_REGISTRY_HOST = "flotilla.local"
REAL_NODE_LABEL = "flotilla.dev/real-node"
MAX_SLOTS = 16


@dataclass(frozen=True)
class NodeNetwork:
    """The addresses and link names of the real node in one machine-wide slot."""

    slot: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.slot < MAX_SLOTS:
            raise ValueError(f"real-node slot must be 0..{MAX_SLOTS - 1}, not {self.slot}")

    @property
    def node_ip(self) -> str:
        """The kubelet's InternalIP: on a port-less bridge, never loopback."""
        return f"10.213.0.{self.slot + 1}"

    @property
    def node_link(self) -> str:
        return f"flotilla-node{self.slot}"

    @property
    def pod_bridge(self) -> str:
        return f"flotilla{self.slot}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroup root; containerd puts pods wherever the kubelet says."""
        return f"/flotilla-node{self.slot}"


@dataclass(frozen=True)
class RealNodeLayout:
    """Everything of one real node lives under ``<state>/nodes/<name>``."""

    state_dir: Path
    name: str

    @property
    def root(self) -> Path:
        return self.state_dir / "nodes" / self.name

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        """runc's state, private: the default /run/containerd/runc is shared machine-wide."""
        return self.containerd_dir / "runc"

    @property
    def hosts_dir(self) -> Path:
        return self.containerd_dir / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.kubelet_dir / "config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.kubelet_dir / "kubeconfig"

    @property
    def kubelet_root(self) -> Path:
        return self.kubelet_dir / "root"

    @property
    def pod_logs(self) -> Path:
        return self.kubelet_dir / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"


@dataclass(frozen=True)
class RegistryLayout:
    """One loopback registry per environment, shared by its real nodes."""

    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "registry"

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def storage(self) -> Path:
        return self.root / "storage"


def containerd_config(layout: RealNodeLayout) -> str:
    """containerd's own instance: private root, state and socket; CRI with our CNI and pause."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{layout.containerd_dir / "root"}"',
            f'state = "{layout.containerd_dir / "state"}"',
            "",
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "",
            f"[{cri}]",
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            '  stream_server_address = "127.0.0.1"',
            "  disable_apparmor = true",
            # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this sandbox does not grant
            # (runc dies with "can't get final child's PID"); clamp to our own score instead.
            "  restrict_oom_score_adj = true",
            f"  [{cri}.containerd]",
            '    snapshotter = "overlayfs"',
            '    default_runtime_name = "runc"',
            f"    [{cri}.containerd.runtimes.runc]",
            '      runtime_type = "io.containerd.runc.v2"',
            f"      [{cri}.containerd.runtimes.runc.options]",
            "        SystemdCgroup = false",
            f'        Root = "{layout.runc_root}"',
            f"  [{cri}.cni]",
            f'    bin_dir = "{CNI_BIN_DIR}"',
            f'    conf_dir = "{layout.cni_conf_dir}"',
            "    max_conf_num = 1",
            f"  [{cri}.registry]",
            f'    config_path = "{layout.hosts_dir}"',
            "",
        ]
    )


def registry_hosts(registry_port: int) -> dict[str, str]:
    """hosts.toml per registry name: flotilla.local and the loopback address both reach ours."""
    endpoint = f"http://127.0.0.1:{registry_port}"
    body = "\n".join(
        [
            f'server = "{endpoint}"',
            "",
            f'[host."{endpoint}"]',
            '  capabilities = ["pull", "resolve", "push"]',
            "  skip_verify = true",
            "",
        ]
    )
    return {
        LOCAL_REGISTRY_HOST: body,
        f"127.0.0.1:{registry_port}": body,
        f"localhost:{registry_port}": body,
    }


def cni_conflist(network: NodeNetwork) -> dict[str, Any]:
    """A bridge with host-local addresses and port mappings; no masquerading (no way out)."""
    subnet = ipaddress.ip_network(network.pod_cidr)
    gateway = str(subnet.network_address + 1)
    return {
        "cniVersion": "1.0.0",
        "name": "flotilla",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.pod_bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet), "gateway": gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def cni_conflist_text(layout: RealNodeLayout, network: NodeNetwork) -> str:
    conf = cni_conflist(network)
    conf["plugins"][0]["ipam"]["dataDir"] = str(layout.cni_ipam_dir)
    return json.dumps(conf, indent=2)


def kubelet_config(
    layout: RealNodeLayout,
    network: NodeNetwork,
    ca_file: Path,
    port: int,
    healthz_port: int,
    cluster_dns: bool = True,
) -> dict[str, Any]:
    """KubeletConfiguration for containerd 1.6 on cgroup v1 in a small VM.

    Without cluster DNS (another environment owns this machine's kube-proxy) pods use the
    host's resolv.conf instead of a kube-dns address nothing would answer.
    """
    endpoint = f"unix://{layout.containerd_socket}"
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": network.cgroup_root,
        "failCgroupV1": False,
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "failSwapOn": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "resolvConf": str(layout.resolv_conf),
        "podLogsDir": str(layout.pod_logs),
        "clusterDomain": CLUSTER_DOMAIN,
        "serializeImagePulls": False,
        "maxPods": 110,
        "registerNode": True,
    }
    if cluster_dns:
        config["clusterDNS"] = [CLUSTER_DNS_IP]
    return config


def kubelet_component(layout: RealNodeLayout, network: NodeNetwork, binary: Path) -> Component:
    return Component(
        f"kubelet-{layout.name}",
        (
            str(binary),
            f"--config={layout.kubelet_config}",
            f"--kubeconfig={layout.kubelet_kubeconfig}",
            f"--hostname-override={layout.name}",
            f"--node-ip={network.node_ip}",
            f"--root-dir={layout.kubelet_root}",
            f"--cert-dir={layout.kubelet_dir / 'pki'}",
            f"--node-labels={REAL_NODE_LABEL}=true",
            "--v=1",
        ),
    )


def containerd_component(layout: RealNodeLayout, binary: str) -> Component:
    return Component(
        f"containerd-{layout.name}",
        (
            binary,
            f"--config={layout.containerd_config}",
            "--log-level=warn",
        ),
    )


def registry_config(layout: RegistryLayout, port: int) -> str:
    return "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {layout.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{port}",
            "",
        ]
    )


def registry_component(layout: RegistryLayout, binary: str) -> Component:
    return Component("registry", (binary, "serve", str(layout.config)))
