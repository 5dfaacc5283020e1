"""Bounded reads of files Flotilla did not write: size checked before reading, JSON depth.

Every YAML or JSON file the charts system reads (Chart.yaml, values.yaml, values.schema.json,
requirements.yaml, Chart.lock, index.yaml) comes through here or through an archive reader that
already caps each member, so a 100 MB document is refused from its size alone, before any byte
is read or parsed. YAML alias bombs and nesting are refused by :mod:`flotilla.core.yamlload`
(the fallback reader) and by :mod:`flotilla.charts.yamlread` (the fast reader, which refuses
anchors and deep nesting by handing them to the fallback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flotilla.charts.errors import ChartError
from flotilla.core import yamlload

MAX_INDEX_BYTES = yamlload.DEFAULT_LIMITS.max_bytes
"""index.yaml: 64 MiB holds about 150,000 entries, far above any real repository."""
MAX_CHART_FILE_BYTES = 5 * 2**20
"""Files in a chart (values.yaml, schema, requirements.yaml, Chart.lock): helm's cap."""
MAX_JSON_DEPTH = 256


class TooLargeError(ChartError):
    """A file is over its size limit; refused before reading it."""


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, refused (without reading) when it is larger than ``limit``."""
    with path.open("rb") as f:
        size = path.stat().st_size
        if size > limit:
            raise TooLargeError(f"{path}: {what} of {size} bytes is over the {limit}-byte limit")
        data = f.read(limit + 1)  # the file may grow between stat and read
    if len(data) > limit:
        raise TooLargeError(f"{path}: {what} is over the {limit}-byte limit")
    return data


def check_size(raw: bytes, limit: int, source: str, what: str = "file") -> None:
    """Refuse ``raw`` when it is over ``limit`` bytes (for data that came from git or HTTP)."""
    if len(raw) > limit:
        raise TooLargeError(f"{source}: {what} of {len(raw)} bytes is over the {limit}-byte limit")


def load_json(raw: bytes | str, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON; ValueError (with ``source``) for bad JSON and for nesting over ``max_depth``."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(f"{source}: JSON nested too deeply to read") from None
    if _depth_over(data, max_depth):
        raise ValueError(f"{source}: JSON nested deeper than {max_depth} levels")
    return data


def _depth_over(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
