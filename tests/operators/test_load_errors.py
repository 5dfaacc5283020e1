"""Loading that never loses a finding: bad files, bad documents and odd files are reported as
``load-error`` findings with their line, while everything beside them is still audited."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flotilla.operators.audit import audit
from flotilla.operators.cli import app
from flotilla.operators.loading import line_of, load_inputs, read_documents
from tests.operators.helpers import BUNDLES

runner = CliRunner()

ADMIN_BINDING = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: op, namespace: ops}
"""


def run(*args: str) -> Any:
    return runner.invoke(app, ["audit", *args])


def test_scalars_read_as_the_api_server_reads_them() -> None:
    docs, problems = read_documents("data: {a: =, b: 2001-12-14}\nenum: [=, '!=']\n", "f")
    assert problems == []
    assert docs[0]["data"] == {"a": "=", "b": "2001-12-14"} and docs[0]["enum"] == ["=", "!="]


def test_duplicate_keys_keep_the_last_value_and_are_reported() -> None:
    docs, problems = read_documents("kind: Role\nmetadata:\n  name: a\n  name: b\n", "f.yaml")
    assert docs[0]["metadata"]["name"] == "b"
    assert [(p.rule, p.source.line) for p in problems] == [("duplicate-key", 4)]


def test_duplicate_keys_are_reported_beside_merge_keys_and_in_nested_mappings() -> None:
    text = (
        "kind: Role\nbase: {a: 1}\nm:\n  x: 1\n  first: {d: 1, d: 2}\n  <<: {a: 2}\n  x: 2\n"
        "  deep: {k: 1, k: 2}\n"
    )
    docs, problems = read_documents(text, "f.yaml")
    assert docs[0]["m"] == {"x": 2, "first": {"d": 2}, "a": 2, "deep": {"k": 2}}
    # each once, though the mapping holding the merge key is built the loader's way
    assert sorted((p.rule, p.source.line) for p in problems) == [
        ("duplicate-key", 5),
        ("duplicate-key", 7),
        ("duplicate-key", 8),
    ]


def test_a_broken_document_hides_neither_the_one_before_nor_after() -> None:
    text = "kind: A\n---\nkind: [oops\n---\nkind: C\nrules:\n- x: 1\n"
    docs, problems = read_documents(text, "f.yaml")
    assert [d["kind"] for d in docs] == ["A", "C"]
    assert line_of(docs[1]["rules"][0]) == 7
    assert [(p.rule, p.source.line) for p in problems] == [("load-error", 4)]


def test_json_streams_and_typed_lists(tmp_path: Path) -> None:
    (tmp_path / "stream.json").write_text(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}\n'
        '{"apiVersion": "v1",\n "kind": "ConfigMap", "metadata": {"name": "b"}}\n'
    )
    (tmp_path / "roles.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleList\nitems:\n"
        "- apiVersion: rbac.authorization.k8s.io/v1\n  kind: ClusterRole\n"
        "  metadata: {name: listed}\n  rules: []\n"
    )
    manifests, problems = load_inputs([tmp_path])
    assert problems == []
    assert [(m.name, m.source.line) for m in manifests] == [("listed", 4), ("a", 1), ("b", 2)]


def test_many_bundles_with_one_broken_file_report_everything_else(tmp_path: Path) -> None:
    for bundle in ("etcd-0.9.2", "greedy-1.0.0", "memcached-0.0.1"):
        shutil.copytree(BUNDLES / bundle, tmp_path / bundle)
    (tmp_path / "greedy-1.0.0" / "manifests" / "broken.yaml").write_bytes(b"kind: \xff\xfe\n")
    (tmp_path / "etcd-0.9.2" / "metadata" / "annotations.yaml").write_bytes(b"\xff\n")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "admin.yaml").write_text(ADMIN_BINDING)
    (tmp_path / "loose" / "latin1.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    os.mkfifo(tmp_path / "loose" / "pipe.yaml")  # would block a read forever

    result = run(str(tmp_path), "-o", "json")
    assert result.exit_code == 2  # load errors, yet the report is complete
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    rules = {(f["rule"], Path(f["source"].split(":")[0]).name) for f in data["findings"]}
    assert ("cluster-admin-binding", "admin.yaml") in rules
    assert ("load-error", "broken.yaml") in rules
    assert ("load-error", "latin1.yaml") in rules
    assert ("load-error", "annotations.yaml") in rules
    subjects = {f["subject"] for f in data["findings"]}
    assert {"CSV etcdoperator", "CSV memcached-operator", "CSV greedy-operator"} <= {
        s.split(" ", 1)[0] + " " + s.split(" ", 2)[1] for s in subjects if s.startswith("CSV")
    } or any("greedy" in s for s in subjects)
    assert any(f["rule"] == "rbac-wildcard-all" for f in data["findings"])  # greedy's own
    assert any("latin1.yaml:2" in e for e in data["errors"])
    assert "Traceback" not in result.output


def test_exit_codes_clean_findings_and_load_errors(tmp_path: Path) -> None:
    clean = tmp_path / "clean.yaml"
    clean.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    admin = tmp_path / "admin.yaml"
    admin.write_text(ADMIN_BINDING)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff")
    assert run(str(clean), "--fail-on", "low").exit_code == 0
    assert run(str(admin), "--fail-on", "high").exit_code == 1
    assert run(str(admin), str(bad), "--fail-on", "high").exit_code == 2


def test_sarif_reports_a_failed_load_and_relative_uris(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/admin.yaml").write_text(ADMIN_BINDING)
    Path("sub/bad.yaml").write_text("a: [\n")
    result = run("sub", "-o", "sarif")
    assert result.exit_code == 2
    sarif = json.loads(result.output[: result.output.rindex("}") + 1])
    inv = sarif["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    assert "bad.yaml" in inv["toolExecutionNotifications"][0]["message"]["text"]
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in sarif["runs"][0]["results"]
    }
    assert uris == {"sub/admin.yaml", "sub/bad.yaml"}
    base = sarif["runs"][0]["originalUriBaseIds"]["SRCROOT"]["uri"]
    assert base.startswith("file:///") and base.endswith("/")
    clean = run("sub/admin.yaml", "-o", "sarif")
    assert json.loads(clean.output)["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_problems_become_findings_in_every_format(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: a}\n")
    manifests, problems = load_inputs([f])
    report = audit(manifests, errors=problems)
    assert [(x.rule, x.source.line) for x in report.findings] == [("duplicate-key", 3)]
    assert report.errors == []  # a duplicate key is a finding, not a load failure


def test_charts_are_rendered_for_the_testenv_kubernetes_version(tmp_path: Path) -> None:
    from flotilla.operators.loading import find_helm

    if find_helm() is None:
        import pytest

        pytest.skip("no helm binary to render charts with")
    chart = tmp_path / "modern"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: modern\nversion: 0.1.0\nkubeVersion: '>= 1.33.0-0'\n"
    )
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
    )
    manifests, problems = load_inputs([chart])
    assert problems == [] and [m.name for m in manifests] == ["a"]
