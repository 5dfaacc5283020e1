"""YAML documents with line numbers, and the bundle shape: the pure part of reading inputs.

Every mapping keeps the line it starts on (``flotilla.core.yamlload``, with its size and alias
limits), so a finding about one RBAC rule inside a 900-line ClusterServiceVersion points at that
rule, not at the top of the file. Kept apart from ``loading`` (which walks directories and runs
helm) so the pure modules (rules, rbac, catalog, plan) need no subprocess to know a line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.core import yamlload
from flotilla.core.yamlload import LineDict, line_of
from flotilla.operators.models import Manifest, OperatorsError

__all__ = ["Bundle", "InputError", "LineDict", "line_of", "load_yaml_documents"]



class InputError(OperatorsError):
    """An input cannot be read as Kubernetes manifests; the message says which and why."""


def load_yaml_documents(text: str, file: str) -> list[Any]:
    """All documents of a YAML (or JSON) stream with line marks; empty documents dropped."""
    try:
        return [d for d in yamlload.load_all(text, lines=True) if d is not None]
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
