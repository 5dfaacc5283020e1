"""Helm chart repositories on a static host: lint, package, index, publish to a pages branch."""

from flotilla.charts.chartfile import ChartMetadata, Finding, Severity, parse_chart_yaml
from flotilla.charts.errors import ChartError
from flotilla.charts.index import Index, build_index
from flotilla.charts.packaging import package_chart
from flotilla.charts.publishing import PublishOptions, publish

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
