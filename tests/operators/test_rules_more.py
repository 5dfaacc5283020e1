"""The rules that follow rbac-tool, KubiScan and kubescape beyond the basics, and the precision
cases: resourceNames, RoleBinding scope, bind/escalate vs writes, webhooks' groups, aggregation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from flotilla.operators.audit import audit
from flotilla.operators.documents import read_documents
from flotilla.operators.models import AuditReport, Manifest, Source
from flotilla.operators.rbac import grants_from_manifests
from flotilla.operators.rules import CLUSTER_SCOPED
from flotilla.operators.ruleset import RULES


def manifests(text: str) -> list[Manifest]:
    docs, problems = read_documents(text, "m.yaml")
    assert problems == []
    return [Manifest(body=d, source=Source("m.yaml", d.line), origin="m") for d in docs]


def role(rules: list[dict[str, Any]], *, kind: str = "ClusterRole", name: str = "r") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "ops"} if kind == "Role" else {"name": name},
            "rules": rules,
        }
    )


def binding(
    kind: str, ref_kind: str, subject: dict[str, str], name: str = "r", ns: str = "ops"
) -> str:
    meta = {"name": f"b-{name}"} | ({"namespace": ns} if kind == "RoleBinding" else {})
    return yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind, "name": name},
            "subjects": [subject],
        }
    )


SA = {"kind": "ServiceAccount", "name": "op", "namespace": "ops"}


def found(report: AuditReport) -> dict[str, str]:
    return {f.rule: f.severity.label for f in report.findings}


def cluster_grant(rules: list[dict[str, Any]]) -> dict[str, str]:
    text = role(rules) + "---\n" + binding("ClusterRoleBinding", "ClusterRole", SA)
    return found(audit(manifests(text)))


def test_every_rule_has_a_reason_and_a_doc_line() -> None:
    doc = Path("docs/operators.md").read_text(encoding="utf-8")
    for rule in RULES.values():
        assert rule.why and rule.title
        assert f"`{rule.id}`" in doc, rule.id


def test_delete_rights() -> None:
    assert cluster_grant([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["delete"]}]) == {
        "rbac-wildcard": "medium",
        "delete-all": "high",
        "delete-pods": "medium",
        "delete-events": "medium",
        "webhook-config-delete": "high",
        "crd-write": "medium",
        "apiservice-write": "high",
        "network-write": "medium",
        "gateway-api-write": "medium",
        "policy-engine-write": "high",
    }
    assert "delete-all" not in cluster_grant(
        [{"apiGroups": ["example.com"], "resources": ["*"], "verbs": ["delete"]}]
    )


def test_network_gateway_policy_and_apiservices() -> None:
    rules = [
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["patch"]},
        {
            "apiGroups": ["gateway.networking.k8s.io"],
            "resources": ["httproutes"],
            "verbs": ["create"],
        },
        {"apiGroups": ["kyverno.io"], "resources": ["clusterpolicies"], "verbs": ["update"]},
        {
            "apiGroups": ["apiregistration.k8s.io"],
            "resources": ["apiservices"],
            "verbs": ["create"],
        },
    ]
    assert cluster_grant(rules) == {
        "network-write": "medium",
        "gateway-api-write": "medium",
        "policy-engine-write": "high",
        "apiservice-write": "high",
    }


def test_anonymous_authenticated_and_masters_bindings() -> None:
    view = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    for subject, rule, severity in (
        ({"kind": "User", "name": "system:anonymous"}, "anonymous-binding", "critical"),
        ({"kind": "Group", "name": "system:unauthenticated"}, "anonymous-binding", "critical"),
        ({"kind": "Group", "name": "system:authenticated"}, "authenticated-binding", "high"),
        ({"kind": "Group", "name": "system:masters"}, "system-masters-binding", "critical"),
    ):
        text = role(view) + "---\n" + binding("ClusterRoleBinding", "ClusterRole", subject)
        assert found(audit(manifests(text))).get(rule) == severity, subject
    text = (
        role(view)
        + "---\n"
        + binding("RoleBinding", "ClusterRole", {"kind": "Group", "name": "system:authenticated"})
    )
    assert found(audit(manifests(text)))["authenticated-binding"] == "medium"


def test_configmaps_in_kube_system_only() -> None:
    write_cm = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["update"]}]
    assert "configmap-kube-system-write" in cluster_grant(write_cm)
    in_ops = role(write_cm) + "---\n" + binding("RoleBinding", "ClusterRole", SA, ns="ops")
    assert "configmap-kube-system-write" not in found(audit(manifests(in_ops)))
    in_ks = role(write_cm) + "---\n" + binding("RoleBinding", "ClusterRole", SA, ns="kube-system")
    assert found(audit(manifests(in_ks)))["configmap-kube-system-write"] == "high"


def test_cluster_scoped_resources_do_not_count_under_a_rolebinding() -> None:
    rules = [
        {"apiGroups": [""], "resources": ["persistentvolumes", "nodes/proxy"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]
    text = role(rules) + "---\n" + binding("RoleBinding", "ClusterRole", SA)
    assert found(audit(manifests(text))) == {"secrets-read": "medium"}
    assert {"pv-create", "nodes-proxy"} <= set(cluster_grant(rules))
    assert "persistentvolumes" in CLUSTER_SCOPED


def test_resource_names_narrow_shown_and_lower() -> None:
    named = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["tls"]}
    ]
    report = audit(
        manifests(role(named) + "---\n" + binding("ClusterRoleBinding", "ClusterRole", SA))
    )
    secret = next(f for f in report.findings if f.rule == "secrets-read")
    assert secret.severity.label == "medium" and "(names: tls)" in secret.message
    # list cannot be narrowed by names: full severity
    listed = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"], "resourceNames": ["tls"]}
    ]
    assert cluster_grant(listed)["secrets-read"] == "high"


def test_bind_and_escalate_are_told_apart_from_writes() -> None:
    rbac = "rbac.authorization.k8s.io"
    assert cluster_grant(
        [{"apiGroups": [rbac], "resources": ["clusterroles"], "verbs": ["bind"]}]
    ) == {"rbac-escalate": "critical"}
    assert cluster_grant(
        [{"apiGroups": [rbac], "resources": ["rolebindings"], "verbs": ["create", "patch"]}]
    ) == {"rbac-write": "high"}


def test_webhook_messages_keep_api_groups() -> None:
    text = """apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: m}
webhooks:
- name: w.example.com
  rules:
  - {apiGroups: ["apps"], resources: ["deployments"], operations: ["CREATE"]}
  - {apiGroups: [""], resources: ["pods"], operations: ["UPDATE"]}
"""
    hook = next(f for f in audit(manifests(text)).findings if f.rule == "mutating-webhook")
    assert "create apps/deployments, update core/pods" in hook.message


def test_aggregation_labels_and_match_expressions() -> None:
    label = "rbac.authorization.k8s.io/aggregate-to-view"
    leaky = yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "leaky", "labels": {label: "true", "tier": "x"}},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        }
    )
    agg = yaml.safe_dump(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "agg"},
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}
                ]
            },
            "rules": [],
        }
    )
    ms = manifests(
        leaky
        + "---\n"
        + agg
        + "---\n"
        + binding("ClusterRoleBinding", "ClusterRole", SA, name="agg")
    )
    report = audit(ms)
    assert found(report)["aggregate-to-builtin"] == "medium"
    via_agg = [g for g in grants_from_manifests(ms) if g.role == "ClusterRole agg"]
    assert [g.rule.resources for g in via_agg] == [("secrets",)]


def test_pod_security_of_operator_workloads() -> None:
    text = """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  template:
    spec:
      hostPID: true
      hostNetwork: true
      automountServiceAccountToken: true
      volumes:
      - name: sock
        hostPath: {path: /run/containerd/containerd.sock}
      - name: logs
        hostPath: {path: /var/log}
      containers:
      - name: a
        securityContext: {privileged: true}
      - name: b
        securityContext: {capabilities: {add: [SYS_ADMIN]}}
"""
    report = audit(manifests(text))
    assert {(f.rule, f.severity.label, f.source.line) for f in report.findings} == {
        ("pod-host-namespace", "high", 7),
        ("pod-runtime-socket", "critical", 11),
        ("pod-hostpath", "high", 13),
        ("pod-privileged", "high", 16),
        ("pod-privileged", "high", 18),
        ("pod-automount-token", "low", 7),
    }
    quiet = text.replace(
        "automountServiceAccountToken: true", "automountServiceAccountToken: false"
    )
    assert "pod-automount-token" not in found(audit(manifests(quiet)))
