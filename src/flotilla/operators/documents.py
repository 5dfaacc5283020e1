"""YAML documents with line numbers, and the bundle shape: the pure part of reading inputs.

Every mapping keeps the line it starts on (PyYAML node marks), so a finding about one RBAC rule
inside a 900-line ClusterServiceVersion points at that rule, not at the top of the file. Kept
apart from ``loading`` (which walks directories and runs helm) so the pure modules (rules, rbac,
catalog, plan) need no subprocess to know a line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.operators.models import Manifest

__all__ = ["Bundle", "InputError", "LineDict", "line_of", "load_yaml_documents"]

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InputError(Exception):
    """An input cannot be read as Kubernetes manifests; the message says which and why."""


class LineDict(dict[str, Any]):
    """A mapping that remembers the (1-based) line it starts on in its file."""

    __slots__ = ("line",)
    line: int


def line_of(obj: object, default: int = 0) -> int:
    """Line of a mapping loaded by this module, or ``default`` for anything else."""
    return getattr(obj, "line", default) if isinstance(obj, LineDict) else default


class _LineLoader(_BaseLoader):  # type: ignore[misc]
    """Safe loader whose mappings are :class:`LineDict` with the node's start line."""


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> LineDict:
    result = LineDict()
    result.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_documents(text: str, file: str) -> list[Any]:
    """All documents of a YAML (or JSON) stream with line marks; empty documents dropped."""
    try:
        return [d for d in yaml.load_all(text, Loader=_LineLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML: {exc}") from exc


@dataclass
class Bundle:
    """An OLM registry+v1 bundle on disk: its manifests and ``metadata/annotations.yaml``."""

    path: Path
    manifests: list[Manifest]
    annotations: dict[str, str]

    @property
    def package(self) -> str:
        return self.annotations.get("operators.operatorframework.io.bundle.package.v1", "")

    @property
    def csv(self) -> Manifest | None:
        return next((m for m in self.manifests if m.kind == "ClusterServiceVersion"), None)
