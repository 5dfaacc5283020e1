"""hostpath end to end on the real control plane: bind, place, write, capacity, delete."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Namespace, PersistentVolume, PersistentVolumeClaim, Pod
from lightkube.resources.storage_v1 import CSIDriver, StorageClass
from lightkube.types import PatchType

from flotilla.core.kube import to_dict
from flotilla.localpv.policies import parse_quantity
from flotilla.localpv.resources import LocalVolume
from flotilla.testenv.build import BuildSpec
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


def _root_of(stack: Stack, path: str) -> Path:
    return next(r for r in stack.roots.values() if path.startswith(str(r) + "/"))


def test_claim_binds_to_a_directory_on_the_scheduled_node_and_delete_removes_only_it(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    create(kube, PersistentVolumeClaim, pvc("data", namespace, hostpath_class, "300Mi"))
    create(kube, Pod, pod("app", namespace, "data"))
    claim = bound_pvc(kube, "data", namespace, localpv_stack)
    pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
    node = claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
    assert node in ("node-1", "node-2"), "node-3 has only 200Mi of budget"
    path = pv["spec"]["local"]["path"]
    root = _root_of(localpv_stack, path)
    assert root.parent.name == node
    assert Path(path).name == f"{namespace}_data_{pv['metadata']['name']}"
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]
        }
    ]
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert pv["spec"]["capacity"]["storage"] == str(300 * 2**20)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o750)
    # "Pods" are kwok fakes, so write through the path as the container would.
    Path(path, "hello.txt").write_text("hi")
    sibling = root / "keep-me"
    sibling.mkdir()
    # Events are written by the controller's event thread: wait for them rather than race it.
    succeeded = wait_for(
        lambda: event_reasons(kube, namespace, "data").get("ProvisioningSucceeded"),
        "ProvisioningSucceeded event",
        10,
    )
    assert node in succeeded
    lv = to_dict(kube.get(LocalVolume, pv["metadata"]["name"]))
    assert lv["status"]["phase"] == "Ready" and lv["status"]["path"] == path
    wait_for(
        lambda: (
            to_dict(kube.get(LocalVolume, pv["metadata"]["name"]))["status"].get("usedBytes", 0) > 0
        ),
        "usage reported",
        15,
        localpv_stack,
    )

    delete_pod_and_claim(kube, namespace, "app", "data")
    wait_for(
        lambda: get(kube, PersistentVolume, pv["metadata"]["name"]) is None,
        "PV deleted",
        30,
        localpv_stack,
    )
    assert not Path(path).exists()
    assert sibling.is_dir()
    assert get(kube, LocalVolume, pv["metadata"]["name"]) is None


def test_capacity_objects_and_csidriver_are_published(
    kube: Client,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    driver = to_dict(kube.get(CSIDriver, "localpv.flotilla.dev"))
    assert driver["spec"]["storageCapacity"] is True
    caps = wait_capacity(kube, hostpath_class, localpv_stack)
    assert caps["node-3"]["nodeTopology"] == {"matchLabels": {"kubernetes.io/hostname": "node-3"}}
    node3 = int(str(caps["node-3"]["capacity"]))
    assert 0 < node3 <= 200 * 2**20
    node1 = int(str(caps["node-1"]["capacity"]))
    assert node1 > 10 * 2**30  # two roots: 10Gi + 5Gi budgets, minus what tests hold
    assert int(str(caps["node-1"]["maximumVolumeSize"])) <= 10 * 2**30


def test_the_scheduler_skips_a_node_without_room(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    create(kube, PersistentVolumeClaim, pvc("big", namespace, hostpath_class, "1Gi"))
    create(kube, Pod, pod("pinned", namespace, "big", node="node-3"))

    def unschedulable() -> str | None:
        # The first attempt may still miss the claim in the scheduler's cache ("not found").
        message = event_reasons(kube, namespace, "pinned").get("FailedScheduling", "")
        return message if "storage" in message else None

    message = wait_for(unschedulable, "FailedScheduling on the pinned pod", 30, localpv_stack)
    assert "storage" in message, message
    claim = get(kube, PersistentVolumeClaim, "big", namespace)
    assert claim is not None
    assert "volume.kubernetes.io/selected-node" not in (claim["metadata"].get("annotations") or {})
    assert claim["status"]["phase"] == "Pending"
    # Unpinned, the same claim lands on a node with room.
    create(kube, PersistentVolumeClaim, pvc("big2", namespace, hostpath_class, "1Gi"))
    create(kube, Pod, pod("free", namespace, "big2"))
    bound = bound_pvc(kube, "big2", namespace, localpv_stack)
    assert bound["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] != "node-3"


def test_a_stale_node_choice_is_dropped_with_an_event(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    """Capacity objects lag; when the scheduler still picks a full node, we send it back."""
    create(
        kube,
        PersistentVolumeClaim,
        pvc(
            "stale",
            namespace,
            hostpath_class,
            "1Gi",
            annotations={"volume.kubernetes.io/selected-node": "node-3"},
        ),
    )

    def rescheduled() -> str | None:
        return event_reasons(kube, namespace, "stale").get("Rescheduling")

    message = wait_for(rescheduled, "Rescheduling event", 20, localpv_stack)
    assert "node-3" in message and "capacity" in message
    claim = get(kube, PersistentVolumeClaim, "stale", namespace)
    assert claim is not None
    assert "volume.kubernetes.io/selected-node" not in (claim["metadata"].get("annotations") or {})


def test_unknown_node_and_missing_backend_are_rescheduled(
    kube: Client,
    namespace: str,
    localpv_stack: Stack,
) -> None:
    sc = f"lpv-btrfs-{namespace}"
    create(kube, StorageClass, storage_class(sc, backend="btrfs"))
    try:
        create(
            kube,
            PersistentVolumeClaim,
            pvc(
                "nobtrfs",
                namespace,
                sc,
                "10Mi",
                annotations={"volume.kubernetes.io/selected-node": "node-2"},
            ),
        )
        create(
            kube,
            PersistentVolumeClaim,
            pvc(
                "ghost",
                namespace,
                sc,
                "10Mi",
                annotations={"volume.kubernetes.io/selected-node": "no-such-node"},
            ),
        )
        msg = wait_for(
            lambda: event_reasons(kube, namespace, "nobtrfs").get("Rescheduling"),
            "Rescheduling (no btrfs)",
            20,
            localpv_stack,
        )
        assert "no btrfs storage" in msg
        msg = wait_for(
            lambda: event_reasons(kube, namespace, "ghost").get("Rescheduling"),
            "Rescheduling (no node)",
            20,
            localpv_stack,
        )
        assert "does not exist" in msg
    finally:
        delete(kube, StorageClass, sc)


@pytest.mark.slow
def test_statefulset_claims_all_bind(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    create(
        kube,
        StatefulSet,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {
                "serviceName": "db",
                "replicas": 3,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "db",
                                "image": "postgres",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "tolerations": [{"operator": "Exists"}],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": hostpath_class,
                            "resources": {"requests": {"storage": "50Mi"}},
                        },
                    }
                ],
            },
        },
    )
    paths = set()
    for i in range(3):
        claim = bound_pvc(kube, f"data-db-{i}", namespace, localpv_stack, timeout=60)
        pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
        paths.add(pv["spec"]["local"]["path"])
    assert len(paths) == 3
    assert all(Path(p).is_dir() for p in paths)


def test_retain_keeps_the_data_and_immediate_binding_is_refused(
    kube: Client,
    namespace: str,
    localpv_stack: Stack,
) -> None:
    retain, immediate = f"lpv-retain-{namespace}", f"lpv-imm-{namespace}"
    create(kube, StorageClass, storage_class(retain, reclaim="Retain"))
    create(kube, StorageClass, storage_class(immediate, binding="Immediate"))
    try:
        wait_capacity(kube, retain, localpv_stack)
        create(kube, PersistentVolumeClaim, pvc("kept", namespace, retain, "10Mi"))
        create(kube, Pod, pod("app", namespace, "kept", node="node-2"))
        claim = bound_pvc(kube, "kept", namespace, localpv_stack)
        name = claim["spec"]["volumeName"]
        path = Path(to_dict(kube.get(PersistentVolume, name))["spec"]["local"]["path"])
        (path / "file").write_text("retained")
        delete_pod_and_claim(kube, namespace, "app", "kept")
        wait_for(
            lambda: (
                (get(kube, PersistentVolume, name) or {}).get("status", {}).get("phase")
                == "Released"
            ),
            "PV Released",
            30,
            localpv_stack,
        )
        time.sleep(1.5)  # a pass of the controller: nothing may be deleted
        assert get(kube, LocalVolume, name) is not None
        assert (path / "file").read_text() == "retained"
        # Releasing the record of retained data keeps the data, and says so.
        delete(kube, PersistentVolume, name)
        delete(kube, LocalVolume, name)
        wait_for(lambda: get(kube, LocalVolume, name) is None, "record released", 20, localpv_stack)
        assert (path / "file").read_text() == "retained"
        released = wait_for(
            lambda: event_reasons(kube, "default", name).get("Released"), "Released event", 10
        )
        assert "Retain" in released

        create(kube, PersistentVolumeClaim, pvc("now", namespace, immediate, "10Mi"))
        message = wait_for(
            lambda: event_reasons(kube, namespace, "now").get("ProvisioningFailed"),
            "Immediate refused",
            20,
            localpv_stack,
        )
        assert "WaitForFirstConsumer" in message
    finally:
        delete(kube, StorageClass, retain)
        delete(kube, StorageClass, immediate)


def test_the_scheduler_checks_each_claim_alone_and_the_controller_catches_the_sum(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    """Two 150Mi claims of one pod on node-3 (200Mi): each fits, both do not."""
    wait_for(
        lambda: (
            int(str(wait_capacity(kube, hostpath_class, localpv_stack)["node-3"]["capacity"]))
            == 200 * 2**20
        ),
        "volumes of earlier tests released on node-3",
        30,
        localpv_stack,
    )
    for name in ("a", "b"):
        create(kube, PersistentVolumeClaim, pvc(name, namespace, hostpath_class, "150Mi"))
    body = pod("both", namespace, "a", node="node-3")
    body["spec"]["volumes"].append({"name": "b", "persistentVolumeClaim": {"claimName": "b"}})
    create(kube, Pod, body)

    def outcome() -> tuple[str, str] | None:
        phases = {
            n: (get(kube, PersistentVolumeClaim, n, namespace) or {}).get("status", {}).get("phase")
            for n in ("a", "b")
        }
        refused = [n for n in ("a", "b") if "Rescheduling" in event_reasons(kube, namespace, n)]
        if sorted(phases.values()) == ["Bound", "Pending"] and refused:
            return next(n for n, p in phases.items() if p == "Bound"), refused[0]
        return None

    bound, refused = wait_for(outcome, "one claim bound, the other sent back", 40, localpv_stack)
    assert bound != refused
    assert (
        "not enough free hostpath capacity"
        in event_reasons(kube, namespace, refused)["Rescheduling"]
    )


def test_deploy_manifests_are_accepted_by_the_api_server(
    kube: Client,
    kubeconfig: Path,
    localpv_stack: Stack,
) -> None:
    namespace = f"lpv-deploy-{uuid.uuid4().hex[:6]}"
    create(
        kube, Namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    try:
        manifests = subprocess.run(
            [sys.executable, "-m", "flotilla", "localpv", "manifests", "--namespace", namespace],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        applied = subprocess.run(
            [
                str(BuildSpec().binary("kubectl")),
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "--dry-run=server",
                "-f",
                "-",
            ],
            input=manifests,
            capture_output=True,
            text=True,
        )
        assert applied.returncode == 0, applied.stderr
        for kind in (
            "deployment.apps",
            "daemonset.apps",
            "clusterrole.rbac.authorization.k8s.io",
            "customresourcedefinition.apiextensions.k8s.io",
        ):
            assert kind in applied.stdout
    finally:
        delete(kube, Namespace, namespace)


def test_expansion_is_granted_only_within_the_pool_budget(
    kube: Client,
    namespace: str,
    localpv_stack: Stack,
) -> None:
    sc = f"lpv-grow-{namespace}"
    create(kube, StorageClass, storage_class(sc, expansion=True))
    try:
        wait_capacity(kube, sc, localpv_stack)
        create(kube, PersistentVolumeClaim, pvc("grow", namespace, sc, "50Mi"))
        create(kube, Pod, pod("app", namespace, "grow", node="node-2"))
        bound_pvc(kube, "grow", namespace, localpv_stack)

        def resize(size: str) -> None:
            kube.patch(
                PersistentVolumeClaim,
                "grow",
                {"spec": {"resources": {"requests": {"storage": size}}}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )

        resize("100Mi")
        wait_for(
            lambda: (
                parse_quantity(
                    (get(kube, PersistentVolumeClaim, "grow", namespace) or {})
                    .get("status", {})
                    .get("capacity", {})
                    .get("storage", "0")
                )
                == 100 * 2**20
            ),
            "grown to 100Mi",
            30,
            localpv_stack,
        )
        resize("20Gi")  # node-2's root may promise 10Gi in all
        message = wait_for(
            lambda: event_reasons(kube, namespace, "grow").get("VolumeResizeFailed"),
            "resize refused",
            30,
            localpv_stack,
        )
        assert "21474836480 requested" in message and "node-2" in message
    finally:
        delete(kube, StorageClass, sc)
