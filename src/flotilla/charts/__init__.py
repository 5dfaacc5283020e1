"""Helm chart repositories on a static host: lint, package, index, publish to a pages branch.

The public names below are loaded on first use (PEP 562), not when the package is imported:
``flotilla charts lint`` imports this package first, and must not pay for git, gpg and the
index writer before it prints anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.charts.chartfile import ChartMetadata, Finding, Severity, parse_chart_yaml
    from flotilla.charts.errors import ChartError
    from flotilla.charts.index import Index, build_index
    from flotilla.charts.packaging import package_chart
    from flotilla.charts.publishing import PublishOptions, publish

_EXPORTS = {
    "ChartError": "flotilla.charts.errors",
    "ChartMetadata": "flotilla.charts.chartfile",
    "Finding": "flotilla.charts.chartfile",
    "Index": "flotilla.charts.index",
    "PublishOptions": "flotilla.charts.publishing",
    "Severity": "flotilla.charts.chartfile",
    "build_index": "flotilla.charts.index",
    "package_chart": "flotilla.charts.packaging",
    "parse_chart_yaml": "flotilla.charts.chartfile",
    "publish": "flotilla.charts.publishing",
}

__all__ = [
    "ChartError",
    "ChartMetadata",
    "Finding",
    "Index",
    "PublishOptions",
    "Severity",
    "build_index",
    "package_chart",
    "parse_chart_yaml",
    "publish",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
