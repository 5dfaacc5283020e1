"""YAML documents with line numbers, and the bundle shape: the pure part of reading inputs.

Every mapping keeps the line it starts on (``flotilla.core.yamlload``, with its size and alias
limits), so a finding about one RBAC rule inside a 900-line ClusterServiceVersion points at that
rule, not at the top of the file. Kept apart from ``loading`` (which walks directories and runs
helm) so the pure modules (rules, rbac, catalog, plan) need no subprocess to know a line number.

Scalars are read as the Kubernetes API reads them (sigs.k8s.io/yaml over go-yaml v2), not as
PyYAML's YAML 1.1 defaults: ``=`` is a string (PyYAML makes it an unconstructible ``!!value``,
which broke every CRD with ``enum: [=, ...]``) and timestamps stay strings. A duplicate key keeps
its last value, as the API server does, and is reported. A document that cannot be read is a
:class:`LoadProblem` with its line; the documents around it are still returned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from flotilla.core import yamlload
from flotilla.core.yamlload import LineDict, LineList, line_of
from flotilla.operators.models import LoadProblem, Manifest, OperatorsError, Source

__all__ = [
    "Bundle",
    "InputError",
    "KubeLoader",
    "LineDict",
    "line_of",
    "load_yaml_documents",
    "read_documents",
    "shift_lines",
]


class InputError(OperatorsError):
    """An input cannot be read as Kubernetes manifests; the message says which and why."""


_DUPLICATES: ContextVar[list[tuple[str, int]] | None] = ContextVar("_DUPLICATES", default=None)
_MERGE = "tag:yaml.org,2002:merge"
_FLATTENED = (_MERGE, "tag:yaml.org,2002:value")
_NOT_KUBE = ("tag:yaml.org,2002:value", "tag:yaml.org,2002:timestamp")


class KubeLoader(yamlload.SafeLoader):  # type: ignore[misc]
    """The safe loader with the API server's scalars, noting duplicate keys."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NOT_KUBE]
        for first, resolvers in yamlload.SafeLoader.yaml_implicit_resolvers.items()
    }

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        collector = _DUPLICATES.get()
        merges = False
        seen: set[str] = set()
        for key_node, _value in node.value:
            if key_node.tag in _FLATTENED:
                merges = True
            elif collector is not None and isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    collector.append((key_node.value, key_node.start_mark.line + 1))
                seen.add(key_node.value)
        if merges:  # PyYAML's own pass only rewrites << and !!value keys: skip it when none
            super().flatten_mapping(node)


def _load(text: str) -> tuple[list[Any], list[tuple[str, int]]]:
    dups: list[tuple[str, int]] = []
    token = _DUPLICATES.set(dups)  # KubeLoader.flatten_mapping notes duplicates here
    try:
        docs = yamlload.load_all(text, loader=KubeLoader, lines=True)
    finally:
        _DUPLICATES.reset(token)
    return [d for d in docs if d is not None], dups


def shift_lines(obj: Any, offset: int) -> None:
    """Add ``offset`` to every line mark in ``obj`` (a document loaded from a later chunk)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, LineDict):
            item.line += offset
            item.key_lines = {k: v + offset for k, v in item.key_lines.items()}
            stack.extend(item.values())
        elif isinstance(item, LineList):
            item.line += offset
            item.item_lines = [v + offset for v in item.item_lines]
            stack.extend(item)
        elif isinstance(item, list):  # the list of documents itself
            stack.extend(item)


def _error_line(exc: yaml.YAMLError) -> int:
    if isinstance(exc, yamlload.YamlLimitError):
        return exc.line
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 0


def _error_text(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yamlload.YamlLimitError):
        return exc.problem
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem:
        return f"{context}: {problem}" if context else str(problem)
    return str(exc).splitlines()[0]


_SEPARATOR = re.compile(r"^---(?:[ \t]*(?:#.*)?)?$")


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Documents split at ``---`` lines, as kubectl's YAML reader does: (first line, text)."""
    start, lines = 1, list[str]()
    for number, line in enumerate(text.split("\n"), 1):
        if _SEPARATOR.match(line):
            yield start, "\n".join(lines)
            start, lines = number + 1, []
        else:
            lines.append(line)
    yield start, "\n".join(lines)


def _json_stream(text: str, file: str, problems: list[LoadProblem]) -> list[Any]:
    """Concatenated JSON values (``{...}{...}``, as ``opm render`` writes), each with its line."""
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        line = text.count("\n", 0, pos) + 1
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            problems.append(LoadProblem(Source(file, exc.lineno), f"not valid JSON: {exc.msg}"))
            return docs
        try:
            loaded, _dups = _load(text[pos:end])
            shift_lines(loaded, line - 1)
            docs.extend(loaded)
        except (yaml.YAMLError, RecursionError):  # JSON YAML cannot read (tabs): no inner lines
            wrapped = LineDict(obj) if isinstance(obj, dict) else obj
            if isinstance(wrapped, LineDict):
                wrapped.line, wrapped.key_lines = line, {}
            docs.append(wrapped)
        pos = end


def read_documents(text: str, file: str) -> tuple[list[Any], list[LoadProblem]]:
    """Every document that can be read, and a problem (with its line) for each that cannot."""
    problems: list[LoadProblem] = []
    try:
        docs, dups = _load(text)
    except yaml.YAMLError as first:
        if text.lstrip()[:1] in ("{", "["):
            return _json_stream(text, file, problems), problems
        docs, dups = [], []
        if not re.search(r"(?m)^---", text):
            message = f"not valid YAML: {_error_text(first)}"
            problems.append(LoadProblem(Source(file, _error_line(first)), message))
            return docs, problems
        for start, chunk in _chunks(text):
            try:
                part, part_dups = _load(chunk)
            except yaml.YAMLError as exc:
                line = start + max(_error_line(exc), 1) - 1
                problems.append(
                    LoadProblem(Source(file, line), f"not valid YAML: {_error_text(exc)}")
                )
                continue
            shift_lines(part, start - 1)
            docs.extend(part)
            dups.extend((key, line + start - 1) for key, line in part_dups)
    for key, line in dups:
        problems.append(
            LoadProblem(
                Source(file, line),
                f"duplicate key {key!r}: the API server keeps the last value",
                rule="duplicate-key",
            )
        )
    return docs, problems


def load_yaml_documents(text: str, file: str) -> list[Any]:
    """All documents of a YAML (or JSON) stream with line marks; raises on the first bad one."""
    docs, problems = read_documents(text, file)
    errors = [p for p in problems if p.rule == "load-error"]
    if errors:
        raise InputError(f"{errors[0].source}: {errors[0].message}")
    return docs


@dataclass
class Bundle:
    """An OLM registry+v1 bundle on disk: its manifests and ``metadata/annotations.yaml``."""

    path: Path
    manifests: list[Manifest]
    annotations: dict[str, str]
    problems: list[LoadProblem] | None = None

    @property
    def package(self) -> str:
        return self.annotations.get("operators.operatorframework.io.bundle.package.v1", "")

    @property
    def csv(self) -> Manifest | None:
        return next((m for m in self.manifests if m.kind == "ClusterServiceVersion"), None)
