"""Prometheus metrics of one node agent: pool room and per-volume capacity and usage."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server


class AgentMetrics:
    """Gauges on a private registry, so several agents in one process do not collide."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self.pool_budget = Gauge(
            "flotilla_localpv_pool_budget_bytes",
            "Bytes a pool may promise in total",
            ["node", "backend", "pool"],
            registry=self.registry,
        )
        self.pool_free = Gauge(
            "flotilla_localpv_pool_free_bytes",
            "Bytes free on the pool's filesystem",
            ["node", "backend", "pool"],
            registry=self.registry,
        )
        self.capacity = Gauge(
            "flotilla_localpv_volume_capacity_bytes",
            "Provisioned size of a volume",
            ["node", "volume", "backend"],
            registry=self.registry,
        )
        self.used = Gauge(
            "flotilla_localpv_volume_used_bytes",
            "Bytes used by a volume",
            ["node", "volume", "backend"],
            registry=self.registry,
        )
        self._labels: dict[str, tuple[str, str, str]] = {}

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def pools(self, pools: list[dict[str, Any]]) -> None:
        for p in pools:
            labels = (self.node, str(p["backend"]), str(p["name"]))
            self.pool_budget.labels(*labels).set(p["budget"])
            self.pool_free.labels(*labels).set(p["free"])

    def volume(self, name: str, backend: str, capacity: int, used: int | None) -> None:
        labels = (self.node, name, backend)
        self._labels[name] = labels
        self.capacity.labels(*labels).set(capacity)
        if used is not None:
            self.used.labels(*labels).set(used)

    def forget(self, name: str) -> None:
        labels = self._labels.pop(name, None)
        if labels is not None:
            for gauge in (self.capacity, self.used):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
