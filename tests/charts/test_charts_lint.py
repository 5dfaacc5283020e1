"""Lint as deep as helm's: rendering with the real helm, values.schema.json, rendered objects,
and package/publish refusing what lint refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chart_factory import simple_chart, write
from charts_support import Helm
from test_charts_publish import URL, git
from typer.testing import CliRunner

from flotilla.charts import index as idx
from flotilla.charts.archives import load_archive
from flotilla.charts.cli import app
from flotilla.charts.errors import ChartError
from flotilla.charts.linting import lint_chart
from flotilla.charts.packaging import package_chart
from flotilla.charts.publishing import PublishOptions, publish

runner = CliRunner()

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["replicas"],
    "properties": {"replicas": {"type": "integer", "minimum": 1}, "image": {"type": "string"}},
}


def schema_chart(root: Path, values: str) -> Path:
    chart = simple_chart(root, "app", "1.0.0")
    (chart / "values.schema.json").write_text(json.dumps(SCHEMA))
    (chart / "values.yaml").write_text(values)
    return chart


def messages(chart: Path) -> list[str]:
    return [str(f) for f in lint_chart(chart).errors]


def test_good_chart_is_rendered_and_passes(tmp_path: Path) -> None:
    result = lint_chart(schema_chart(tmp_path, "replicas: 2\n"))
    assert result.errors == [] and result.rendered


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ("replicas: 0\n", "values: replicas: 0 is less than the minimum of 1"),
        ("replicas: two\n", "values: replicas: 'two' is not of type 'integer'"),
        ("image: nginx\n", "values: (root): 'replicas' is a required property"),
    ],
)
def test_values_violating_the_schema(tmp_path: Path, values: str, expected: str) -> None:
    chart = schema_chart(tmp_path, values)
    found = messages(chart)
    assert any(expected in m for m in found), found
    assert all(str(chart / "values.schema.json") in m for m in found)


def test_schema_checked_without_helm_and_skip_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("FLOTILLA_HELM", raising=False)
    chart = schema_chart(tmp_path, "replicas: 0\n")
    result = lint_chart(chart)
    assert [f.field for f in result.errors] == ["values: replicas"]
    assert not result.rendered
    (chart / "values.yaml").write_text("replicas: 1\n")
    cli = runner.invoke(app, ["lint", str(chart)])
    assert cli.exit_code == 0
    assert "not rendered: helm not found (put it on PATH or set FLOTILLA_HELM)" in cli.output


def test_flotilla_helm_names_the_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm_binary: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("FLOTILLA_HELM", str(helm_binary))
    chart = simple_chart(tmp_path, "app", "1.0.0")
    write(chart / "templates" / "broken.yaml", "{{ .Values.x | nosuchfunc }}\n")
    found = messages(chart)
    assert any('function "nosuchfunc" not defined' in m for m in found), found


def test_invalid_schema_is_an_error(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    (chart / "values.schema.json").write_text('{"type": "no-such-type"}')
    assert any("not a valid JSON Schema" in m for m in messages(chart))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ if }}\n", "missing value for if"),
        ("{{ .Values.x.y.z }}\n", "nil pointer evaluating"),
        ("foo: [unclosed\n", "YAML parse error on app/templates/t.yaml"),
        ("apiVersion: v1\nmetadata: {name: x}\n", "t.yaml: kind: missing in rendered object"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", "t.yaml: apiVersion: missing in rendered"),
        ("- a\n- b\n", "cannot unmarshal array into Go value"),
        ("a: &x 1\nb: *y\n", "YAML parse error on app/templates/t.yaml"),
    ],
)
def test_templates_are_rendered_and_checked(tmp_path: Path, template: str, expected: str) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    write(chart / "templates" / "t.yaml", template)
    found = messages(chart)
    assert any(expected in m for m in found), found


def test_rendered_documents_split_and_empty_ones_skipped(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    write(
        chart / "templates" / "t.yaml",
        "{{- if false }}\nkind: X\n{{- end }}\n---\n# only a comment\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nops: [=, '!=']\nx: =\n",
    )
    assert messages(chart) == []


def test_package_and_publish_refuse_what_lint_refuses(tmp_path: Path) -> None:
    chart = schema_chart(tmp_path / "charts", "replicas: 0\n")
    out = tmp_path / "out"
    cli = runner.invoke(app, ["package", str(chart), "-d", str(out)])
    assert cli.exit_code == 1 and "less than the minimum" in cli.output
    assert not out.exists() or not list(out.iterdir())
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(bare))
    with pytest.raises(ChartError, match=r"(?s)nothing published.*less than the minimum"):
        publish(chart, PublishOptions(repo=str(bare), pages_url=URL))
    assert git("--git-dir", str(bare), "branch", "--list").strip() == ""


def test_invalid_values_yaml_is_never_published(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path / "charts", "app", "1.0.0")
    (chart / "values.yaml").write_text("a: [unclosed\n")
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(bare))
    with pytest.raises(ChartError, match=r"values\.yaml.*invalid YAML"):
        publish(chart, PublishOptions(repo=str(bare), pages_url=URL))


@pytest.mark.parametrize("version", ["1.0.0-01", "1.0.0-rc.01", "0.0.0-0"])
def test_versions_helm_refuses_are_refused(tmp_path: Path, version: str, helm: Helm) -> None:
    chart = simple_chart(tmp_path, "app", version)
    assert messages(chart), version
    assert runner.invoke(app, ["package", str(chart), "-d", str(tmp_path)]).exit_code == 1
    assert helm.run("lint", str(chart), check=False).returncode == 1


def v1_chart(root: Path) -> Path:
    chart = write(
        root / "old" / "Chart.yaml", 'apiVersion: v1\nname: old\nversion: "1.0.0"\n'
    ).parent
    write(
        chart / "requirements.yaml",
        "dependencies:\n- name: sub\n  version: 0.1.0\n  repository: https://example.com/c\n",
    )
    return chart


def test_requirements_yaml_of_v1_charts(tmp_path: Path, helm: Helm) -> None:
    chart = v1_chart(tmp_path)
    with pytest.raises(ChartError, match="'sub' is declared but missing from charts/"):
        package_chart(chart)
    assert "missing in charts" in helm.run("package", str(chart), check=False).stderr
    simple_chart(chart / "charts", "sub", "0.1.0")
    packaged = package_chart(chart)
    assert packaged.metadata.dependencies == [
        {"name": "sub", "repository": "https://example.com/c", "version": "0.1.0"}
    ]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    (ours / "old-1.0.0.tgz").write_bytes(packaged.data)
    helm.run("package", str(chart), "-d", str(theirs))
    helm.run("repo", "index", str(theirs))
    helm_entry = idx.load((theirs / "index.yaml").read_bytes()).entries["old"][0]
    loaded = load_archive(theirs / "old-1.0.0.tgz")
    assert loaded.metadata.dependencies == helm_entry.data["dependencies"]
    bad = write(chart / "requirements.yaml", "dependencies:\n- name: a\n  alias: 'b c'\n")
    assert any("alias" in m for m in messages(bad.parent))


def test_kube_version_requirement_renders(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    with (chart / "Chart.yaml").open("a") as f:
        f.write('kubeVersion: ">=1.25.0-0"\n')
    assert messages(chart) == []
    env = dict(os.environ, FLOTILLA_KUBE_VERSION="1.24.0")
    proc = subprocess.run(
        [sys.executable, "-m", "flotilla.charts", "lint", str(chart)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "incompatible with Kubernetes v1.24.0" in proc.stdout


def test_missing_remote_dependency_warns_in_lint_and_fails_package(
    tmp_path: Path, helm: Helm
) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    with (chart / "Chart.yaml").open("a") as f:
        f.write("dependencies:\n- name: db\n  version: 1.0.0\n  repository: https://e.x/c\n")
    result = lint_chart(chart)
    assert result.errors == [] and not result.rendered
    assert any("'db' is declared but missing" in f.message for f in result.findings)
    assert helm.run("lint", str(chart)).returncode == 0  # helm warns too
    cli = runner.invoke(app, ["package", str(chart), "-d", str(tmp_path / "out")])
    assert cli.exit_code == 1 and "'db' is declared but missing" in cli.output
