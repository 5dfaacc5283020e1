"""Controller plumbing: custom resources as dicts, Events, and list+watch caches."""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import msgspec
from lightkube import Client
from lightkube.core import decoders
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models import meta_v1
from lightkube.resources.core_v1 import Event

from flotilla.core.kube.errors import KubeError, KubeGoneError, kube_errors

# --- Generic helpers for controllers: raw custom resources, events, list+watch caches. ---------


def custom_resource(
    group: str, version: str, kind: str, plural: str, *, namespaced: bool = False
) -> type[Any]:
    """A lightkube resource class for a custom resource whose objects are plain dicts.

    lightkube caches the class by group/version/kind, so calling this twice is cheap and safe.
    """

    factory = create_namespaced_resource if namespaced else create_global_resource
    return factory(group, version, kind, plural)


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-like dict of a lightkube object (typed model or generic resource)."""
    if isinstance(obj, dict) and not hasattr(obj, "to_dict"):
        return obj
    result: dict[str, Any] = obj.to_dict()
    return result


def post_event(
    client: Client,
    involved: dict[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = "flotilla",
) -> None:
    """Record a core/v1 Event on ``involved`` (a dict with apiVersion, kind, metadata).

    Best effort: an event that cannot be written is logged, never raised, because events explain
    decisions and must not change them. Cluster-scoped objects get their events in ``default``.
    """

    meta = involved.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'object')[:200]}.{uuid.uuid4().hex[:16]}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        with kube_errors(f"post event {reason}"):
            client.create(Event.from_dict(body))  # type: ignore[call-overload]
    except KubeError as exc:
        logging.getLogger(__name__).warning("could not record event %s: %s", reason, exc)


class Informer:
    """List and watch one kind into a local cache of dicts, calling ``on_change`` per change.

    The controller pattern in its smallest form: one daemon thread per kind; a broken or expired
    watch (410 Gone) is answered with a fresh list, so the cache never silently misses a change.
    ``on_change(event_type, obj)`` gets ``ADDED``/``MODIFIED``/``DELETED``; on a relist, objects
    that vanished meanwhile are reported as ``DELETED``.
    """

    def __init__(
        self,
        client: Client,
        resource: type[Any],
        *,
        on_change: Callable[[str, dict[str, Any]], None],
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
        name: str = "",
    ) -> None:

        self._client = client
        self._resource = resource
        self._on_change = on_change
        self._namespace = namespace
        self._labels = labels
        self._fields = fields
        self.name = name or resource.__name__
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        warm_up_decoders(resource)

    @staticmethod
    def key_of(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace")
        return f"{ns}/{meta['name']}" if ns else str(meta["name"])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._cache.values())

    def put(self, obj: dict[str, Any]) -> None:
        """Record our own write before the watch echoes it, so decisions see it at once."""
        with self._lock:
            key = self.key_of(obj)
            old = self._cache.get(key)
            if old is None or _newer(obj, old):
                self._cache[key] = obj

    def _list_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"labels": self._labels, "fields": self._fields}
        if issubclass(self._resource, NamespacedResource):
            # lightkube reads None as "the kubeconfig's namespace"; "*" is all namespaces.
            kwargs["namespace"] = self._namespace or "*"
        return kwargs

    def _run(self) -> None:

        log = logging.getLogger(__name__)
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with kube_errors(f"list and watch {self.name}"):
                    self._list_and_watch()
                backoff = 0.5
            except KubeGoneError:
                log.debug("informer %s: watch expired, listing again", self.name)
                backoff = 0.5
            except Exception as exc:  # a watch must survive anything the server throws at it
                if self._stop.is_set():
                    return
                log.info("informer %s restarting after: %s", self.name, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list_and_watch(self) -> None:
        kwargs = self._list_kwargs()
        listing = self._client.list(self._resource, **kwargs)
        fresh = {self.key_of(d): d for d in (to_dict(o) for o in listing)}
        version = listing.resourceVersion if fresh else None
        if version is None:
            # An empty list still carries a version; lightkube only exposes it after iterating.
            try:
                version = listing.resourceVersion
            except Exception:
                version = None
        with self._lock:
            gone = [v for k, v in self._cache.items() if k not in fresh]
            self._cache = dict(fresh)
        for obj in gone:
            self._on_change("DELETED", obj)
        for obj in fresh.values():
            self._on_change("ADDED", obj)
        self.synced.set()
        for kind, raw in self._client.watch(
            self._resource, resource_version=version, server_timeout=30, **kwargs
        ):
            if self._stop.is_set():
                return
            obj = to_dict(raw)
            key = self.key_of(obj)
            with self._lock:
                if kind == "DELETED":
                    self._cache.pop(key, None)
                else:
                    self._cache[key] = obj
            self._on_change(kind, obj)


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return int(a["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return True


def warm_up_decoders(*resources: type[Any]) -> None:
    """Build lightkube's msgspec decoders for ``resources`` now, in the calling thread.

    msgspec builds a class's type information on first use, and building it from several threads
    at once crashed the interpreter here (a segfault in ``msgspec.convert``). Call this from the
    main thread before threads that create, list or watch these kinds start.
    """

    kinds: tuple[type[Any], ...] = (*resources, meta_v1.Status, decoders.WatchEvent)
    for res in kinds:
        with suppress(msgspec.ValidationError, TypeError, ValueError):
            msgspec.convert({}, res)
        with suppress(msgspec.ValidationError, TypeError, ValueError):
            decoders.decode_list(b'{"items": []}', res)
