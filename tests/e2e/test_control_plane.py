"""The real control plane does what later systems rely on: API, RBAC, scheduling, PV binding."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.core_v1 import (
    Container,
    NodeSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    ObjectReference,
    PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec,
    PodSpec,
    Volume,
    VolumeMount,
    VolumeNodeAffinity,
    VolumeResourceRequirements,
)
from lightkube.models.core_v1 import (
    LocalVolumeSource as LocalSource,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import (
    Namespace,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Pod,
)
from lightkube.resources.storage_v1 import StorageClass

from flotilla.core.kube import wait_until
from flotilla.testenv.build import BuildSpec
from tests.conftest import TEST_NODES, TestCluster

pytestmark = pytest.mark.cluster

PROVISIONER = "made-up.example.com/provisioner"
# The kubectl built with the control plane: no version skew warnings.
KUBECTL = str(BuildSpec().binary("kubectl"))


def test_version_reports_the_built_release(test_cluster: TestCluster) -> None:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(test_cluster.kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    server = json.loads(out.stdout)["serverVersion"]
    assert server["gitVersion"] == "v1.34.10"
    assert (server["major"], server["minor"]) == ("1", "34")


def test_kubectl_sees_every_node_ready(test_cluster: TestCluster) -> None:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(test_cluster.kubeconfig), "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = json.loads(out.stdout)["items"]
    # Other tests may have added the real node to this session's cluster.
    kwok_nodes = [n for n in nodes if n["metadata"]["labels"].get("type") == "kwok"]
    assert len(kwok_nodes) == TEST_NODES
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
        name = node["metadata"]["name"]
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert node["status"]["allocatable"]["pods"] == "110"


def test_up_again_is_a_no_op_and_status_reports(test_cluster: TestCluster) -> None:
    before = {p["name"]: p["pid"] for p in test_cluster.status["processes"]}  # type: ignore[attr-defined]
    again = test_cluster.flotilla("up")
    assert "already running" in again.stderr
    assert Path(again.stdout.strip()) == test_cluster.kubeconfig
    status = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)
    assert status["running"] is True
    after = {p["name"]: p["pid"] for p in status["processes"]}
    assert {name: after[name] for name in before} == before, "up restarted something"
    assert set(before) >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    printed = test_cluster.flotilla("kubeconfig").stdout.strip()
    assert Path(printed) == test_cluster.kubeconfig
    for proc in status["processes"]:
        assert Path(proc["log"]).stat().st_size > 0, f"{proc['name']} wrote no log"


def test_namespace_fixture_gives_a_usable_namespace(kube: Client, namespace: str) -> None:
    ns = kube.get(Namespace, namespace)
    assert ns.status is not None and ns.status.phase == "Active"


def test_wait_for_first_consumer_binds_through_the_real_controllers(
    kube: Client, namespace: str
) -> None:
    """Scheduler picks a node for the claim, a provisioner-made PV is bound, kwok runs the pod."""
    class_name = f"wffc-{namespace}"
    kube.create(
        StorageClass(
            metadata=ObjectMeta(name=class_name),
            provisioner=PROVISIONER,
            volumeBindingMode="WaitForFirstConsumer",
            reclaimPolicy="Delete",
        )
    )
    try:
        kube.create(
            PersistentVolumeClaim(
                metadata=ObjectMeta(name="data", namespace=namespace),
                spec=PersistentVolumeClaimSpec(
                    accessModes=["ReadWriteOnce"],
                    storageClassName=class_name,
                    resources=VolumeResourceRequirements(requests={"storage": "1Gi"}),
                ),
            )
        )
        kube.create(
            Pod(
                metadata=ObjectMeta(name="app", namespace=namespace),
                spec=PodSpec(
                    containers=[
                        Container(
                            name="app",
                            image="example.invalid/app:1",
                            volumeMounts=[VolumeMount(name="data", mountPath="/data")],
                        )
                    ],
                    volumes=[
                        Volume(
                            name="data",
                            persistentVolumeClaim=PersistentVolumeClaimVolumeSource(
                                claimName="data"
                            ),
                        )
                    ],
                ),
            )
        )

        def selected_node() -> str | None:
            pvc = kube.get(PersistentVolumeClaim, "data", namespace=namespace)
            annotations = (pvc.metadata.annotations if pvc.metadata else None) or {}
            return annotations.get("volume.kubernetes.io/selected-node")

        node = wait_until(selected_node, timeout=60, what="the scheduler to select a node")
        assert node in {n.metadata.name for n in kube.list(Node) if n.metadata}

        # The PV controller hands the claim to the external provisioner named by the class.
        # It reacts to the scheduler's annotation on its own resync, so it may come a moment later.
        def handed_to() -> str | None:
            pvc = kube.get(PersistentVolumeClaim, "data", namespace=namespace)
            annotations = (pvc.metadata.annotations if pvc.metadata else None) or {}
            return annotations.get("volume.kubernetes.io/storage-provisioner")

        assert wait_until(
            handed_to, timeout=60, what="the PV controller to name the provisioner"
        ) == (PROVISIONER)
        pvc = kube.get(PersistentVolumeClaim, "data", namespace=namespace)
        assert pvc.metadata is not None
        assert pvc.status is not None and pvc.status.phase == "Pending"

        # Act as the provisioner: a PV on the selected node, pre-bound to the claim.
        pv_name = f"pv-{namespace}"
        kube.create(
            PersistentVolume(
                metadata=ObjectMeta(
                    name=pv_name,
                    annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER},
                ),
                spec=PersistentVolumeSpec(
                    capacity={"storage": "1Gi"},
                    accessModes=["ReadWriteOnce"],
                    storageClassName=class_name,
                    persistentVolumeReclaimPolicy="Delete",
                    local=LocalSource(path="/var/lib/made-up/" + namespace),
                    claimRef=ObjectReference(
                        kind="PersistentVolumeClaim",
                        namespace=namespace,
                        name="data",
                        uid=pvc.metadata.uid,
                    ),
                    nodeAffinity=VolumeNodeAffinity(
                        required=NodeSelector(
                            nodeSelectorTerms=[
                                NodeSelectorTerm(
                                    matchExpressions=[
                                        NodeSelectorRequirement(
                                            key="kubernetes.io/hostname",
                                            operator="In",
                                            values=[node],
                                        )
                                    ]
                                ),
                            ]
                        )
                    ),
                ),
            )
        )

        def bound() -> bool | None:
            claim = kube.get(PersistentVolumeClaim, "data", namespace=namespace)
            if claim.status is None or claim.status.phase != "Bound" or claim.spec is None:
                return None
            return True if claim.spec.volumeName == pv_name else None

        wait_until(bound, timeout=60, what="the PV controller to bind the claim")
        volume = kube.get(PersistentVolume, pv_name)
        assert volume.status is not None and volume.status.phase == "Bound"

        def running() -> str | None:
            pod = kube.get(Pod, "app", namespace=namespace)
            if pod.status is None or pod.status.phase != "Running" or pod.spec is None:
                return None
            return pod.spec.nodeName

        assert wait_until(running, timeout=60, what="kwok to run the pod") == node
    finally:
        kube.delete(StorageClass, class_name)
