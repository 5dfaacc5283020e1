"""The device backend on loop devices: discovery, exclusive claims, raw and formatted, wiped."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import CSIStorageCapacity, StorageClass

from flotilla.core.kube import to_dict
from flotilla.localpv.manifests import capacity_name
from flotilla.localpv.resources import BlockDevice
from tests.localpv.conftest import wait_capacity
from tests.localpv.kit import (
    Stack,
    bound_pvc,
    create,
    delete,
    delete_pod_and_claim,
    event_reasons,
    pod,
    pvc,
    storage_class,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def device_class(kube: Client, localpv_stack: Stack) -> Iterator[str]:
    name = f"lpv-dev-{uuid.uuid4().hex[:6]}"
    create(kube, StorageClass, storage_class(name, backend="device", fsType="ext4"))
    wait_capacity(kube, name, localpv_stack, nodes=("node-3",))
    yield name
    delete(kube, StorageClass, name)


def _devices(kube: Client) -> dict[str, dict[str, object]]:
    return {
        d["spec"]["path"]: d
        for d in (to_dict(o) for o in kube.list(BlockDevice))
        if d["spec"]["node"] == "node-3"
    }


def _fs_type(device: str) -> str:
    return subprocess.run(
        ["blkid", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True, check=False
    ).stdout.strip()


def test_devices_are_discovered_claimed_exclusively_and_wiped(
    kube: Client,
    namespace: str,
    device_class: str,
    localpv_stack: Stack,
) -> None:
    disk_a, disk_b = localpv_stack.devices
    found = wait_for(
        lambda: _devices(kube) if len(_devices(kube)) == 2 else None,
        "BlockDevices published",
        20,
        localpv_stack,
    )
    assert found[disk_a]["spec"]["size"] == 64 * 2**20  # type: ignore[index]

    create(kube, PersistentVolumeClaim, pvc("fs", namespace, device_class, "50Mi"))
    create(kube, Pod, pod("p-fs", namespace, "fs", node="node-3"))
    fs_claim = bound_pvc(kube, "fs", namespace, localpv_stack)
    fs_pv = to_dict(kube.get(PersistentVolume, fs_claim["spec"]["volumeName"]))
    mount = Path(fs_pv["spec"]["local"]["path"])
    assert fs_pv["spec"]["volumeMode"] == "Filesystem"
    assert _fs_type(disk_a) == "ext4", "the only device big enough for 50Mi"
    (mount / "file").write_text("on a real ext4")

    create(kube, PersistentVolumeClaim, pvc("raw", namespace, device_class, "10Mi", mode="Block"))
    create(kube, Pod, pod("p-raw", namespace, "raw", node="node-3"))
    raw_claim = bound_pvc(kube, "raw", namespace, localpv_stack)
    raw_pv = to_dict(kube.get(PersistentVolume, raw_claim["spec"]["volumeName"]))
    assert raw_pv["spec"]["volumeMode"] == "Block"
    assert raw_pv["spec"]["local"]["path"] == disk_b
    wait_for(
        lambda: all(
            d["status"]["state"] == "Claimed"  # type: ignore[index]
            for d in _devices(kube).values()
        ),
        "both devices Claimed",
        20,
        localpv_stack,
    )

    # Every device is taken: once that is published, the scheduler keeps a third claim's pod
    # off node-3 (before it is published, our controller sends the pod back instead).
    wait_for(
        lambda: _published_capacity(kube, device_class) == 0,
        "capacity 0 published",
        20,
        localpv_stack,
    )
    create(kube, PersistentVolumeClaim, pvc("third", namespace, device_class, "1Mi"))
    create(kube, Pod, pod("p-third", namespace, "third", node="node-3"))
    message = wait_for(
        lambda: (
            "storage" in event_reasons(kube, namespace, "p-third").get("FailedScheduling", "")
            and event_reasons(kube, namespace, "p-third")["FailedScheduling"]
        ),
        "third claim unschedulable",
        30,
        localpv_stack,
    )
    assert "free storage" in message

    delete_pod_and_claim(kube, namespace, "p-third", "third")  # or it takes the freed disk
    delete_pod_and_claim(kube, namespace, "p-fs", "fs")
    wait_for(
        lambda: _devices(kube)[disk_a]["status"]["state"] == "Unclaimed",  # type: ignore[index]
        "device released",
        30,
        localpv_stack,
    )
    assert _fs_type(disk_a) == "", "signatures wiped on release"
    assert not mount.exists()


def _published_capacity(kube: Client, sc: str) -> int:
    obj = to_dict(
        kube.get(CSIStorageCapacity, capacity_name(sc, "node-3"), namespace="flotilla-localpv")
    )
    return int(str(obj.get("capacity") or 0))
