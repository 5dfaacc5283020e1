"""``flotilla localpv``: the controller, the node agent, and the manifests that deploy them.

Flags are read here and nowhere else; they become settings dataclasses passed down.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from flotilla.core.cli import (
    KUBECONFIG_OPTION,
    MANIFEST_FORMATS,
    duration_option,
    emit_documents,
    namespace_option,
    output_option,
    system_app,
)

if TYPE_CHECKING:  # imported where used, so `--help` loads no Kubernetes client
    from lightkube import Client

    from flotilla.localpv.backends import VolumeBackend

app = system_app("Dynamic local persistent volumes: controller, node agent, manifests.")

KUBECONFIG = KUBECONFIG_OPTION
HOSTPATH_ROOTS = typer.Option(
    [],
    "--hostpath-root",
    help="Allowed hostpath root, optionally with a budget: /srv/lpv=100Gi. Repeatable.",
)
BTRFS_ROOTS = typer.Option(
    [], "--btrfs-root", help="Allowed btrfs root (a btrfs mount or a directory on it). Repeatable."
)
DEVICE_FILTERS = typer.Option(
    [],
    "--device-filter",
    help="Glob of block devices to offer (e.g. /dev/disk/by-id/nvme-*). Repeatable.",
)
VOLUME_GROUPS = typer.Option(
    [], "--lvm-volume-group", help="Volume group the lvm backend may carve from. Repeatable."
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run_until_signalled(stop: threading.Event) -> None:
    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(0.5):
        pass


def _client(kubeconfig: Path | None) -> Client:
    from flotilla.core.kube import client_for

    return client_for(kubeconfig)


@app.command()
def controller(
    kubeconfig: Path | None = KUBECONFIG,
    namespace: str = namespace_option("flotilla-localpv", help="Namespace for capacity objects."),
    workers: int = typer.Option(64, min=1, help="Reconcile threads."),
    node_gone_grace: float = duration_option(
        "5m",
        "--node-gone-grace",
        help="Before a gone node's deleted volumes are released (data NOT deleted).",
    ),
    agent_timeout: float = duration_option(
        "30s", "--agent-timeout", help="Without heartbeat before a node's agent counts as down."
    ),
    leader_elect: bool = typer.Option(False, help="Take a Lease before acting (replicas > 1)."),
    bind_claims: bool = typer.Option(
        True,
        help="Complete claim binding ourselves rather than "
        "wait for kube-controller-manager's throttled binder.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the cluster-wide provisioner (one active instance per cluster)."""
    from flotilla.localpv.controller import Controller, ControllerSettings
    from flotilla.localpv.controller.leader import LeaderElector

    _setup_logging(verbose)
    client = _client(kubeconfig)
    settings = ControllerSettings(
        namespace=namespace,
        workers=workers,
        node_gone_grace=node_gone_grace,
        agent_timeout=agent_timeout,
        bind_claims=bind_claims,
    )
    stop = threading.Event()
    ctl = Controller(client, settings)
    elector = None
    if leader_elect:
        from lightkube.resources.coordination_v1 import Lease

        from flotilla.core.kube import warm_up_decoders

        warm_up_decoders(Lease)
        elector = LeaderElector(client, namespace=namespace, name="flotilla-localpv-controller")
        chosen = elector

        def lead() -> None:
            if chosen.acquire(stop):
                ctl.start()

        elector.on_lost = stop.set
        threading.Thread(target=lead, name="leader", daemon=True).start()
    else:
        ctl.start()
    _run_until_signalled(stop)
    ctl.stop()
    if elector is not None:
        elector.release()
    time.sleep(0.1)


@app.command()
def agent(
    kubeconfig: Path | None = KUBECONFIG,
    node: str = typer.Option(..., help="Name of the Node this agent serves."),
    hostpath_root: list[str] = HOSTPATH_ROOTS,
    btrfs_root: list[str] = BTRFS_ROOTS,
    device_filter: list[str] = DEVICE_FILTERS,
    lvm_volume_group: list[str] = VOLUME_GROUPS,
    device_mount_root: str = typer.Option(
        "/var/lib/flotilla-localpv/devices", help="Where formatted devices are mounted."
    ),
    heartbeat: float = duration_option("5s", "--heartbeat", help="Between LocalNode reports."),
    usage_interval: float = duration_option(
        "30s", "--usage-interval", help="Between usage measurements."
    ),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics on this port."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the node agent for NODE (a DaemonSet pod in production)."""
    from flotilla.localpv.backends import HostPathBackend, parse_root
    from flotilla.localpv.model import Backend
    from flotilla.localpv.node.agent import Agent, AgentSettings

    _setup_logging(verbose)
    backends: dict[Backend, VolumeBackend] = {}
    # A root or budget we refuse raises InvalidInput: flotilla.cli shows it and exits 2.
    if hostpath_root:
        backends[Backend.HOSTPATH] = HostPathBackend([parse_root(r) for r in hostpath_root])
    if btrfs_root:
        from flotilla.localpv.backends.btrfs import BtrfsBackend

        backends[Backend.BTRFS] = BtrfsBackend([parse_root(r) for r in btrfs_root])
    if lvm_volume_group:
        from flotilla.localpv.backends.lvm import LvmBackend

        backends[Backend.LVM] = LvmBackend(lvm_volume_group, mount_root=device_mount_root)
    if device_filter:
        from flotilla.localpv.backends.device import DeviceBackend

        backends[Backend.DEVICE] = DeviceBackend(device_filter, mount_root=device_mount_root)
    client = _client(kubeconfig)
    settings = AgentSettings(
        node=node, heartbeat=heartbeat, usage_interval=usage_interval, metrics_port=metrics_port
    )
    worker = Agent(client, settings, backends)
    worker.start()
    stop = threading.Event()
    _run_until_signalled(stop)
    worker.stop()


@app.command()
def manifests(
    image: str = typer.Option("ghcr.io/flotilla/flotilla:latest", help="Container image."),
    namespace: str = namespace_option("flotilla-localpv"),
    hostpath_root: str = typer.Option("/var/lib/flotilla-localpv/hostpath"),
    output: str = output_option(*MANIFEST_FORMATS),
) -> None:
    """Print deploy manifests: CRDs, RBAC, controller Deployment, agent DaemonSet, a class."""
    from flotilla.localpv.deploy import deploy_manifests

    docs = deploy_manifests(image=image, namespace=namespace, hostpath_root=hostpath_root)
    emit_documents(docs, output)


def install_crds(kubeconfig: Path | None, timeout: float = 60.0) -> None:
    """Apply our CRDs and wait until the API server serves them."""
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    from flotilla.core.kube import client_for, kube_errors, to_dict, wait_until
    from flotilla.localpv.manifests import crds as crd_documents

    with client_for(kubeconfig) as client:
        for crd in crd_documents():
            with kube_errors(f"apply CRD {crd['metadata']['name']}"):
                client.apply(
                    CustomResourceDefinition.from_dict(crd),  # type: ignore[call-overload]
                    field_manager="flotilla-localpv",
                    force=True,
                )

        def established() -> bool | None:
            for crd in crd_documents():
                got = to_dict(client.get(CustomResourceDefinition, crd["metadata"]["name"]))
                conditions = got.get("status", {}).get("conditions") or []
                if not any(
                    c["type"] == "Established" and c["status"] == "True" for c in conditions
                ):
                    return None
            return True

        wait_until(established, timeout=timeout, what="localpv CRDs established")


@app.command()
def crds(
    kubeconfig: Path | None = KUBECONFIG,
) -> None:
    """Install (or update) the LocalVolume, LocalNode and BlockDevice CRDs."""
    install_crds(kubeconfig)
    typer.echo("localpv CRDs installed")
