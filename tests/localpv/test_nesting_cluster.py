"""Issue 26's scenario on the real control plane: two classes whose paths could nest.

Class ``flat`` renders ``{pv}`` (``pvc-<uid1>``); class ``nested`` renders ``{pvc}/{pv}``, so a
claim named ``pvc-<uid1>`` would land inside the first volume and die with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import StorageClass

from flotilla.core.kube import to_dict
from flotilla.localpv.resources import LocalVolume
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

pytestmark = pytest.mark.cluster


@pytest.fixture
def two_classes(kube: Client, localpv_stack: Stack) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    flat, nested = f"lpv-flat-{suffix}", f"lpv-nested-{suffix}"
    create(kube, StorageClass, storage_class(flat, pathPattern="{pv}"))
    create(kube, StorageClass, storage_class(nested, pathPattern="{pvc}/{pv}"))
    wait_capacity(kube, flat, localpv_stack)
    wait_capacity(kube, nested, localpv_stack)
    yield flat, nested
    delete(kube, StorageClass, flat)
    delete(kube, StorageClass, nested)


def _bind(
    kube: Client, namespace: str, name: str, sc: str, node: str, stack: Stack
) -> tuple[str, Path]:
    create(kube, PersistentVolumeClaim, pvc(name, namespace, sc, "50Mi"))
    create(kube, Pod, pod(f"app-{name}", namespace, name, node=node))
    claim = bound_pvc(kube, name, namespace, stack)
    pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
    return pv["metadata"]["name"], Path(pv["spec"]["local"]["path"])


def test_a_claim_named_like_another_volume_is_placed_apart_and_survives_its_deletion(
    kube: Client,
    namespace: str,
    two_classes: tuple[str, str],
    localpv_stack: Stack,
) -> None:
    flat, nested = two_classes
    first_pv, first_path = _bind(kube, namespace, "first", flat, "node-1", localpv_stack)
    assert first_path.name == first_pv
    # node-1 has two hostpath roots: the second volume goes to the root without the first.
    second_pv, second_path = _bind(kube, namespace, first_pv, nested, "node-1", localpv_stack)
    assert second_path.parts[-2:] == (first_pv, second_pv)
    assert second_path.parent.parent != first_path.parent
    (second_path / "precious").write_text("keep")

    delete_pod_and_claim(kube, namespace, "app-first", "first")
    wait_for(
        lambda: get(kube, LocalVolume, first_pv) is None, "first volume released", 30, localpv_stack
    )
    assert not first_path.exists()
    assert (second_path / "precious").read_text() == "keep"
    delete_pod_and_claim(kube, namespace, f"app-{first_pv}", first_pv)
    wait_for(
        lambda: get(kube, LocalVolume, second_pv) is None,
        "second volume released",
        30,
        localpv_stack,
    )
    assert not second_path.exists()


def test_on_a_node_with_one_root_the_nesting_claim_is_sent_back(
    kube: Client,
    namespace: str,
    two_classes: tuple[str, str],
    localpv_stack: Stack,
) -> None:
    flat, nested = two_classes
    first_pv, first_path = _bind(kube, namespace, "first", flat, "node-2", localpv_stack)
    (first_path / "precious").write_text("keep")
    create(kube, PersistentVolumeClaim, pvc(first_pv, namespace, nested, "50Mi"))
    create(kube, Pod, pod("app-second", namespace, first_pv, node="node-2"))
    message = wait_for(
        lambda: event_reasons(kube, namespace, first_pv).get("Rescheduling"),
        "Rescheduling",
        30,
        localpv_stack,
    )
    assert f"volume {first_pv}" in message and "would contain or sit inside" in message
    assert sorted(p.name for p in first_path.iterdir()) == ["precious"]
    claim = get(kube, PersistentVolumeClaim, first_pv, namespace)
    assert claim is not None and claim["status"].get("phase") == "Pending"
