"""Chart.yaml: parse it like helm's loader and check it like ``helm lint``.

Pure functions over bytes and dataclasses. The parse keeps helm's typing rules: every Chart.yaml
field is a string except ``deprecated`` and a dependency's ``enabled``, unquoted numbers keep
their source text (``1.10`` stays ``"1.10"``), and unknown keys are dropped (helm's strict index
loader would reject an index that carried them).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from flotilla.charts import versions, yamlread
from flotilla.charts.errors import InvalidChartError
from flotilla.core import yamlload

METADATA_STRINGS = (
    "name",
    "home",
    "version",
    "description",
    "icon",
    "apiVersion",
    "condition",
    "tags",
    "appVersion",
    "kubeVersion",
    "type",
)
METADATA_STRING_LISTS = ("sources", "keywords")
METADATA_FIELDS = frozenset(
    (
        *METADATA_STRINGS,
        *METADATA_STRING_LISTS,
        "maintainers",
        "deprecated",
        "annotations",
        "dependencies",
    )
)
MAINTAINER_FIELDS = ("name", "email", "url")
DEPENDENCY_STRINGS = ("name", "version", "repository", "condition", "alias")
DEPENDENCY_FIELDS = frozenset((*DEPENDENCY_STRINGS, "tags", "enabled", "import-values"))
CHART_TYPES = ("", "application", "library")
MAX_CHART_YAML_BYTES = 1 << 20

_ALIAS = re.compile(r"^[a-zA-Z0-9_-]+\Z")
_CONVENTIONAL_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+\Z")
_NEEDS_SANITIZING = re.compile(r"[^\x20-\x7e]")


class Severity(enum.IntEnum):
    """helm lint's levels; only ERROR blocks packaging and publishing."""

    INFO = 1
    WARNING = 2
    ERROR = 3


@dataclass(frozen=True)
class Finding:
    """One lint message, naming the file and field so the user can go straight to it."""

    severity: Severity
    path: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: {self.field}" if self.field else self.path
        return f"[{self.severity.name}] {where}: {self.message}"


@dataclass(frozen=True)
class ChartMetadata:
    """Chart.yaml as helm's ``chart.Metadata`` sees it; ``fields`` is what goes into index.yaml."""

    fields: dict[str, Any]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def name(self) -> str:
        return str(self.fields.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.fields.get("version", ""))

    @property
    def api_version(self) -> str:
        return str(self.fields.get("apiVersion", ""))

    @property
    def chart_type(self) -> str:
        return str(self.fields.get("type", ""))

    @property
    def dependencies(self) -> list[dict[str, Any]]:
        deps = self.fields.get("dependencies", [])
        return deps if isinstance(deps, list) else []

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def archive_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def sanitize(text: str) -> str:
    """helm turns every Unicode space into ' ' and drops non-printable characters."""
    if not _NEEDS_SANITIZING.search(text):
        return text
    return "".join(" " if c.isspace() else c for c in text if c.isspace() or c.isprintable())


class _Collector:
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []

    def add(self, severity: Severity, field_name: str, message: str) -> None:
        self.findings.append(Finding(severity, self.path, field_name, message))


def _node_to_data(node: yaml.Node, out: _Collector, where: str, depth: int = 0) -> Any:
    """Plain data from a YAML node, scalars kept as their source text (sigs.k8s.io/yaml does so)."""
    if depth > 20:
        raise InvalidChartError(f"{out.path}: {where}: nesting deeper than 20 levels")
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:null":
            return None
        if node.tag == "tag:yaml.org,2002:bool":
            return node.value.lower() in ("true", "yes", "on", "y")
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_data(v, out, f"{where}[{i}]", depth + 1) for i, v in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in result:
                out.add(Severity.ERROR, f"{where}.{key}".lstrip("."), "duplicate key")
            result[key] = _node_to_data(value_node, out, f"{where}.{key}".lstrip("."), depth + 1)
        return result
    raise InvalidChartError(f"{out.path}: {where}: unsupported YAML node")


def _scalar_tag(root: yaml.Node, key: str) -> str | None:
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if key_node.value == key and isinstance(value_node, yaml.ScalarNode):
            tag = str(value_node.tag)
            return None if tag == "tag:yaml.org,2002:null" else tag
    return None


def _plain_tag(data: Any, key: str) -> str | None:
    """For the fast reader's output: the YAML type an unquoted value would have had."""
    if not isinstance(data, dict) or key not in data:
        return None
    value = data[key]
    if isinstance(value, bool):
        return "tag:yaml.org,2002:bool"
    if isinstance(value, yamlread.Plain):
        return yamlread.plain_tag(value)
    return "tag:yaml.org,2002:str" if isinstance(value, str) else None


def _unplain(value: Any) -> Any:
    """Plain strings back to ``str``, so YAML dumpers and pickling see ordinary data."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _unplain(v) for k, v in value.items()}
    return value


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return sanitize(str(value))


def _string_list(value: Any, out: _Collector, name: str) -> list[str]:
    if not isinstance(value, list):
        out.add(Severity.ERROR, name, "must be a list of strings")
        return []
    return [_as_str(v) for v in value if v is not None]


def _normalize_maintainers(value: Any, out: _Collector) -> list[dict[str, str]]:
    if not isinstance(value, list):
        out.add(Severity.ERROR, "maintainers", "must be a list")
        return []
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            out.add(Severity.ERROR, f"maintainers[{i}]", "must be a mapping (name, email, url)")
            continue
        result.append(
            {k: _as_str(item[k]) for k in MAINTAINER_FIELDS if item.get(k) not in (None, "")}
        )
    return result


def _normalize_dependency(item: Any, i: int, out: _Collector) -> dict[str, Any] | None:
    where = f"dependencies[{i}]"
    if not isinstance(item, dict):
        out.add(Severity.ERROR, where, "must be a mapping")
        return None
    for key in item:
        if key not in DEPENDENCY_FIELDS:
            out.add(Severity.WARNING, f"{where}.{key}", "unknown field, ignored")
    dep: dict[str, Any] = {
        "name": _as_str(item.get("name") or ""),
        "repository": _as_str(item.get("repository") or ""),
    }
    for key in ("version", "condition", "alias"):
        if item.get(key) not in (None, ""):
            dep[key] = _as_str(item[key])
    if item.get("tags"):
        dep["tags"] = _string_list(item["tags"], out, f"{where}.tags")
    if item.get("enabled") is True:
        dep["enabled"] = True
    if item.get("import-values"):
        if isinstance(item["import-values"], list):
            dep["import-values"] = item["import-values"]
        else:
            out.add(Severity.ERROR, f"{where}.import-values", "must be a list")
    return dep


def _normalize(data: dict[str, Any], out: _Collector) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key not in METADATA_FIELDS:
            out.add(Severity.WARNING, key, "unknown field, ignored by helm")
            continue
        if value is None or value == "" or value == []:
            continue
        if key in METADATA_STRINGS:
            if isinstance(value, (dict, list)):
                out.add(Severity.ERROR, key, "must be a string")
                continue
            fields[key] = _as_str(value)
        elif key in METADATA_STRING_LISTS:
            fields[key] = _string_list(value, out, key)
        elif key == "deprecated":
            if value is True:
                fields[key] = True
            elif value is not False:
                out.add(Severity.ERROR, key, "must be true or false")
        elif key == "annotations":
            if not isinstance(value, dict):
                out.add(Severity.ERROR, key, "must be a mapping of strings to strings")
                continue
            # helm sanitizes every string field except annotations (newlines stay).
            fields[key] = {
                str(k): v if isinstance(v, str) else _as_str(v)
                for k, v in value.items()
                if v is not None
            }
        elif key == "maintainers":
            fields[key] = _normalize_maintainers(value, out)
        elif key == "dependencies":
            if not isinstance(value, list):
                out.add(Severity.ERROR, key, "must be a list")
                continue
            deps = [_normalize_dependency(d, i, out) for i, d in enumerate(value)]
            fields[key] = [d for d in deps if d is not None]
    return {k: v for k, v in fields.items() if v not in ("", [], {})}


def parse_chart_yaml(raw: bytes, path: str = "Chart.yaml") -> ChartMetadata:
    """Parse and validate Chart.yaml; findings carry every problem, errors included."""
    out = _Collector(path)
    if len(raw) > MAX_CHART_YAML_BYTES:
        raise InvalidChartError(f"{path}: larger than {MAX_CHART_YAML_BYTES} bytes")
    tags: dict[str, str | None]
    try:
        data = yamlread.load(raw.decode("utf-8"), keep_plain=True)
        tags = {key: _plain_tag(data, key) for key in ("version", "appVersion")}
        data = _unplain(data)
    except (yamlread.UnsupportedYamlError, UnicodeDecodeError):
        try:
            root = yamlload.compose(raw)
        except yaml.YAMLError as e:
            raise InvalidChartError(f"{path}: invalid YAML: {e}") from e
        except RecursionError as e:
            raise InvalidChartError(f"{path}: nesting too deep") from e
        data = None if root is None else _node_to_data(root, out, "")
        tags = {
            key: _scalar_tag(root, key) if root is not None else None
            for key in ("version", "appVersion")
        }
    if data is None:
        raise InvalidChartError(f"{path}: file is empty")
    if not isinstance(data, dict):
        raise InvalidChartError(f"{path}: must be a YAML mapping, not {type(data).__name__}")
    fields = _normalize(data, out)
    for key, tag in tags.items():
        if tag is not None and tag != "tag:yaml.org,2002:str":
            kind = tag.rsplit(":", 1)[-1]
            out.add(Severity.ERROR, key, f"must be a string, but it is a YAML {kind}; quote it")
    _validate(fields, out)
    return ChartMetadata(fields, tuple(out.findings))


def _validate(fields: dict[str, Any], out: _Collector) -> None:
    """helm's ``Metadata.Validate`` (errors) plus the ``helm lint`` chartfile rules."""
    api = fields.get("apiVersion", "")
    if not api:
        out.add(Severity.ERROR, "apiVersion", "is required")
    elif api not in ("v1", "v2"):
        out.add(Severity.ERROR, "apiVersion", f"{api!r} is not valid; use v2")
    elif api == "v1":
        out.add(Severity.WARNING, "apiVersion", "v1 is deprecated; use v2")
    name = fields.get("name", "")
    if not name:
        out.add(Severity.ERROR, "name", "is required")
    elif name in (".", "..") or "/" in name or "\\" in name:
        out.add(Severity.ERROR, "name", f"chart name {name!r} is invalid")
    elif not _CONVENTIONAL_NAME.match(name):
        out.add(
            Severity.WARNING,
            "name",
            f"{name!r} breaks the naming convention: lower-case letters, digits and '-'",
        )
    _validate_version(fields.get("version", ""), out)
    chart_type = fields.get("type", "")
    if chart_type not in CHART_TYPES:
        out.add(Severity.ERROR, "type", f"{chart_type!r} is invalid; use application or library")
    if api == "v1":
        for key in ("dependencies", "type"):
            if key in fields:
                out.add(Severity.ERROR, key, "is only allowed with apiVersion v2")
    for i, m in enumerate(fields.get("maintainers", [])):
        if not m.get("name"):
            out.add(Severity.ERROR, f"maintainers[{i}].name", "each maintainer needs a name")
        if m.get("email") and not _EMAIL.match(m["email"]):
            out.add(Severity.ERROR, f"maintainers[{i}].email", f"{m['email']!r} is not an email")
        if m.get("url") and not _URL.match(m["url"]):
            out.add(Severity.ERROR, f"maintainers[{i}].url", f"{m['url']!r} is not a URL")
    for i, src in enumerate(fields.get("sources", [])):
        if not _URL.match(src):
            out.add(Severity.ERROR, f"sources[{i}]", f"{src!r} is not a URL")
    icon = fields.get("icon", "")
    if not icon:
        out.add(Severity.INFO, "icon", "is recommended")
    elif not _URL.match(icon):
        out.add(Severity.ERROR, "icon", f"{icon!r} is not a URL")
    _validate_dependencies(fields.get("dependencies", []), out)


def _validate_version(version: str, out: _Collector) -> None:
    if not version:
        out.add(Severity.ERROR, "version", "is required")
    elif versions.parse(version) is None:
        out.add(Severity.ERROR, "version", f"{version!r} is not a valid SemVer 2 version")
    elif not versions.above_zero(version):
        out.add(Severity.ERROR, "version", f"{version!r} must be greater than 0.0.0-0")
    elif not versions.is_strict(version):
        out.add(
            Severity.WARNING, "version", f"{version!r} is not strict SemVer 2 (MAJOR.MINOR.PATCH)"
        )


def _validate_dependencies(deps: list[dict[str, Any]], out: _Collector) -> None:
    seen: set[str] = set()
    for i, dep in enumerate(deps):
        where = f"dependencies[{i}]"
        if not dep.get("name"):
            out.add(Severity.ERROR, f"{where}.name", "is required")
        if not dep.get("version"):
            out.add(Severity.WARNING, f"{where}.version", "no version range; any version matches")
        alias = dep.get("alias", "")
        if alias and not _ALIAS.match(alias):
            out.add(Severity.ERROR, f"{where}.alias", f"{alias!r} must match [a-zA-Z0-9_-]+")
        key = alias or dep.get("name", "")
        if key in seen:
            out.add(Severity.ERROR, where, f"more than one dependency with name or alias {key!r}")
        seen.add(key)
        repo = dep.get("repository", "")
        if repo and not (repo.startswith(("file://", "oci://", "@", "alias:")) or _URL.match(repo)):
            out.add(Severity.ERROR, f"{where}.repository", f"{repo!r} is not a URL or alias")


def load_strict(raw: bytes, path: str = "Chart.yaml") -> ChartMetadata:
    """Parse and raise on the first error: what ``package`` and ``index`` need."""
    meta = parse_chart_yaml(raw, path)
    if meta.errors:
        raise InvalidChartError("; ".join(str(f) for f in meta.errors))
    return meta


def merge_requirements(meta: ChartMetadata, raw: bytes, path: str) -> ChartMetadata:
    """``meta`` with the dependencies of requirements.yaml, as helm's loader reads them.

    helm unmarshals requirements.yaml over the metadata: for ``apiVersion: v1`` charts that is
    where dependencies live; a v2 chart that still has one gets them too, with helm's warning.
    """
    out = _Collector(path)
    if len(raw) > MAX_CHART_YAML_BYTES:
        raise InvalidChartError(f"{path}: larger than {MAX_CHART_YAML_BYTES} bytes")
    try:
        data = yamlload.load(raw)
    except yaml.YAMLError as e:
        raise InvalidChartError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return meta
    if not isinstance(data, dict):
        raise InvalidChartError(f"{path}: must be a YAML mapping, not {type(data).__name__}")
    value = data.get("dependencies")
    if value is None:
        return meta
    if not isinstance(value, list):
        raise InvalidChartError(f"{path}: dependencies must be a list")
    normalized = (_normalize_dependency(item, i, out) for i, item in enumerate(value))
    deps = [d for d in normalized if d is not None]
    _validate_dependencies(deps, out)
    if meta.api_version != "v1":
        out.add(Severity.WARNING, "", "dependencies belong in Chart.yaml since apiVersion v2")
    fields = dict(meta.fields)
    if deps:
        fields["dependencies"] = deps
    else:
        fields.pop("dependencies", None)
    return ChartMetadata(fields, (*meta.findings, *out.findings))
