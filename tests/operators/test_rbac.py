"""RBAC semantics the audit relies on: wildcards, subresources, scope, built-ins, aggregation."""

from __future__ import annotations

from typing import Any

from flotilla.operators.loading import load_yaml_documents
from flotilla.operators.models import Manifest, PolicyRule, Source
from flotilla.operators.rbac import allows, csv_base_name, grants_from_manifests


def _m(text: str) -> list[Manifest]:
    docs: list[Any] = load_yaml_documents(text, "t.yaml")
    return [Manifest(d, Source("t.yaml", 1)) for d in docs]


def test_allows_wildcards_and_subresources() -> None:
    star = PolicyRule(api_groups=("*",), resources=("*",), verbs=("*",))
    assert allows(star, "", "pods/exec", "create")
    pods = PolicyRule(api_groups=("",), resources=("pods",), verbs=("*",))
    assert allows(pods, "", "pods", "create")
    assert not allows(pods, "", "pods/exec", "create")  # subresources are separate
    assert not allows(pods, "apps", "pods", "create")
    sub = PolicyRule(api_groups=("",), resources=("pods/*",), verbs=("create",))
    assert allows(sub, "", "pods/exec", "create")
    scale = PolicyRule(api_groups=("apps",), resources=("*/scale",), verbs=("update",))
    assert allows(scale, "apps", "deployments/scale", "update")
    assert not allows(scale, "apps", "deployments", "update")
    urls = PolicyRule(non_resource_urls=("*",), verbs=("*",))
    assert not allows(urls, "", "secrets", "get")


def test_verbs_are_case_insensitive() -> None:
    (m,) = _m(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"
        "rules:\n- apiGroups: ['']\n  resources: [secrets]\n  verbs: [GET]\n"
    )
    (g,) = grants_from_manifests([m])
    assert allows(g.rule, "", "secrets", "get")


def test_rolebinding_to_clusterrole_is_namespace_scoped() -> None:
    ms = _m("""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: b, namespace: team}
roleRef: {kind: ClusterRole, name: reader, apiGroup: rbac.authorization.k8s.io}
subjects:
- {kind: ServiceAccount, name: bot}
- {kind: Group, name: devs}
""")
    grants = grants_from_manifests(ms)
    assert sorted((g.subject, g.scope) for g in grants) == [
        ("Group devs", "namespace team"),
        ("ServiceAccount team/bot", "namespace team"),
    ]
    assert grants[0].source.line == 5  # the rule inside the ClusterRole


def test_binding_to_builtin_edit_and_unknown_role() -> None:
    ms = _m("""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e}
roleRef: {kind: ClusterRole, name: edit}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: u}
roleRef: {kind: ClusterRole, name: defined-elsewhere}
subjects: [{kind: User, name: bob}]
""")
    grants = grants_from_manifests(ms)
    assert {g.subject for g in grants} == {"User alice"}
    assert all(g.scope == "cluster" for g in grants)


def test_aggregated_clusterrole_collects_labelled_rules() -> None:
    ms = _m("""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agg}
aggregationRule:
  clusterRoleSelectors:
  - matchLabels: {rbac.example.com/aggregate-to-agg: "true"}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: part
  labels: {rbac.example.com/aggregate-to-agg: "true"}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: {kind: ClusterRole, name: agg}
subjects: [{kind: ServiceAccount, name: s, namespace: x}]
""")
    grants = grants_from_manifests(ms)
    bound = [g for g in grants if g.subject == "ServiceAccount x/s"]
    assert [g.rule.resources for g in bound] == [("secrets",)]


def test_csv_base_name_drops_the_version() -> None:
    assert csv_base_name("etcdoperator.v0.9.2") == "etcdoperator"
    assert csv_base_name("memcached-operator.v0.0.1-rc.1") == "memcached-operator"
    assert csv_base_name("plain") == "plain"


def test_malformed_rbac_is_ignored_not_fatal() -> None:
    ms = _m("""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: odd}
rules: ["not a rule", {verbs: "get", resources: secrets, apiGroups: ""}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: b}
roleRef: "nonsense"
subjects: ["x"]
""")
    grants = grants_from_manifests(ms)
    assert [(g.subject, g.rule.verbs, g.rule.resources) for g in grants] == [
        ("(unbound)", ("get",), ("secrets",))
    ]
