"""``flotilla charts lint``: Chart.yaml rules plus the layout and values checks helm lint makes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from flotilla.charts.chartfile import ChartMetadata, Finding, Severity
from flotilla.charts.errors import ChartError
from flotilla.charts.packaging import PackageOptions, package_chart, read_metadata
from flotilla.core import yamlload


def lint_layout(chart_dir: Path, meta: ChartMetadata) -> list[Finding]:
    """Checks beyond Chart.yaml: values.yaml and values.schema.json parse, templates exist."""
    findings: list[Finding] = []
    values = chart_dir / "values.yaml"
    if values.is_file():
        try:
            data = yamlload.load(values.read_bytes())
        except yaml.YAMLError as e:
            findings.append(Finding(Severity.ERROR, str(values), "", f"invalid YAML: {e}"))
        else:
            if data is not None and not isinstance(data, dict):
                findings.append(Finding(Severity.ERROR, str(values), "", "must be a mapping"))
    elif meta.chart_type != "library":
        findings.append(Finding(Severity.INFO, str(values), "", "file does not exist"))
    schema = chart_dir / "values.schema.json"
    if schema.is_file():
        try:
            json.loads(schema.read_bytes())
        except ValueError as e:
            findings.append(Finding(Severity.ERROR, str(schema), "", f"invalid JSON: {e}"))
    templates = chart_dir / "templates"
    if not templates.is_dir() and meta.chart_type != "library":
        findings.append(Finding(Severity.WARNING, str(templates), "", "directory does not exist"))
    if chart_dir.name != meta.name and meta.name:
        findings.append(Finding(
            Severity.WARNING, str(chart_dir / "Chart.yaml"), "name",
            f"directory name {chart_dir.name!r} differs from chart name {meta.name!r}",
        ))
    return findings


def lint_directory(chart_dir: Path) -> list[Finding]:
    """All findings for one chart directory; packaging problems are reported as errors."""
    chart_yaml = str(chart_dir / "Chart.yaml")
    try:
        meta = read_metadata(chart_dir)
    except ChartError as e:
        return [Finding(Severity.ERROR, chart_yaml, "", str(e))]
    findings = [*meta.findings, *lint_layout(chart_dir, meta)]
    if not any(f.severity is Severity.ERROR for f in findings):
        try:
            package_chart(chart_dir, PackageOptions())
        except ChartError as e:
            findings.append(Finding(Severity.ERROR, str(chart_dir), "", str(e)))
    return findings
