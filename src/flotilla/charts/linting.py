"""``flotilla charts lint``: Chart.yaml rules, values against values.schema.json, rendering.

What ``helm lint`` catches beyond Chart.yaml: values.yaml that is not a mapping,
values.schema.json that is not a valid schema or that values.yaml breaks (checked with the
``jsonschema`` library, always), templates that do not render (the real ``helm template``, when
helm is on PATH or named by ``FLOTILLA_HELM``; without it the skip is reported), and rendered
documents that are not YAML or lack ``apiVersion`` and ``kind``. ``package`` and ``publish``
run the same checks through :func:`package_checked` and refuse a chart that fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flotilla.charts.bounded import MAX_CHART_FILE_BYTES, load_json, read_bounded
from flotilla.charts.chartfile import ChartMetadata, Finding, Severity
from flotilla.charts.errors import ChartError, InvalidChartError, MissingDependencyError
from flotilla.charts.packaging import PackagedChart, PackageOptions, package_chart, read_metadata
from flotilla.core import yamlload

_BaseLoader: type[Any] = yamlload.SafeLoader


class _RenderedLoader(_BaseLoader):  # type: ignore[misc]
    """Rendered manifests as Go's YAML reads them: a plain ``=`` is a string (YAML 1.1's
    ``value`` tag has no constructor, and CRDs hold ``enum: [=, !=]``)."""


_RenderedLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}

RENDER_TIMEOUT_S = 120
DEFAULT_KUBE_VERSION = "1.34.0"
"""Rendered against this Kubernetes (``FLOTILLA_KUBE_VERSION`` overrides): a helm built without
release ldflags assumes v1.20.0 and refuses charts that need a newer one."""
MAX_RENDERED_BYTES = 64 * 2**20


@dataclass
class LintResult:
    """Findings for one chart, the archive built on the way, and whether templates rendered."""

    findings: list[Finding] = field(default_factory=list)
    packaged: PackagedChart | None = None
    rendered: bool = False
    package_error: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]


def helm_binary() -> str | None:
    """``FLOTILLA_HELM`` when set, else ``helm`` on PATH, else None (rendering is skipped)."""
    return os.environ.get("FLOTILLA_HELM") or shutil.which("helm")


def _load_values(chart_dir: Path, meta: ChartMetadata, out: list[Finding]) -> Any:
    values = chart_dir / "values.yaml"
    if not values.is_file():
        if meta.chart_type != "library":
            out.append(Finding(Severity.INFO, str(values), "", "file does not exist"))
        return {}
    try:
        data = yamlload.load(read_bounded(values, MAX_CHART_FILE_BYTES, "values.yaml"))
    except (yaml.YAMLError, ChartError) as e:
        out.append(Finding(Severity.ERROR, str(values), "", f"invalid YAML: {e}"))
        return None
    if data is not None and not isinstance(data, dict):
        out.append(Finding(Severity.ERROR, str(values), "", "must be a mapping"))
        return None
    return data or {}


def check_values_schema(schema_doc: Any, values: Any, schema_path: str) -> list[Finding]:
    """values.yaml against values.schema.json, each violation with its path in the values."""
    # imported here: paid only by charts that have a schema
    import jsonschema  # type: ignore[import-untyped]
    import referencing.exceptions

    if not isinstance(schema_doc, dict | bool):
        return [Finding(Severity.ERROR, schema_path, "", "a JSON Schema must be an object")]
    validator_cls = jsonschema.validators.validator_for(
        schema_doc, default=jsonschema.Draft7Validator
    )
    try:
        validator_cls.check_schema(schema_doc)
    except jsonschema.SchemaError as e:
        return [Finding(Severity.ERROR, schema_path, "", f"not a valid JSON Schema: {e.message}")]
    findings = []
    try:
        errors = sorted(
            validator_cls(schema_doc).iter_errors(values), key=lambda e: list(e.absolute_path)
        )
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(root)"
            findings.append(
                Finding(Severity.ERROR, schema_path, f"values: {where}", error.message[:500])
            )
    except (referencing.exceptions.Unresolvable, RecursionError) as e:
        findings.append(Finding(Severity.ERROR, schema_path, "", f"cannot resolve: {e}"[:500]))
    return findings


def lint_layout(chart_dir: Path, meta: ChartMetadata) -> list[Finding]:
    """Checks beyond Chart.yaml: values.yaml, values.schema.json, templates/, directory name."""
    findings: list[Finding] = []
    values = _load_values(chart_dir, meta, findings)
    schema = chart_dir / "values.schema.json"
    if schema.is_file():
        try:
            schema_doc = load_json(read_bounded(schema, MAX_CHART_FILE_BYTES, "schema"), "")
        except (ValueError, ChartError) as e:
            findings.append(Finding(Severity.ERROR, str(schema), "", f"invalid JSON: {e}"))
        else:
            if values is not None:
                findings += check_values_schema(schema_doc, values, str(schema))
    templates = chart_dir / "templates"
    if not templates.is_dir() and meta.chart_type != "library":
        findings.append(Finding(Severity.WARNING, str(templates), "", "directory does not exist"))
    if chart_dir.name != meta.name and meta.name:
        findings.append(
            Finding(
                Severity.WARNING,
                str(chart_dir / "Chart.yaml"),
                "name",
                f"directory name {chart_dir.name!r} differs from chart name {meta.name!r}",
            )
        )
    return findings


def check_rendered(output: str, chart_dir: Path) -> list[Finding]:
    """Every document ``helm template`` printed must be a YAML mapping with apiVersion and kind."""
    findings: list[Finding] = []
    for doc in _documents(output):
        sources = [line[10:] for line in doc.splitlines() if line.startswith("# Source: ")]
        source = sources[0] if sources else "rendered output"
        where = str(chart_dir / source.partition("/")[2]) if "/" in source else str(chart_dir)
        try:
            data = yamlload.load(doc, loader=_RenderedLoader)
        except yaml.YAMLError as e:
            findings.append(Finding(Severity.ERROR, where, "", f"rendered YAML is invalid: {e}"))
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            findings.append(Finding(Severity.ERROR, where, "", "rendered object is not a mapping"))
            continue
        for key in ("apiVersion", "kind"):
            if not data.get(key):
                findings.append(Finding(Severity.ERROR, where, key, "missing in rendered object"))
    return findings


def _documents(output: str) -> list[str]:
    parts: list[list[str]] = [[]]
    for line in output.splitlines():
        if line.rstrip() == "---":
            parts.append([])
        else:
            parts[-1].append(line)
    return ["\n".join(p) + "\n" for p in parts if any(s.strip() for s in p)]


def render(packaged: PackagedChart, chart_dir: Path, helm: str) -> list[Finding]:
    """``helm template`` of the packaged archive (dependencies included), then check_rendered."""
    with tempfile.TemporaryDirectory(prefix="flotilla-render-") as tmp:
        archive = Path(tmp) / packaged.metadata.archive_name
        archive.write_bytes(packaged.data)
        try:
            proc = subprocess.run(
                [
                    helm,
                    "template",
                    "flotilla-lint",
                    str(archive),
                    "--namespace=default",
                    "--kube-version="
                    + os.environ.get("FLOTILLA_KUBE_VERSION", DEFAULT_KUBE_VERSION),
                ],
                capture_output=True,
                text=True,
                timeout=RENDER_TIMEOUT_S,
                check=False,
                cwd=tmp,
            )
        except subprocess.TimeoutExpired:
            return [Finding(Severity.ERROR, str(chart_dir), "", "helm template timed out")]
        except OSError as e:
            return [Finding(Severity.ERROR, str(chart_dir), "", f"cannot run {helm}: {e}")]
    if proc.returncode != 0:
        message = proc.stderr.strip().removeprefix("Error: ")
        return [Finding(Severity.ERROR, str(chart_dir), "templates", message[:2000])]
    if len(proc.stdout) > MAX_RENDERED_BYTES:
        return [Finding(Severity.ERROR, str(chart_dir), "templates", "rendered output too large")]
    return check_rendered(proc.stdout, chart_dir)


def lint_chart(chart_dir: Path, options: PackageOptions | None = None) -> LintResult:
    """Every check for one chart directory; packaging problems are reported as errors."""
    result = LintResult()
    chart_yaml = str(chart_dir / "Chart.yaml")
    try:
        meta = read_metadata(chart_dir)
    except ChartError as e:
        result.findings.append(Finding(Severity.ERROR, chart_yaml, "", str(e)))
        return result
    result.findings += [*meta.findings, *lint_layout(chart_dir, meta)]
    if result.errors:
        return result
    try:
        result.packaged = package_chart(chart_dir, options or PackageOptions())
    except MissingDependencyError as e:  # helm lint warns; helm package refuses
        result.package_error = str(e)
        result.findings.append(
            Finding(Severity.WARNING, str(chart_dir), "", f"{e}; templates not rendered")
        )
        return result
    except ChartError as e:
        result.findings.append(Finding(Severity.ERROR, str(chart_dir), "", str(e)))
        return result
    if meta.chart_type == "library":
        return result  # helm renders nothing for a library chart
    helm = helm_binary()
    if helm is None:
        result.findings.append(
            Finding(
                Severity.INFO,
                str(chart_dir / "templates"),
                "",
                "not rendered: helm not found (put it on PATH or set FLOTILLA_HELM)",
            )
        )
        return result
    result.findings += render(result.packaged, chart_dir, helm)
    result.rendered = True
    return result


def lint_directory(chart_dir: Path) -> list[Finding]:
    """All findings for one chart directory (see :func:`lint_chart`)."""
    return lint_chart(chart_dir).findings


def package_checked(chart_dir: Path, options: PackageOptions | None = None) -> PackagedChart:
    """Package ``chart_dir`` only if it lints clean of errors; else raise them all."""
    result = lint_chart(chart_dir, options)
    if result.errors or result.packaged is None:
        errors = [str(f) for f in result.errors] or [result.package_error]
        raise InvalidChartError("\n".join(errors))
    return result.packaged
