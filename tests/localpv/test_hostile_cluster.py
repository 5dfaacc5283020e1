"""Hostile input on the real control plane: refused with an Event, nothing outside touched."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import StorageClass

from tests.localpv.conftest import wait_capacity
from tests.localpv.kit import (
    Stack,
    create,
    delete,
    event_reasons,
    files_under,
    get,
    pod,
    pvc,
    storage_class,
    wait_for,
)

pytestmark = pytest.mark.cluster


def _snapshot(stack: Stack) -> dict[str, set[str]]:
    return {name: files_under(root) for name, root in stack.roots.items()}


def _refusal(kube: Client, namespace: str, claim: str, stack: Stack) -> str:
    message: str = wait_for(
        lambda: event_reasons(kube, namespace, claim).get("ProvisioningFailed"),
        f"ProvisioningFailed on {claim}",
        20,
        stack,
    )
    return message


@pytest.fixture
def subdir_class(kube: Client, localpv_stack: Stack) -> str:
    name = f"lpv-sub-{uuid.uuid4().hex[:6]}"
    create(kube, StorageClass, storage_class(name, pathPattern="{namespace}/{subdir}/{pv}"))
    wait_capacity(kube, name, localpv_stack)
    yield name  # type: ignore[misc]
    delete(kube, StorageClass, name)


def test_traversal_absolute_and_long_names_are_refused(
    kube: Client,
    namespace: str,
    subdir_class: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    before = _snapshot(localpv_stack)
    cases = {
        "dotdot": "../../../etc",
        "absolute": "/etc",
        "sneaky": "ok/../../x",
        "nul": "a\x00b",
    }
    for claim, subdir in cases.items():
        create(
            kube,
            PersistentVolumeClaim,
            pvc(
                claim,
                namespace,
                subdir_class,
                "10Mi",
                annotations={"localpv.flotilla.dev/subdir": subdir.replace("\x00", "%00")},
            ),
        )
        create(kube, Pod, pod(f"p-{claim}", namespace, claim))
    long_name = "l" * 250
    create(kube, PersistentVolumeClaim, pvc(long_name, namespace, hostpath_class, "10Mi"))
    create(kube, Pod, pod("p-long", namespace, long_name))
    for claim in cases:
        message = _refusal(kube, namespace, claim, localpv_stack)
        assert "path component" in message, message
    message = _refusal(kube, namespace, long_name, localpv_stack)
    assert "longer than 255 bytes" in message
    for claim in [*cases, long_name]:
        obj = get(kube, PersistentVolumeClaim, claim, namespace)
        assert obj is not None and obj["status"]["phase"] == "Pending"
    assert _snapshot(localpv_stack) == before


def test_a_class_with_an_escaping_pattern_is_refused(
    kube: Client,
    namespace: str,
    localpv_stack: Stack,
) -> None:
    bad = {"up": "../{pv}", "abs": "/etc/{pv}", "nopv": "{namespace}", "unknown": "{pvc}_{x}_{pv}"}
    names = []
    try:
        for key, pattern in bad.items():
            sc = f"lpv-bad-{key}-{namespace}"
            names.append(sc)
            create(kube, StorageClass, storage_class(sc, pathPattern=pattern))
            create(kube, PersistentVolumeClaim, pvc(key, namespace, sc, "10Mi"))
            create(kube, Pod, pod(f"p-{key}", namespace, key))
        for key in bad:
            message = _refusal(kube, namespace, key, localpv_stack)
            assert "pathPattern" in message, message
    finally:
        for sc in names:
            delete(kube, StorageClass, sc)


def test_a_symlink_planted_in_a_root_is_not_followed(
    kube: Client,
    namespace: str,
    subdir_class: str,
    localpv_stack: Stack,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for node in ("node-1", "node-2", "node-3"):
        root = localpv_stack.roots[node]
        (root / namespace).symlink_to(outside)
    before = _snapshot(localpv_stack)
    create(
        kube,
        PersistentVolumeClaim,
        pvc(
            "planted",
            namespace,
            subdir_class,
            "10Mi",
            annotations={"localpv.flotilla.dev/subdir": "x"},
        ),
    )
    create(kube, Pod, pod("p-planted", namespace, "planted"))
    message = _refusal(kube, namespace, "planted", localpv_stack)
    assert "symlink" in message, message
    assert list(outside.iterdir()) == []
    assert _snapshot(localpv_stack) == before
    claim = get(kube, PersistentVolumeClaim, "planted", namespace)
    assert claim is not None and claim["status"]["phase"] == "Pending"
    for node in ("node-1", "node-2", "node-3"):
        (localpv_stack.roots[node] / namespace).unlink()
