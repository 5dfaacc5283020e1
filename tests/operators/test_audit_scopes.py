"""The audit reports where a CSV's permissions really land for each OperatorGroup install mode.

As OLM installs them: ``permissions`` become a Role and RoleBinding in the install namespace
and a copy of both in each target namespace (Single/MultiNamespace), or a ClusterRole and
ClusterRoleBinding with namespaces view added (AllNamespaces); ``clusterPermissions`` are a
ClusterRole in every mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.operators.audit import audit
from flotilla.operators.loading import load_bundle
from flotilla.operators.plan import materialize

runner = CliRunner()
SA = "ServiceAccount ops/scoped"


def _bundle(tmp_path: Path, modes: tuple[str, ...]) -> Path:
    root = tmp_path / "scoped"
    (root / "manifests").mkdir(parents=True)
    (root / "metadata").mkdir()
    (root / "metadata" / "annotations.yaml").write_text(
        "annotations:\n  operators.operatorframework.io.bundle.package.v1: scoped\n"
    )
    csv: dict[str, Any] = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {"name": "scoped.v1.0.0"},
        "spec": {
            "installModes": [
                {"type": t, "supported": t in modes}
                for t in ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")
            ],
            "install": {
                "strategy": "deployment",
                "spec": {
                    "permissions": [
                        {
                            "serviceAccountName": "scoped",
                            "rules": [
                                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
                                {
                                    "apiGroups": [""],
                                    "resources": ["configmaps"],
                                    "verbs": ["update"],
                                },
                            ],
                        }
                    ],
                    "clusterPermissions": [
                        {
                            "serviceAccountName": "scoped",
                            "rules": [
                                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
                            ],
                        }
                    ],
                    "deployments": [],
                },
            },
        },
    }
    (root / "manifests" / "csv.yaml").write_text(yaml.safe_dump(csv))
    return root


ALL_MODES = ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")


def _scopes(report: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for g in report.grants:
        found.setdefault(g.rule.describe(), set()).add(g.scope)
    return found


def test_multi_namespace_permissions_land_in_install_and_each_target_namespace(
    tmp_path: Path,
) -> None:
    manifests = load_bundle(_bundle(tmp_path, ALL_MODES)).manifests
    report = audit(manifests, namespace="ops", target_namespaces=["team-a", "team-b"])
    assert _scopes(report) == {
        "get on core/secrets": {"namespace ops", "namespace team-a", "namespace team-b"},
        "update on core/configmaps": {"namespace ops", "namespace team-a", "namespace team-b"},
        "get on core/nodes": {"cluster"},
    }
    assert {g.subject for g in report.grants} == {SA}  # copies bind the install namespace's SA
    reads = [f for f in report.findings if f.rule == "secrets-read"]
    assert sorted(f.message for f in reads) == [
        f"get on secrets (CSV scoped permissions, namespace {ns})"
        for ns in ("ops", "team-a", "team-b")
    ]
    assert {f.severity.label for f in reads} == {"medium"}  # namespaced: one level lower
    assert not [f for f in report.findings if f.rule in ("scope-promoted",)]


def test_a_target_of_kube_system_reaches_coredns(tmp_path: Path) -> None:
    manifests = load_bundle(_bundle(tmp_path, ALL_MODES)).manifests
    own = audit(manifests, namespace="ops", target_namespaces=["ops"])
    assert _scopes(own)["update on core/configmaps"] == {"namespace ops"}
    assert not [f for f in own.findings if f.rule == "configmap-kube-system-write"]
    single = audit(manifests, namespace="ops", target_namespaces=["kube-system"])
    coredns = [f for f in single.findings if f.rule == "configmap-kube-system-write"]
    assert [(f.severity.label, f.message) for f in coredns] == [
        (
            "high",
            "update on configmaps (CSV scoped permissions, namespace kube-system)",
        )
    ]


def test_all_namespaces_lifts_permissions_and_adds_namespaces_view(tmp_path: Path) -> None:
    manifests = load_bundle(_bundle(tmp_path, ALL_MODES)).manifests
    report = audit(manifests, namespace="ops", install_mode="AllNamespaces")
    assert _scopes(report) == {
        "get on core/secrets": {"all namespaces"},
        "update on core/configmaps": {"all namespaces"},
        "get,list,watch on core/namespaces": {"all namespaces"},
        "get on core/nodes": {"cluster"},
    }
    assert {f.rule for f in report.findings} >= {"scope-promoted", "secrets-read"}
    # and the install makes the same ClusterRole
    bundle = load_bundle(_bundle(tmp_path / "again", ALL_MODES))
    objects = materialize(bundle, package="scoped", namespace="ops", install_mode="AllNamespaces")
    lifted = next(o for o in objects if o["metadata"]["name"] == "scoped-scoped")
    assert lifted["kind"] == "ClusterRole"
    assert lifted["rules"][-1] == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["get", "list", "watch"],
    }


def test_unknown_targets_are_shown_as_such(tmp_path: Path) -> None:
    # widest supported is MultiNamespace, no --target-namespace: the targets are not known yet
    manifests = load_bundle(_bundle(tmp_path, ("OwnNamespace", "MultiNamespace"))).manifests
    report = audit(manifests, namespace="ops")
    assert _scopes(report)["get on core/secrets"] == {"namespace ops", "each target namespace"}


def _cli(*args: str) -> Any:
    return runner.invoke(app, ["operators", "audit", *args])


def test_cli_target_namespaces_and_all_namespaces(tmp_path: Path) -> None:
    bundle = str(_bundle(tmp_path, ALL_MODES))
    result = _cli(
        bundle, "-n", "ops", "--target-namespace", "a", "--target-namespace", "b", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    grants = json.loads(result.output)["grants"]
    assert {g["scope"] for g in grants} == {
        "namespace ops",
        "namespace a",
        "namespace b",
        "cluster",
    }
    result = _cli(bundle, "-n", "ops", "--all-namespaces", "-o", "json")
    assert {g["scope"] for g in json.loads(result.output)["grants"]} == {
        "all namespaces",
        "cluster",
    }
    both = _cli(bundle, "--all-namespaces", "--target-namespace", "a")
    assert both.exit_code == 2 and "not both" in both.output
    clash = _cli(bundle, "--install-mode", "OwnNamespace", "--target-namespace", "a")
    assert clash.exit_code == 2 and "disagrees" in clash.output


def test_cli_warns_when_the_csv_does_not_support_the_mode(tmp_path: Path) -> None:
    bundle = str(_bundle(tmp_path, ("OwnNamespace",)))
    result = _cli(bundle, "-n", "ops", "--target-namespace", "a", "--target-namespace", "b")
    assert result.exit_code == 0
    assert "scoped.v1.0.0 does not support the MultiNamespace install mode" in result.output
    assert "OLM would refuse it" in result.output
