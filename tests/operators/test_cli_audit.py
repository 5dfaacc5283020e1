"""The audit command as CI uses it: formats, --fail-on, --diff, errors, hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flotilla.operators.audit import audit
from flotilla.operators.cli import app
from flotilla.operators.models import Manifest, Source
from tests.operators.helpers import BUNDLES, CATALOG, DATA

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, ["audit", *args])


def test_json_output_has_the_documented_shape() -> None:
    result = run(str(BUNDLES / "greedy-1.0.0"), "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    first = data["findings"][0]
    assert set(first) == {"rule", "severity", "subject", "source", "message", "why"}
    assert first["severity"] == "critical"
    assert {f["severity"] for f in data["findings"]} <= {"low", "medium", "high", "critical"}
    assert any(g["via"] == "ClusterRole cluster-admin" for g in data["grants"])


def test_sarif_output_locates_each_result() -> None:
    result = run(str(DATA / "manifests"), "-o", "sarif")
    assert result.exit_code == 0
    sarif = json.loads(result.output)
    assert sarif["version"] == "2.1.0"
    run0 = sarif["runs"][0]
    ids = {r["id"] for r in run0["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in run0["results"]} == ids
    nodes = next(r for r in run0["results"] if r["ruleId"] == "nodes-proxy")
    loc = nodes["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("manifests/rbac.yaml")
    assert loc["region"]["startLine"] == 12
    assert nodes["level"] == "error"


def test_fail_on_thresholds() -> None:
    path = str(BUNDLES / "etcd-0.9.2")  # worst finding: medium
    assert run(path, "--fail-on", "high").exit_code == 0
    assert run(path, "--fail-on", "medium").exit_code == 1
    assert run(str(BUNDLES / "greedy-1.0.0"), "--fail-on", "critical").exit_code == 1
    bad = run(path, "--fail-on", "severe")
    assert bad.exit_code == 2 and "unknown severity" in bad.output


def test_table_lists_findings_and_grants() -> None:
    result = run(str(BUNDLES / "etcd-0.9.2"), "--why")
    assert result.exit_code == 0
    assert "secrets-read" in result.output and "Permissions granted (8)" in result.output
    assert "returns their values" in result.output


def test_diff_mode_fails_only_on_added_findings() -> None:
    old, new = str(BUNDLES / "etcd-0.9.2"), str(BUNDLES / "etcd-0.9.4")
    result = run("--diff", old, new, "-o", "json", "--fail-on", "high")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert {f["rule"] for f in data["added"]} == {"secrets-read", "pod-exec", "crd-added"}
    # etcd 0.9.2 already has medium findings; none is new when diffed against itself
    assert run("--diff", old, old, "--fail-on", "low").exit_code == 0
    assert run("--diff", old).exit_code == 2
    sarif = json.loads(run("--diff", old, new, "-o", "sarif").output)
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {
        "secrets-read",
        "pod-exec",
        "crd-added",
    }


def test_install_mode_is_validated_and_narrows_scope() -> None:
    greedy = str(BUNDLES / "greedy-1.0.0")
    assert run(greedy, "--install-mode", "Everywhere").exit_code == 2
    result = run(greedy, "--install-mode", "OwnNamespace", "-o", "json")
    assert "scope-promoted" not in {f["rule"] for f in json.loads(result.output)["findings"]}


def test_inputs_with_errors_exit_2_but_still_report(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [\n")
    result = run(str(BUNDLES / "greedy-1.0.0"), str(tmp_path / "bad.yaml"))
    assert result.exit_code == 2
    assert "rbac-wildcard-all" in result.output and "not valid YAML" in result.output
    assert run().exit_code == 2  # neither paths nor --cluster


_KEYS = [
    "spec",
    "rules",
    "roleRef",
    "subjects",
    "webhooks",
    "install",
    "permissions",
    "clusterPermissions",
    "versions",
    "verbs",
    "resources",
    "apiGroups",
    "name",
    "metadata",
    "conversion",
    "webhookdefinitions",
    "installModes",
    "type",
    "supported",
    "strategy",
    "aggregationRule",
    "clusterRoleSelectors",
    "matchLabels",
    "labels",
    "kind",
    "operations",
    "serviceAccountName",
    "nonResourceURLs",
]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.just("*"),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(
        [
            "ClusterServiceVersion",
            "ClusterRole",
            "Role",
            "RoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "MutatingWebhookConfiguration",
        ]
    ),
    body=st.dictionaries(
        st.sampled_from(
            ["spec", "rules", "roleRef", "subjects", "webhooks", "metadata", "aggregationRule"]
        ),
        _json,
        max_size=5,
    ),
)
def test_malformed_manifests_never_crash_the_audit(kind: str, body: dict[str, Any]) -> None:
    doc = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, **body}
    audit([Manifest(doc, Source("fuzz.yaml", 1))])


def test_missing_kubeconfig_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    for args in (
        ["install", "etcd", "--catalog", str(CATALOG), "--kubeconfig", missing],
        ["audit", str(CATALOG), "--check-crds", "--kubeconfig", missing],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "Error:" in result.output and "Traceback" not in result.output
