"""Start, inspect and stop a local control plane; processes are tracked by pid in a state file."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube import Client
from lightkube.generic_resource import create_global_resource
from lightkube.resources.core_v1 import Namespace, Node, ServiceAccount

from flotilla.core.kube import (
    KubeConflictError,
    KubeNotFoundError,
    client_from_kubeconfig,
    kube_errors,
    wait_until,
)
from flotilla.testenv.build import BuildSpec, is_built
from flotilla.testenv.components import (
    CLUSTER_DNS_IP,
    Component,
    Layout,
    Ports,
    kubeconfig_document,
    node_document,
    node_names,
    plan_components,
)
from flotilla.testenv.dockerd import DockerLayout, kill_containers, start_dockerd
from flotilla.testenv.errors import StartError, TestEnvError
from flotilla.testenv.flotilla_image import build_flotilla_image, flotilla_image_reference
from flotilla.testenv.knative_lifecycle import install_knative
from flotilla.testenv.nodehost import service_proxy_owner, unmount_under
from flotilla.testenv.pki import ADMIN, CLIENT_IDENTITIES, write_cluster_pki
from flotilla.testenv.processes import (
    ProcessRecord,
    ensure_alive,
    is_running,
    start_process,
    stop_process,
)
from flotilla.testenv.realnode import NodeNetwork
from flotilla.testenv.realnode_lifecycle import (
    prepare_host,
    start_real_node,
    start_registry,
    stop_real_nodes,
)
from flotilla.testenv.services_lifecycle import coredns_image, deploy_coredns, start_kube_proxy
from flotilla.testenv.tekton_lifecycle import install_tekton

READY_TIMEOUT_SECONDS = 90.0

# lightkube's typed Node drops unknown status fields on create; a generic resource keeps them.
_RawNode = create_global_resource("", "v1", "Node", "nodes")


@dataclass
class EnvironmentState:
    """What ``up`` wrote: enough for ``down`` and ``status`` in another process."""

    ports: Ports
    processes: list[ProcessRecord]
    nodes: list[str]
    kubernetes_version: str
    started_at: float
    ready_seconds: float
    api_ready_seconds: float = 0.0
    real_nodes: list[str] = field(default_factory=list)
    registry_port: int = 0
    real_node_ready_seconds: dict[str, float] = field(default_factory=dict)
    docker_host: str = ""
    real_node_slot: int = 0  # read from older state files: the slot of their one real node
    real_node_slots: dict[str, int] = field(default_factory=dict)
    services_note: str = ""  # why this environment's real nodes have no Services, if so
    tekton: bool = False  # Tekton Pipelines installed (``up --tekton``)
    knative: bool = False  # Knative Serving and Traefik installed (``up --knative``)

    def networks(self) -> dict[str, NodeNetwork]:
        """Each real node's slot: its links, subnets and cgroup root."""
        return {
            name: NodeNetwork(self.real_node_slots.get(name, self.real_node_slot))
            for name in self.real_nodes
        }

    def save(self, path: Path) -> None:
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, path: Path) -> EnvironmentState | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(
                ports=Ports(**data["ports"]),
                processes=[ProcessRecord(**p) for p in data["processes"]],
                nodes=list(data["nodes"]),
                kubernetes_version=str(data["kubernetes_version"]),
                started_at=float(data["started_at"]),
                ready_seconds=float(data["ready_seconds"]),
                api_ready_seconds=float(data.get("api_ready_seconds", 0.0)),
                real_nodes=list(data.get("real_nodes", [])),
                registry_port=int(data.get("registry_port", 0)),
                real_node_ready_seconds=dict(data.get("real_node_ready_seconds", {})),
                docker_host=str(data.get("docker_host", "")),
                real_node_slot=int(data.get("real_node_slot", 0)),
                real_node_slots={
                    str(k): int(v) for k, v in data.get("real_node_slots", {}).items()
                },
                services_note=str(data.get("services_note", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise TestEnvError(f"state file {path} is unreadable ({exc}); remove it") from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _choose_ports() -> Ports:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(_free_port())
    etcd_client, etcd_peer, apiserver = sorted(ports)
    return Ports(etcd_client, etcd_peer, apiserver)


def host_address() -> str:
    """This machine's address on its default route (no packet is sent), for the API server to
    advertise to pods; 127.0.0.1 when there is no route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: follows the default route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class ControlPlane:
    """One environment in one state directory."""

    def __init__(self, state_dir: Path, spec: BuildSpec | None = None) -> None:
        self.spec = spec or BuildSpec()
        self.layout = Layout(state_dir)

    # --- queries -------------------------------------------------------------------------
    def state(self) -> EnvironmentState | None:
        return EnvironmentState.load(self.layout.state_file)

    def running(self) -> bool:
        state = self.state()
        return state is not None and all(is_running(p) for p in state.processes)

    # --- up ------------------------------------------------------------------------------
    def up(
        self,
        nodes: int = 1,
        real_nodes: tuple[str, ...] = (),
        docker: bool = False,
        tekton: bool = False,
        knative: bool = False,
    ) -> EnvironmentState:
        """Start everything and wait until nodes are Ready; a running environment is kept.

        ``real_nodes`` names nodes run by real kubelets and containerds (with kube-proxy and
        CoreDNS); ``docker`` adds a private dockerd for image builds; ``tekton`` installs Tekton
        Pipelines and ``knative`` Knative Serving (each needs a real node). Each is added to a
        running environment that lacks it.
        """
        existing = self.state()
        if existing is not None and all(is_running(p) for p in existing.processes):
            for name in real_nodes:
                self.add_real_node(existing, name)
            if docker and not existing.docker_host:
                self.add_docker(existing)
            if tekton and not existing.tekton:
                self.add_tekton(existing)
            if knative and not existing.knative:
                self.add_knative(existing)
            return existing
        if existing is not None:
            self.down()  # a half-dead environment: stop what is left and start clean
        if not is_built(self.spec):
            raise StartError(
                f"Kubernetes {self.spec.kubernetes_version} binaries are not built in "
                f"{self.spec.bin_dir}; run `flotilla testenv build` first"
            )
        started = time.monotonic()
        self._prepare_directory()
        ports = _choose_ports()
        self._write_kubeconfigs(ports)
        state = EnvironmentState(
            ports=ports,
            processes=[],
            nodes=[],
            kubernetes_version=self.spec.kubernetes_version,
            started_at=time.time(),
            ready_seconds=0.0,
        )
        try:
            components = plan_components(self.spec, self.layout, ports, host_address())
            by_name = {c.name: c for c in components}
            state.processes.append(self._start(by_name["etcd"]))
            state.save(self.layout.state_file)
            self._wait_etcd(ports, state.processes[-1])
            state.processes.append(self._start(by_name["kube-apiserver"]))
            state.save(self.layout.state_file)
            self._wait_apiserver(ports, state.processes[-1])
            state.api_ready_seconds = time.monotonic() - started
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                state.processes.append(self._start(by_name[name]))
                state.save(self.layout.state_file)
            state.nodes = self._create_nodes(nodes)
            self._wait_ready(state)
        except BaseException:
            state.save(self.layout.state_file)
            self.down()
            raise
        state.ready_seconds = time.monotonic() - started
        state.save(self.layout.state_file)
        for name in real_nodes:
            self.add_real_node(state, name)
        if docker:
            self.add_docker(state)
        if tekton:
            self.add_tekton(state)
        if knative:
            self.add_knative(state)
        return state

    def add_tekton(self, state: EnvironmentState) -> None:
        """Tekton Pipelines built from its Go module (``testenv build --tekton``) on the real
        nodes; a failure leaves the cluster running, so its logs can be read."""
        install_tekton(self.layout, state.real_nodes)
        state.tekton = True
        state.save(self.layout.state_file)

    def add_knative(self, state: EnvironmentState) -> None:
        """Knative Serving and Traefik (``testenv build --knative``) on the real nodes."""
        install_knative(self.layout, state.real_nodes)
        state.knative = True
        state.save(self.layout.state_file)

    def add_docker(self, state: EnvironmentState) -> None:
        """A private dockerd with the base images loaded, for builds the real node can pull."""
        try:
            record, state.docker_host = start_dockerd(self.layout)
        except BaseException:
            state.save(self.layout.state_file)
            self.down()
            raise
        state.processes.append(record)
        state.save(self.layout.state_file)

    def add_real_node(self, state: EnvironmentState, name: str) -> None:
        """Start containerd and a kubelet for ``name`` (and, once per environment, the registry,
        kube-proxy and CoreDNS); wait until the node is Ready and cluster DNS answers."""
        if name in state.real_nodes:
            return
        if not is_built(self.spec):
            raise StartError(
                f"binaries are missing in {self.spec.bin_dir} (kube-proxy and "
                "coredns came later); run `flotilla testenv build`"
            )
        tools, network = prepare_host(self.layout.state_dir, name)
        state.real_node_slots[name] = network.slot
        started = time.monotonic()

        def record(process: ProcessRecord) -> None:
            state.processes.append(process)
            state.save(self.layout.state_file)

        state.real_nodes.append(name)
        try:
            dns_image, dns_archive = coredns_image(self.spec)
            images = {dns_image: dns_archive, flotilla_image_reference(): build_flotilla_image()}
            if not state.registry_port:
                registry, state.registry_port = start_registry(self.layout, tools)
                record(registry)
            has_proxy = any(p.name == "kube-proxy" for p in state.processes)
            other = None if has_proxy else service_proxy_owner(self.layout.state_dir)
            if other is not None and not state.services_note:
                state.services_note = (
                    f"no kube-proxy or CoreDNS: the environment in {other} "
                    "runs this machine's kube-proxy"
                )
            start_real_node(
                self.layout,
                self.spec,
                state.ports,
                name,
                network,
                state.registry_port,
                tools,
                record,
                images,
                cluster_dns=other is None and not state.services_note,
            )
            if not has_proxy and not state.services_note:
                proxy = start_kube_proxy(self.layout, self.spec, state.ports, name)
                record(proxy)
                deploy_coredns(self.layout, state.ports, dns_image, proxy)
        except BaseException:
            state.save(self.layout.state_file)
            self.down()
            raise
        state.real_node_ready_seconds[name] = time.monotonic() - started
        state.save(self.layout.state_file)

    def _prepare_directory(self) -> None:
        for sub in (self.layout.pki, self.layout.etcd_data, self.layout.logs):
            if sub.exists():
                shutil.rmtree(sub)
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        self.layout.logs.mkdir()
        self.layout.etcd_data.mkdir(mode=0o700)
        write_cluster_pki(self.layout.pki)

    def _write_kubeconfigs(self, ports: Ports) -> None:
        for identity in CLIENT_IDENTITIES:
            path = self.layout.component_kubeconfig(identity)
            path.write_text(yaml.safe_dump(kubeconfig_document(self.layout, ports, identity)))
            path.chmod(0o600)

    def _start(self, component: Component) -> ProcessRecord:
        return start_process(component, self.layout.log(component.name), self.layout.state_dir)

    def _wait_etcd(self, ports: Ports, record: ProcessRecord) -> None:
        def healthy() -> bool | None:
            ensure_alive(record)
            try:
                reply = httpx.get(f"http://127.0.0.1:{ports.etcd_client}/health", timeout=2)
                return True if reply.status_code == 200 and "true" in reply.text else None
            except httpx.TransportError:
                return None

        wait_until(healthy, timeout=READY_TIMEOUT_SECONDS, interval=0.1, what="etcd /health")

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        ctx.load_cert_chain(
            str(self.layout.pki / f"{ADMIN.file_stem}.crt"),
            str(self.layout.pki / f"{ADMIN.file_stem}.key"),
        )
        return ctx

    def _wait_apiserver(self, ports: Ports, record: ProcessRecord) -> None:
        ctx = self._tls_context()

        def ready() -> bool | None:
            ensure_alive(record)
            try:
                reply = httpx.get(
                    f"https://127.0.0.1:{ports.apiserver}/readyz", verify=ctx, timeout=2
                )
                return True if reply.status_code == 200 else None
            except httpx.TransportError:
                return None

        wait_until(
            ready, timeout=READY_TIMEOUT_SECONDS, interval=0.1, what="kube-apiserver /readyz"
        )

    def _create_nodes(self, count: int) -> list[str]:
        names = node_names(count)
        with client_from_kubeconfig(self.layout.kubeconfig) as client:
            for name in names:
                try:
                    with kube_errors(f"create node {name}"):
                        client.create(_RawNode.from_dict(node_document(name)))
                except KubeConflictError:
                    pass
        return names

    def _wait_ready(self, state: EnvironmentState) -> None:
        with client_from_kubeconfig(self.layout.kubeconfig) as client:
            self._wait_ready_with(client, state)

    def _wait_ready_with(self, client: Client, state: EnvironmentState) -> None:

        def nodes_ready() -> bool | None:
            for record in state.processes:
                ensure_alive(record)
            with kube_errors("list nodes"):
                ready = {
                    n.metadata.name
                    for n in client.list(Node)
                    if n.metadata is not None
                    and n.status is not None
                    and any(
                        c.type == "Ready" and c.status == "True"
                        for c in (n.status.conditions or [])
                    )
                }
            return True if set(state.nodes) <= ready else None

        def default_service_account() -> bool | None:
            try:
                with kube_errors("get default service account"):
                    client.get(ServiceAccount, "default", namespace="default")
                    client.get(Namespace, "kube-system")
                return True
            except KubeNotFoundError:
                return None

        wait_until(nodes_ready, timeout=READY_TIMEOUT_SECONDS, what="nodes to be Ready")
        wait_until(
            default_service_account,
            timeout=READY_TIMEOUT_SECONDS,
            what="the default service account (controller manager)",
        )

    # --- down ----------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Stop the processes this environment started, newest first; returns their names.

        One at a time: the API server shuts down in about a second while etcd is up, but hangs
        in its drain when etcd goes away underneath it.
        """
        state = self.state()
        if state is None:
            return []
        apiserver = next((r for r in state.processes if r.name == "kube-apiserver"), None)
        stopped = stop_real_nodes(
            self.layout,
            state.processes,
            state.networks(),
            api_running=apiserver is not None and is_running(apiserver),
            kube_proxy_binary=self.spec.binary("kube-proxy"),
        )
        dockerd = next((r for r in state.processes if r.name == "dockerd"), None)
        if dockerd is not None and is_running(dockerd):
            kill_containers(DockerLayout(self.layout.state_dir))
        stopped += [r.name for r in reversed(state.processes) if stop_process(r)]
        # dockerd leaves its netns bind mount behind; nothing may stay mounted in the state dir.
        unmount_under(self.layout.state_dir)
        self.layout.state_file.unlink(missing_ok=True)
        return stopped

    # --- status --------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = self.state()
        if state is None:
            return {"running": False, "state_dir": str(self.layout.state_dir)}
        networks = state.networks()
        first = networks[state.real_nodes[0]] if state.real_nodes else None
        return {
            "running": all(is_running(p) for p in state.processes),
            "state_dir": str(self.layout.state_dir),
            "kubeconfig": str(self.layout.kubeconfig),
            "kubernetes_version": state.kubernetes_version,
            "api": f"https://127.0.0.1:{state.ports.apiserver}",
            "ready_seconds": round(state.ready_seconds, 2),
            "api_ready_seconds": round(state.api_ready_seconds, 2),
            "nodes": state.nodes,
            "real_nodes": state.real_nodes,
            "real_node_ready_seconds": {
                k: round(v, 2) for k, v in state.real_node_ready_seconds.items()
            },
            "registry": f"127.0.0.1:{state.registry_port}" if state.registry_port else None,
            "docker_host": state.docker_host or None,
            "real_node_ip": first.node_ip if first else None,
            "real_node_pod_cidr": first.pod_cidr if first else None,
            "real_node_ips": {name: n.node_ip for name, n in networks.items()},
            "real_node_cgroup_roots": {name: n.cgroup_root for name, n in networks.items()},
            "cluster_dns": CLUSTER_DNS_IP if state.real_nodes and not state.services_note else None,
            "services_note": state.services_note or None,
            "processes": [
                {"name": p.name, "pid": p.pid, "running": is_running(p), "log": p.log}
                for p in state.processes
            ],
        }
