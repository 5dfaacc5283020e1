"""Prometheus metrics: counters fed by the check-in path, fleet gauges computed at scrape time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flotilla.updates.server.store import Observer

FleetCounts = Callable[[], list[tuple[str, str, str, str, int]]]
KnownVersions = Callable[[], set[tuple[str, str]]]
OTHER = "other"
"""The label of every version no package has: clients choose versions, so labels stay bounded."""


def bounded(
    rows: list[tuple[str, str, str, str, int]], known: set[tuple[str, str]]
) -> list[tuple[str, str, str, str, int]]:
    """Rows with unknown (app, version) pairs folded into ``other``, counts summed."""
    out: dict[tuple[str, str, str, str], int] = {}
    for app, channel, version, status, n in rows:
        key = (app, channel, version if (app, version) in known else OTHER, status)
        out[key] = out.get(key, 0) + n
    return [(*k, n) for k, n in out.items()]


class _FleetCollector(Collector):
    """``flotilla_updates_instances{app,channel,version,status}`` over the live fleet.

    The GROUP BY is cached for ``ttl`` seconds, so frequent scrapes of a large fleet stay cheap.
    """

    def __init__(self, counts: FleetCounts, ttl: float, known: KnownVersions | None) -> None:
        self._counts = counts
        self._known = known
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[tuple[str, str, str, str, int]]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                rows = self._counts()
                if self._known is not None:
                    rows = bounded(rows, self._known())
                self._cached = (now, rows)
            rows = self._cached[1]
        g = GaugeMetricFamily(
            "flotilla_updates_instances",
            "Instances seen in the last day, by application, channel, version and status.",
            labels=["app", "channel", "version", "status"],
        )
        for app, channel, version, status, n in rows:
            g.add_metric([app, channel, version, status], n)
        yield g


class Metrics:
    """One registry per server, so tests and several servers in one process never collide."""

    def __init__(
        self, fleet_counts: FleetCounts, ttl: float = 15.0, known: KnownVersions | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        self.grants = Counter(
            "flotilla_updates_grants", "Updates granted.", ["app", "group"], registry=self.registry
        )
        self.failures = Counter(
            "flotilla_updates_failures",
            "Instances reporting a failed update.",
            ["app", "group"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "flotilla_updates_refusals",
            "Update checks refused by policy, by reason.",
            ["app", "group", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "flotilla_updates_omaha_requests",
            "Omaha requests by HTTP status code.",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flotilla_updates_omaha_request_seconds",
            "Time to answer an Omaha request.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.registry.register(_FleetCollector(fleet_counts, ttl, known))

    def observer(self) -> Observer:
        """Hooks for :class:`flotilla.updates.server.store.Store`."""
        return Observer(
            on_grant=lambda app, group: self.grants.labels(app, group).inc(),
            on_failure=lambda app, group: self.failures.labels(app, group).inc(),
            on_refusal=lambda app, group, why: self.refusals.labels(app, group, why).inc(),
        )
