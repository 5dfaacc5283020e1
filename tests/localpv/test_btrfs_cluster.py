"""btrfs on a real loop device: the qgroup stops writes at the size, expansion, clones, deletion."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import StorageClass
from lightkube.types import PatchType

from flotilla.core.kube import to_dict
from flotilla.localpv.policies import parse_quantity
from tests.localpv.conftest import wait_capacity
from tests.localpv.kit import (
    Stack,
    bound_pvc,
    create,
    delete,
    delete_pod_and_claim,
    event_reasons,
    get,
    pod,
    pvc,
    storage_class,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
MiB = 2**20


@pytest.fixture
def btrfs_class(kube: Client, localpv_stack: Stack) -> Iterator[str]:
    name = f"lpv-btrfs-{uuid.uuid4().hex[:6]}"
    create(kube, StorageClass, storage_class(name, backend="btrfs", expansion=True))
    wait_capacity(kube, name, localpv_stack, nodes=("node-1",))
    yield name
    delete(kube, StorageClass, name)


def _fill(path: Path, name: str, mib: int) -> int:
    """Write up to ``mib`` MiB; return how many MiB went in before the quota said no."""
    written = 0
    chunk = os.urandom(MiB)
    try:
        with open(path / name, "wb") as f:
            for _ in range(mib):
                f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
                written += 1
    except OSError as exc:
        if exc.errno != errno.EDQUOT:
            raise
    return written


def _path(kube: Client, claim: dict[str, object]) -> Path:
    spec = claim["spec"]
    assert isinstance(spec, dict)
    pv = to_dict(kube.get(PersistentVolume, spec["volumeName"]))
    return Path(pv["spec"]["local"]["path"])


def test_quota_expansion_clone_and_delete(
    kube: Client,
    namespace: str,
    btrfs_class: str,
    localpv_stack: Stack,
) -> None:
    assert localpv_stack.btrfs_root is not None
    create(kube, PersistentVolumeClaim, pvc("src", namespace, btrfs_class, "20Mi"))
    create(kube, Pod, pod("p-src", namespace, "src", node="node-1"))
    claim = bound_pvc(kube, "src", namespace, localpv_stack)
    path = _path(kube, claim)
    assert path.parent == localpv_stack.btrfs_root
    assert os.stat(path).st_ino == 256, "a btrfs subvolume"

    assert _fill(path, "big", 40) < 20, "the qgroup limit stops writes at the size"
    (path / "big").unlink()
    os.sync()
    (path / "data.txt").write_text("precious")

    kube.patch(
        PersistentVolumeClaim,
        "src",
        {"spec": {"resources": {"requests": {"storage": "60Mi"}}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )

    def grown() -> bool:
        obj = get(kube, PersistentVolumeClaim, "src", namespace) or {}
        cap = obj.get("status", {}).get("capacity", {}).get("storage", "0")
        return parse_quantity(cap) == 60 * MiB

    wait_for(grown, "PVC status shows 60Mi", 30, localpv_stack)
    wait_for(
        lambda: "VolumeResizeSuccessful" in event_reasons(kube, namespace, "src"),
        "VolumeResizeSuccessful event",
        10,
    )
    pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
    assert parse_quantity(pv["spec"]["capacity"]["storage"]) == 60 * MiB
    os.sync()
    assert _fill(path, "more", 30) == 30, "expansion raised the limit"
    (path / "more").unlink()

    create(kube, PersistentVolumeClaim, pvc("copy", namespace, btrfs_class, "60Mi", source="src"))
    create(kube, Pod, pod("p-copy", namespace, "copy", node="node-1"))
    copy = bound_pvc(kube, "copy", namespace, localpv_stack)
    copy_path = _path(kube, copy)
    assert copy_path != path
    assert (copy_path / "data.txt").read_text() == "precious"
    (copy_path / "data.txt").write_text("changed in the clone")
    assert (path / "data.txt").read_text() == "precious"

    for name in ("src", "copy"):
        delete_pod_and_claim(kube, namespace, f"p-{name}", name)
    wait_for(
        lambda: not path.exists() and not copy_path.exists(),
        "subvolumes deleted",
        30,
        localpv_stack,
    )


def test_a_clone_must_stay_on_the_source_node(
    kube: Client,
    namespace: str,
    btrfs_class: str,
    localpv_stack: Stack,
) -> None:
    create(kube, PersistentVolumeClaim, pvc("origin", namespace, btrfs_class, "10Mi"))
    create(kube, Pod, pod("p-origin", namespace, "origin", node="node-1"))
    bound_pvc(kube, "origin", namespace, localpv_stack)
    create(
        kube,
        PersistentVolumeClaim,
        pvc(
            "elsewhere",
            namespace,
            btrfs_class,
            "10Mi",
            source="origin",
            annotations={"volume.kubernetes.io/selected-node": "node-2"},
        ),
    )
    message = wait_for(
        lambda: event_reasons(kube, namespace, "elsewhere").get("Rescheduling"),
        "clone rescheduled",
        20,
        localpv_stack,
    )
    assert "node-1" in message
    assert get(kube, PersistentVolumeClaim, "elsewhere", namespace) is not None
