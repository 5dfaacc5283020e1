"""Audit results, rule by rule, against expectations computed by hand from the test bundles.

Line numbers point at the rule (or webhook, roleRef) mapping that causes the finding; they were
read off the fixture files. Namespace-scoped grants are one severity level lower.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flotilla.operators.audit import audit
from flotilla.operators.loading import find_helm, load_bundle, load_inputs
from flotilla.operators.models import Severity
from tests.operators.helpers import BUNDLES, DATA, rows

ETCD_SA = "ServiceAccount operators/etcd-operator"
ETCD_CSV_092 = "etcdoperator.v0.9.2.clusterserviceversion.yaml"
ETCD_CSV_094 = "etcdoperator.v0.9.4.clusterserviceversion.yaml"
MEMCACHED_SA = "ServiceAccount operators/memcached-operator-controller-manager"
MEMCACHED_CSV = "memcached-operator.clusterserviceversion.yaml"
GREEDY_SA = "ServiceAccount operators/greedy"
GREEDY_CSV = "greedy-operator.v1.0.0.clusterserviceversion.yaml"


def test_etcd_092_namespaced_wildcards_workloads_and_secret_reads() -> None:
    # SingleNamespace is the widest mode etcd supports: every grant is namespace-scoped, so each
    # rule is one level below its cluster-wide severity.
    report = audit(load_bundle(BUNDLES / "etcd-0.9.2").manifests)
    assert rows(report) == {
        ("rbac-wildcard", "low", ETCD_SA, f"{ETCD_CSV_092}:42"),  # * on etcd CRs
        ("rbac-wildcard", "low", ETCD_SA, f"{ETCD_CSV_092}:50"),  # * on pods, services...
        ("rbac-wildcard", "low", ETCD_SA, f"{ETCD_CSV_092}:60"),  # * on deployments
        ("workload-write", "medium", ETCD_SA, f"{ETCD_CSV_092}:50"),  # pods via *
        ("workload-write", "medium", ETCD_SA, f"{ETCD_CSV_092}:60"),  # deployments via *
        ("secrets-read", "medium", ETCD_SA, f"{ETCD_CSV_092}:66"),  # get secrets
        ("delete-pods", "low", ETCD_SA, f"{ETCD_CSV_092}:50"),  # pods via *
        ("delete-events", "low", ETCD_SA, f"{ETCD_CSV_092}:50"),  # events via *
        ("pod-automount-token", "low", "Deployment etcd-operator", f"{ETCD_CSV_092}:85"),
        (
            "crd-added",
            "low",
            "CRD etcdclusters.etcd.database.coreos.com",
            "etcdclusters.etcd.database.coreos.com.crd.yaml:1",
        ),
    }
    # SingleNamespace: OLM grants the permissions in the install namespace and copies them into
    # the target namespace, which no --target-namespace names here
    assert {g.scope for g in report.grants} == {"namespace operators", "each target namespace"}
    assert len(report.grants) == 8


def test_etcd_094_adds_cluster_secret_reads_and_exec() -> None:
    report = audit(load_bundle(BUNDLES / "etcd-0.9.4").manifests)
    found = rows(report)
    assert ("secrets-read", "high", ETCD_SA, f"{ETCD_CSV_094}:84") in found  # clusterPermissions
    assert ("pod-exec", "medium", ETCD_SA, f"{ETCD_CSV_094}:75") in found
    assert (
        "crd-added",
        "low",
        "CRD etcdbackups.etcd.database.coreos.com",
        "etcdbackups.etcd.database.coreos.com.crd.yaml:1",
    ) in found
    assert len(found) == 13  # with delete-pods, delete-events and pod-automount-token
    # nodes get/list is granted cluster-wide but is not risky: inventory only.
    nodes = [g for g in report.grants if "nodes" in g.rule.resources]
    assert [(g.scope, g.source.line) for g in nodes] == [("cluster", 92)]


def test_memcached_webhooks_cluster_permissions_and_promoted_scope() -> None:
    report = audit(load_bundle(BUNDLES / "memcached-0.0.1").manifests)
    assert rows(report) == {
        ("workload-write", "high", MEMCACHED_SA, f"{MEMCACHED_CSV}:41"),  # deployments, cluster
        ("scope-promoted", "medium", "CSV memcached-operator", f"{MEMCACHED_CSV}:135"),
        ("mutating-webhook", "high", "CSV memcached-operator", f"{MEMCACHED_CSV}:178"),
        ("validating-webhook", "medium", "CSV memcached-operator", f"{MEMCACHED_CSV}:198"),
        # leader election's configmaps update, promoted to all namespaces: kube-system's too
        ("configmap-kube-system-write", "high", MEMCACHED_SA, f"{MEMCACHED_CSV}:136"),
        (
            "pod-automount-token",
            "low",
            "Deployment memcached-operator-controller-manager",
            f"{MEMCACHED_CSV}:110",
        ),
        (
            "crd-added",
            "low",
            "CRD memcacheds.cache.example.com",
            "cache.example.com_memcacheds.yaml:1",
        ),
    }
    # AllNamespaces only: `permissions` (configmaps, leases) reach every namespace.
    promoted = [g for g in report.grants if "permissions" in g.role and "cluster" not in g.role]
    assert promoted and {g.scope for g in promoted} == {"all namespaces"}
    # The metrics-reader ClusterRole has no binding in the bundle: listed, not hidden.
    unbound = [g for g in report.grants if g.subject == "(unbound)"]
    assert [(g.role, g.rule.non_resource_urls) for g in unbound] == [
        ("ClusterRole memcached-operator-metrics-reader", ("/metrics",))
    ]
    webhook = next(f for f in report.findings if f.rule == "mutating-webhook")
    assert "create cache.example.com/memcacheds, update cache.example.com/memcacheds" in (
        webhook.message
    )
    assert "failurePolicy Fail" in webhook.message


def test_greedy_star_on_star_and_cluster_admin_binding() -> None:
    report = audit(load_bundle(BUNDLES / "greedy-1.0.0").manifests)
    binding = "greedy-admin.clusterrolebinding.yaml"
    assert rows(report) == {
        ("rbac-wildcard-all", "critical", GREEDY_SA, f"{GREEDY_CSV}:21"),
        ("rbac-nonresource-wildcard", "medium", GREEDY_SA, f"{GREEDY_CSV}:24"),
        ("scope-promoted", "medium", "CSV greedy-operator", f"{GREEDY_CSV}:27"),
        ("pod-automount-token", "low", "Deployment greedy-operator", f"{GREEDY_CSV}:42"),
        (
            "cluster-admin-binding",
            "critical",
            "ClusterRoleBinding greedy-operator-admin",
            f"{binding}:6",
        ),
        # the binding grants cluster-admin's own rules, reported at the binding
        ("rbac-wildcard-all", "critical", GREEDY_SA, f"{binding}:1"),
        ("rbac-nonresource-wildcard", "medium", GREEDY_SA, f"{binding}:1"),
    }
    # `*` on `*` is reported once, not as every narrower rule it implies.
    assert not any(
        f.rule in ("secrets-read", "workload-write", "rbac-escalate") for f in report.findings
    )
    assert report.worst() is Severity.CRITICAL


def test_greedy_audited_as_own_namespace_keeps_permissions_namespaced() -> None:
    report = audit(load_bundle(BUNDLES / "greedy-1.0.0").manifests, install_mode="OwnNamespace")
    assert "scope-promoted" not in {f.rule for f in report.findings}
    configmaps = [g for g in report.grants if "configmaps" in g.rule.resources]
    assert [g.scope for g in configmaps] == ["namespace operators"]


def test_plain_manifests_every_risky_rule() -> None:
    manifests, errors = load_inputs([DATA / "manifests"])
    assert errors == []
    report = audit(manifests)
    sa = "ServiceAccount widgets/widget-controller"
    assert rows(report) == {
        ("rbac-escalate", "critical", sa, "rbac.yaml:6"),
        ("impersonate", "critical", sa, "rbac.yaml:9"),
        ("nodes-proxy", "critical", sa, "rbac.yaml:12"),
        ("serviceaccount-token", "high", sa, "rbac.yaml:15"),
        ("csr-approve", "high", sa, "rbac.yaml:18"),
        ("pv-create", "high", sa, "rbac.yaml:21"),
        ("webhook-config-write", "critical", sa, "rbac.yaml:24"),
        ("crd-write", "medium", sa, "rbac.yaml:27"),
        ("pod-exec", "high", sa, "rbac.yaml:30"),
        # a RoleBinding in one namespace: list on secrets is high, one level down
        ("secrets-read", "medium", sa, "rbac.yaml:53"),
        ("crd-added", "low", "CRD widgets.example.com", "crd-conversion.yaml:2"),
        ("crd-conversion-webhook", "high", "CRD widgets.example.com", "crd-conversion.yaml:13"),
        (
            "mutating-webhook",
            "high",
            "MutatingWebhookConfiguration widget-defaulter",
            "webhooks.yaml:6",
        ),
        (
            "validating-webhook",
            "medium",
            "ValidatingWebhookConfiguration widget-validator",
            "webhooks.yaml:22",
        ),
    }
    crd = next(f for f in report.findings if f.rule == "crd-added")
    # v1alpha1 is defined but not served
    assert "served v1,v1beta1; storage v1" in crd.message
    assert "(Cluster objects" in crd.message


def test_crd_conflicts_with_cluster_and_between_inputs() -> None:
    etcd = load_bundle(BUNDLES / "etcd-0.9.2").manifests
    report = audit(
        etcd, existing_crds={"etcdclusters.etcd.database.coreos.com": "other-op"}, owner="etcd"
    )
    conflicts = [f for f in report.findings if f.rule == "crd-conflict"]
    assert [(f.severity, f.message) for f in conflicts] == [
        (
            Severity.HIGH,
            "etcdclusters.etcd.database.coreos.com already exists in the cluster "
            "(owned by other-op)",
        )
    ]
    # Our own CRD from a previous version is an upgrade, not a conflict.
    same_owner = audit(
        etcd, existing_crds={"etcdclusters.etcd.database.coreos.com": "etcd"}, owner="etcd"
    )
    assert "crd-conflict" not in {f.rule for f in same_owner.findings}
    # Two versions of one package define the same CRD: an upgrade, not a conflict.
    both, _ = load_inputs([BUNDLES / "etcd-0.9.0", BUNDLES / "etcd-0.9.2"])
    assert "crd-conflict" not in {f.rule for f in audit(both).findings}
    # Another input defining the CRD conflicts offline.
    crd = next(m for m in both if m.kind == "CustomResourceDefinition")
    other = replace(crd, origin="x", package="other")
    assert "crd-conflict" in {f.rule for f in audit([*both, other]).findings}


@pytest.mark.skipif(find_helm() is None, reason="no helm binary to render charts with")
def test_helm_chart_rendered_and_pointed_at_its_template() -> None:
    manifests, errors = load_inputs([DATA / "chart"], namespace="widgets")
    assert errors == []
    report = audit(manifests)
    assert rows(report) == {
        ("secrets-read", "high", "ServiceAccount widgets/widget-controller", "rbac.yaml:9")
    }
    assert report.findings[0].source.file.endswith("chart/templates/rbac.yaml")
    # Lines count on through the template's second document (rendered: 11 lines, then "---").
    assert [(m.kind, m.source.line) for m in manifests] == [
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 13),
    ]


def test_chart_without_helm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flotilla.operators.loading.find_helm", lambda: None)
    manifests, errors = load_inputs([DATA / "chart", DATA / "manifests"])
    assert len(errors) == 1 and "no helm binary" in str(errors[0])
    assert manifests  # the other input still loads
