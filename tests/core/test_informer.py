"""An informer answers an expired watch (410 Gone) with a fresh list at once, without backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from lightkube import ApiError, Client
from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import ConfigMap

from flotilla.core.kube import Informer


class Listing(list[dict[str, Any]]):
    resourceVersion = "1"  # noqa: N815  (lightkube's name)


class ExpiringClient:
    """Lists one object per call; the first watch expires, the next ones end quietly."""

    def __init__(self) -> None:
        self.lists: list[float] = []
        self.watches = 0
        self.done = threading.Event()

    def list(self, _res: Any, **_kw: Any) -> Listing:
        self.lists.append(time.monotonic())
        n = len(self.lists)
        return Listing(
            [{"metadata": {"name": f"cm-{n}", "namespace": "a", "resourceVersion": str(n)}}]
        )

    def watch(self, _res: Any, **_kw: Any) -> Iterator[tuple[str, Any]]:
        self.watches += 1
        if self.watches == 1:
            raise ApiError(status=Status(code=410, reason="Expired", message="too old"))
        self.done.set()
        time.sleep(0.05)
        yield from ()


def test_an_expired_watch_relists_at_once_and_the_cache_follows() -> None:
    client = ExpiringClient()
    seen: list[tuple[str, str]] = []
    informer = Informer(
        cast(Client, client),
        ConfigMap,
        name="cm",
        on_change=lambda kind, obj: seen.append((kind, obj["metadata"]["name"])),
    )
    informer.start()
    try:
        assert client.done.wait(5)
    finally:
        informer.stop()
    first, second = client.lists[:2]
    assert second - first < 0.4, "no backoff after 410 Gone"
    assert ("DELETED", "cm-1") in seen and ("ADDED", "cm-2") in seen
    assert [o["metadata"]["name"] for o in informer.items()] in (["cm-2"], ["cm-3"])
