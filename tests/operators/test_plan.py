"""Diffs between versions, approval decisions, what a bundle becomes, and stored state."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flotilla.operators.audit import AuditDiff, audit, diff_audits
from flotilla.operators.loading import load_bundle, load_inputs
from flotilla.operators.models import AuditReport, Finding, Severity
from flotilla.operators.plan import (
    Approval,
    ObjectRef,
    OperatorState,
    PendingPlan,
    decide,
    materialize,
    objects_to_prune,
)
from tests.operators.helpers import BUNDLES, rows


def _diff(old: str, new: str, mode: str | None = None) -> AuditDiff:
    o, n = load_bundle(BUNDLES / old).manifests, load_bundle(BUNDLES / new).manifests
    return diff_audits(
        audit(o, install_mode=mode), audit(n, install_mode=mode), old_manifests=o, new_manifests=n
    )


def test_upgrade_diff_shows_only_what_is_new() -> None:
    diff = _diff("etcd-0.9.2", "etcd-0.9.4")
    csv = "etcdoperator.v0.9.4.clusterserviceversion.yaml"
    sa = "ServiceAccount operators/etcd-operator"
    assert rows_of(diff.added) == {
        ("secrets-read", "high", sa, f"{csv}:84"),
        ("pod-exec", "medium", sa, f"{csv}:75"),
        (
            "crd-added",
            "low",
            "CRD etcdbackups.etcd.database.coreos.com",
            "etcdbackups.etcd.database.coreos.com.crd.yaml:1",
        ),
    }
    assert diff.removed == []
    # lines moved (rules shifted by 3) but unchanged grants are not "added"
    assert sorted((g.rule.describe(), g.scope) for g in diff.grants_added) == [
        ("create on core/pods/exec", "each target namespace"),  # SingleNamespace: copied there
        ("create on core/pods/exec", "namespace operators"),
        ("get,list on core/nodes", "cluster"),
        ("get,list,watch on core/secrets", "cluster"),
    ]


def test_same_bundle_twice_is_an_empty_diff() -> None:
    assert _diff("etcd-0.9.2", "etcd-0.9.2").empty


def test_downgrade_diff_lists_removed_findings() -> None:
    diff = _diff("etcd-0.9.4", "etcd-0.9.2")
    assert {f.rule for f in diff.removed} == {"secrets-read", "pod-exec", "crd-added"}
    assert diff.added == []


def test_crd_version_no_longer_served_is_reported(tmp_path: Path) -> None:
    src = (
        BUNDLES / "etcd-0.9.0" / "manifests" / "etcdclusters.etcd.database.coreos.com.crd.yaml"
    ).read_text()
    (tmp_path / "old.yaml").write_text(
        src.replace(
            "  versions:\n",
            "  versions:\n  - name: v1beta1\n    served: true\n    storage: false\n"
            "    schema:\n      openAPIV3Schema: {type: object}\n",
        )
    )
    (tmp_path / "new.yaml").write_text(src)
    old, _ = load_inputs([tmp_path / "old.yaml"])
    new, _ = load_inputs([tmp_path / "new.yaml"])
    diff = diff_audits(audit(old), audit(new), old_manifests=old, new_manifests=new)
    assert [(f.rule, f.message) for f in diff.added] == [
        ("crd-version-removed", "etcdclusters.etcd.database.coreos.com stops serving v1beta1")
    ]


def rows_of(findings: Iterable[Finding]) -> set[tuple[str, str, str, str]]:
    return rows(AuditReport(findings=list(findings)))


def test_decide_manual_always_holds_auto_holds_risky_only() -> None:
    risky = _diff("etcd-0.9.2", "etcd-0.9.4", "OwnNamespace")
    assert decide(Approval.MANUAL, risky, Severity.HIGH) == "approval is manual for this operator"
    reason = decide(Approval.AUTO, risky, Severity.HIGH)
    assert reason is not None and "secrets-read" in reason and "high" in reason
    assert decide(Approval.AUTO, risky, Severity.CRITICAL) is None
    assert decide(Approval.AUTO, risky, None) is None
    assert decide(Approval.AUTO, _diff("etcd-0.9.2", "etcd-0.9.2"), Severity.LOW) is None


def test_materialize_own_namespace_makes_roles_and_keeps_names_stable() -> None:
    objs = materialize(
        load_bundle(BUNDLES / "etcd-0.9.4"),
        package="etcd",
        namespace="db",
        install_mode="OwnNamespace",
    )
    refs = [str(ObjectRef.of(o)) for o in objs]
    assert refs == [
        "CustomResourceDefinition etcdbackups.etcd.database.coreos.com",
        "CustomResourceDefinition etcdclusters.etcd.database.coreos.com",
        "ServiceAccount db/etcd-operator",
        "ClusterRole etcd-etcd-operator-cluster",
        "Role db/etcd-etcd-operator",
        "ClusterRoleBinding etcd-etcd-operator-cluster",
        "RoleBinding db/etcd-etcd-operator",
        "Deployment db/etcd-operator",
    ]
    for o in objs:
        assert o["metadata"]["labels"]["flotilla.dev/operator"] == "etcd"
        assert o["metadata"]["labels"]["flotilla.dev/bundle"] == "etcdoperator.v0.9.4"
    binding = next(o for o in objs if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "etcd-operator", "namespace": "db"}
    ]


def test_materialize_all_namespaces_promotes_permissions() -> None:
    objs = materialize(
        load_bundle(BUNDLES / "memcached-0.0.1"),
        package="memcached-operator",
        namespace="ops",
        install_mode="AllNamespaces",
    )
    kinds = [o["kind"] for o in objs]
    assert "Role" not in kinds and kinds.count("ClusterRole") == 3  # 2 from CSV + metrics reader
    service = next(o for o in objs if o["kind"] == "Service")
    assert service["metadata"]["namespace"] == "ops" and "status" not in service
    assert "creationTimestamp" not in service["metadata"]


def test_prune_never_removes_crds() -> None:
    old = [
        ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", "a.b"),
        ObjectRef("v1", "ConfigMap", "gone", "ns"),
        ObjectRef("v1", "ConfigMap", "kept", "ns"),
    ]
    new = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept", "namespace": "ns"}}
    ]
    assert objects_to_prune(old, new) == [ObjectRef("v1", "ConfigMap", "gone", "ns")]


def test_state_round_trips_through_json() -> None:
    state = OperatorState(
        package="etcd",
        channel="alpha",
        namespace="db",
        approval="auto",
        installed="etcdoperator.v0.9.2",
        version="0.9.2",
        objects=[ObjectRef("v1", "ServiceAccount", "x", "db")],
        pending=PendingPlan(["etcdoperator.v0.9.4"], "why", "diff", "alpha"),
    )
    again = OperatorState.from_json(state.to_json())
    assert again == state
    assert again.crds == []
