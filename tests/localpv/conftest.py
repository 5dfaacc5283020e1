"""Fixtures for the localpv cluster tests: one provisioner stack per session.

node-1 has two hostpath roots and a btrfs filesystem on a loop device, node-2 one roomy root,
node-3 one root with a 200Mi budget (the "full" node the scheduler must skip) and two loop
devices (64 and 48 MiB) for the device backend.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.storage_v1 import CSIStorageCapacity, StorageClass

from flotilla.core.kube import to_dict
from flotilla.localpv.cli import install_crds
from flotilla.localpv.manifests import capacity_name
from flotilla.localpv.policies import parse_quantity
from tests.localpv.kit import (
    Stack,
    btrfs_mount,
    create,
    delete,
    loop_device,
    storage_class,
    wait_for,
)

CONTROLLER_NAMESPACE = "flotilla-localpv"


@pytest.fixture(scope="session")
def localpv_stack(kubeconfig: Path) -> Iterator[Stack]:
    # Not pytest's tmp_path: concurrent pytest sessions on this machine prune each other's
    # numbered temp directories, and the agents' roots must outlive the whole session.
    work = Path(tempfile.mkdtemp(prefix="flotilla-localpv-"))
    roots = {n: work / n / "hostpath" for n in ("node-1", "node-2", "node-3")}
    roots["node-1b"] = work / "node-1" / "hostpath-b"
    for root in roots.values():
        root.mkdir(parents=True)
    install_crds(kubeconfig)
    with (
        btrfs_mount(work / "btrfs.img", work / "node-1" / "btrfs") as btrfs,
        loop_device(work / "disk-a.img", 64) as disk_a,
        loop_device(work / "disk-b.img", 48) as disk_b,
    ):
        stack = Stack(kubeconfig, work, roots, btrfs)
        stack.devices = [disk_a, disk_b]
        stack.controller.start()
        stack.start_agent(
            "node-1",
            "--hostpath-root",
            f"{roots['node-1']}=10Gi",
            "--hostpath-root",
            f"{roots['node-1b']}=5Gi",
            "--btrfs-root",
            str(btrfs),
        )
        stack.start_agent("node-2", "--hostpath-root", f"{roots['node-2']}=10Gi")
        stack.start_agent(
            "node-3",
            "--hostpath-root",
            f"{roots['node-3']}=200Mi",
            "--device-filter",
            disk_a,
            "--device-filter",
            disk_b,
            "--device-mount-root",
            str(work / "node-3" / "devices"),
        )
        try:
            yield stack
        finally:
            stack.stop()
            _unmount_under(work / "node-3" / "devices")
    shutil.rmtree(work, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    """Formatted devices a failed test left mounted would keep their loop devices busy."""
    with open("/proc/self/mounts") as mounts:
        targets = [
            line.split()[1] for line in mounts if line.split()[1].startswith(str(directory) + "/")
        ]
    for target in targets:
        subprocess.run(["umount", target], check=False, capture_output=True)


@pytest.fixture
def hostpath_class(kube: Client, localpv_stack: Stack) -> Iterator[str]:
    """A fresh WaitForFirstConsumer hostpath class whose capacity objects are published."""
    name = f"lpv-{uuid.uuid4().hex[:8]}"
    create(kube, StorageClass, storage_class(name, uid="1234", gid="2345", mode="0750"))
    wait_capacity(kube, name, localpv_stack)
    yield name
    delete(kube, StorageClass, name)


def wait_capacity(
    kube: Client,
    sc: str,
    stack: Stack,
    nodes: tuple[str, ...] = ("node-1", "node-2", "node-3"),
) -> dict[str, dict[str, object]]:
    """Wait until every node publishes room for ``sc`` (its agent is alive); return by node.

    A pod scheduled while a capacity object still says 0 is retried by kube-scheduler only on
    its own schedule (tens of seconds), so tests start once the numbers are real.
    """

    def check() -> dict[str, dict[str, object]] | None:
        found = {}
        for node in nodes:
            try:
                obj = to_dict(
                    kube.get(
                        CSIStorageCapacity, capacity_name(sc, node), namespace=CONTROLLER_NAMESPACE
                    )
                )
            except Exception:
                return None
            if parse_quantity(str(obj.get("capacity") or 0)) == 0:
                return None
            found[node] = obj
        return found

    result: dict[str, dict[str, object]] = wait_for(check, f"capacity of {sc}", 30, stack)
    return result
