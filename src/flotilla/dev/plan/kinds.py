"""Workloads of kinds Tilt does not know by itself: ``k8s_kind`` and ``k8s_image_json_path``.

A rule names a kind (and optionally an apiVersion) and the JSONPath expressions, as Tilt writes
them (``{.spec.image}``, ``{.spec.containers[*].image}``), where the object keeps image refs.
Without paths every string field called ``image`` counts, which fits most custom resources.
Pure functions over plain dicts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from flotilla.dev.plan.manifests import exact_names, refers_to

Rule = tuple[str, str, tuple[str, ...]]  # (kind, api_version, json paths)
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\*|\d+)\]")


def rule_for(obj: dict[str, Any], rules: list[Rule]) -> Rule | None:
    """The last rule whose kind (and apiVersion, when given) matches ``obj``."""
    hit = None
    for kind, api, paths in rules:
        if str(obj.get("kind", "")).lower() == kind.lower() and (
            not api or str(obj.get("apiVersion", "")) == api
        ):
            hit = (kind, api, paths)
    return hit


def _steps(path: str) -> list[str | int]:
    text = path.strip().removeprefix("{").removesuffix("}").strip()
    steps: list[str | int] = []
    for m in _STEP.finditer(text):
        if m.group(1) is not None:
            steps.append(m.group(1))
        else:
            steps.append(-1 if m.group(2) == "*" else int(m.group(2)))
    return steps


def _slots(node: Any, steps: list[str | int]) -> Iterator[tuple[Any, Any]]:
    """(container, key) pairs a path reaches, so the value can be read and replaced."""
    if not steps:
        return
    head, rest = steps[0], steps[1:]
    keys: list[Any]
    if isinstance(head, str):
        keys = [head] if isinstance(node, dict) and head in node else []
    elif isinstance(node, list):
        keys = list(range(len(node))) if head == -1 else ([head] if head < len(node) else [])
    else:
        keys = []
    for k in keys:
        if rest:
            yield from _slots(node[k], rest)
        else:
            yield node, k


def _image_fields(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "image" and isinstance(v, str):
                yield node, k
            else:
                yield from _image_fields(v)
    elif isinstance(node, list):
        for v in node:
            yield from _image_fields(v)


def _all_slots(obj: dict[str, Any], paths: tuple[str, ...]) -> Iterator[tuple[Any, Any]]:
    if not paths:
        yield from _image_fields(obj)
    for p in paths:
        yield from _slots(obj, _steps(p))


def images_used(obj: dict[str, Any], paths: tuple[str, ...], candidates: list[str]) -> list[str]:
    """Which build refs the object names at ``paths``."""
    found: list[str] = []
    exact = exact_names(candidates)
    for parent, key in _all_slots(obj, paths):
        value = parent[key]
        for cand in candidates:
            if isinstance(value, str) and refers_to(value, cand, exact) and cand not in found:
                found.append(cand)
    return found


def inject(obj: dict[str, Any], paths: tuple[str, ...], built: dict[str, str]) -> dict[str, Any]:
    """A copy of ``obj`` with the refs at ``paths`` replaced by the built ones."""
    out = copy.deepcopy(obj)
    exact = exact_names(built)
    for parent, key in list(_all_slots(out, paths)):
        for declared, final in built.items():
            if isinstance(parent[key], str) and refers_to(parent[key], declared, exact):
                parent[key] = final
                break
    return out
