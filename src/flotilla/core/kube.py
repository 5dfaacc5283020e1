"""The one place that talks to the Kubernetes API.

Systems describe objects with lightkube's typed resources and go through these helpers, so
error mapping and client construction live here and the client library can be swapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, Client, KubeConfig
from lightkube.core.resource import GlobalResource, NamespacedResource

__all__ = [
    "KubeConflictError",
    "KubeError",
    "KubeNotFoundError",
    "apply_raw",
    "client_from_kubeconfig",
    "delete_raw",
    "get_raw",
    "kube_errors",
    "list_raw",
    "resource_type",
    "service_proxy",
    "wait_until",
]

T = TypeVar("T")
Resource = GlobalResource | NamespacedResource


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Unreachable, throttled or server-side failures are worth another try; 4xx are not."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class KubeNotFoundError(KubeError):
    """The object does not exist (404)."""


class KubeConflictError(KubeError):
    """The object exists already or changed underneath us (409)."""


@contextmanager
def kube_errors(action: str) -> Iterator[None]:
    """Map lightkube and transport failures to our hierarchy, naming what we were doing.

    lightkube 1.x talks through ``httpx2`` (its fork of httpx), so those are the transport errors.
    """
    try:
        yield
    except ApiError as exc:
        code = int(exc.status.code or 0)
        message = f"{action}: {exc.status.message or exc}"
        if code == 404:
            raise KubeNotFoundError(message, code) from exc
        if code == 409:
            raise KubeConflictError(message, code) from exc
        raise KubeError(message, code) from exc
    except httpx2.TransportError as exc:
        raise KubeError(f"{action}: API server unreachable ({exc})") from exc


def client_from_kubeconfig(path: Path, *, timeout: float = 30.0) -> Client:
    """A client for the kubeconfig file at ``path`` (its current context)."""
    config = KubeConfig.from_file(str(path))
    return Client(config=config, timeout=httpx2.Timeout(timeout), field_manager="flotilla")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
) -> T:
    """Poll ``check`` until it returns something other than None; name ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result is not None:
                return result
        except KubeError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def object_name(obj: Any) -> str:
    """``namespace/name`` or ``name`` of a lightkube object, for messages."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


# --- Generic helpers for controllers: raw custom resources, events, list+watch caches. ---------


def custom_resource(
    group: str, version: str, kind: str, plural: str, *, namespaced: bool = False
) -> type[Any]:
    """A lightkube resource class for a custom resource whose objects are plain dicts.

    lightkube caches the class by group/version/kind, so calling this twice is cheap and safe.
    """
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

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
    import datetime
    import logging
    import uuid

    from lightkube.resources.core_v1 import Event

    meta = involved.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'object')[:200]}.{uuid.uuid4().hex[:16]}",
                     "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"), "kind": involved.get("kind"),
            "name": meta.get("name"), "namespace": meta.get("namespace"),
            "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion"),
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
        import threading

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
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}",
                                        daemon=True)

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
        import logging

        log = logging.getLogger(__name__)
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._list_and_watch()
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
        for kind, raw in self._client.watch(self._resource, resource_version=version,
                                            server_timeout=30, **kwargs):
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


# --- Raw objects -------------------------------------------------------------------------------
# Systems that handle manifests they did not write (bundles, charts) apply them as plain dicts.
# Built-in kinds resolve through lightkube's registry; custom kinds need their plural and scope
# (from the CRD that defines them).


def resource_type(
    api_version: str, kind: str, *, plural: str | None = None, namespaced: bool | None = None
) -> type[Resource]:
    """The lightkube resource class for ``api_version``/``kind``.

    Built-in kinds need nothing else; for custom kinds pass ``plural`` and ``namespaced``.
    """
    from lightkube.core.exceptions import LoadResourceError
    from lightkube.core.resource_registry import resource_registry
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

    known = resource_registry.get(api_version, kind)
    if known is not None:
        return known
    if plural is None:
        try:
            return resource_registry.load(api_version, kind)
        except (LoadResourceError, ImportError, AttributeError) as exc:
            raise KubeError(f"unknown kind {api_version}/{kind}: pass plural and scope") from exc
    group, _, version = api_version.rpartition("/")
    if namespaced:
        return create_namespaced_resource(group, version, kind, plural)
    return create_global_resource(group, version, kind, plural)


@contextmanager
def _raw_errors(action: str) -> Iterator[None]:
    """``kube_errors`` plus HTTP status errors, which lightkube's list iterator raises as is."""
    with kube_errors(action):
        try:
            yield
        except httpx2.HTTPStatusError as exc:
            code = exc.response.status_code
            cls = KubeNotFoundError if code == 404 else KubeError
            raise cls(f"{action}: HTTP {code}", code) from exc


def _as_dict(obj: Any) -> dict[str, Any]:
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(result)


def _is_namespaced(res: type[Resource]) -> bool:
    return issubclass(res, NamespacedResource)


def apply_raw(
    client: Client,
    obj: dict[str, Any],
    *,
    plural: str | None = None,
    namespaced: bool | None = None,
    force: bool = True,
    field_manager: str = "flotilla",
) -> dict[str, Any]:
    """Server-side apply of a manifest given as a dict; returns the object as stored.

    ``force`` takes over fields another manager owns, as ``kubectl apply --server-side
    --force-conflicts`` does: the caller is the declared owner of these objects.
    """
    from lightkube.types import PatchType

    res = resource_type(str(obj["apiVersion"]), str(obj["kind"]), plural=plural,
                        namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "") or None if _is_namespaced(res) else None
    with _raw_errors(f"apply {obj['kind']} {namespace + '/' if namespace else ''}{name}"):
        stored = api.patch(res, name, obj, namespace=namespace,
                           patch_type=PatchType.APPLY, field_manager=field_manager, force=force)
    return _as_dict(stored)


def get_raw(
    client: Client, api_version: str, kind: str, name: str, *, namespace: str | None = None,
    plural: str | None = None, namespaced: bool | None = None,
) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    try:
        with _raw_errors(f"get {kind} {name}"):
            if _is_namespaced(res):
                return _as_dict(api.get(res, name, namespace=namespace))
            return _as_dict(api.get(res, name))
    except KubeNotFoundError:
        return None


def list_raw(
    client: Client, api_version: str, kind: str, *, namespace: str | None = None,
    labels: dict[str, str] | None = None, plural: str | None = None,
    namespaced: bool | None = None,
) -> list[dict[str, Any]]:
    """Objects of a kind as dicts; ``namespace=None`` lists all namespaces for namespaced kinds."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    with _raw_errors(f"list {kind}"):
        if _is_namespaced(res):
            items = api.list(res, namespace=namespace or "*", labels=labels)
        else:
            items = api.list(res, labels=labels)
        return [_as_dict(i) for i in items]


def delete_raw(
    client: Client, api_version: str, kind: str, name: str, *, namespace: str | None = None,
    plural: str | None = None, namespaced: bool | None = None,
) -> bool:
    """Delete (background propagation); False when it was already gone."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    try:
        with _raw_errors(f"delete {kind} {name}"):
            if _is_namespaced(res):
                api.delete(res, name, namespace=namespace)
            else:
                api.delete(res, name)
    except KubeNotFoundError:
        return False
    return True


def create_raw(client: Client, resource: type[Any], body: dict[str, Any]) -> dict[str, Any]:
    """Create an object given as a plain dict; returns the stored object as a dict.

    Errors are mapped like :func:`kube_errors` (an existing object is :class:`KubeConflictError`).
    """
    name = body.get("metadata", {}).get("name", "?")
    with _raw_errors(f"create {body.get('kind', resource.__name__)} {name}"):
        created = client.create(resource.from_dict(body))
    return to_dict(created)



def client_from_environment(*, timeout: float = 30.0) -> Client:
    """A client from the pod's service account when in a cluster, else ``$KUBECONFIG``."""
    config = KubeConfig.from_env()
    return Client(config=config, timeout=httpx2.Timeout(timeout), field_manager="flotilla")


# --- Pod exec, port-forward and logs -----------------------------------------------------------
# lightkube has no exec/port-forward (they need SPDY/websocket streams), so these go through
# kubectl with the same kubeconfig: API server → kubelet → container runtime, as for any client.


def kubectl_binary() -> str:
    """``$FLOTILLA_KUBECTL``, ``kubectl`` on ``$PATH``, or the one ``testenv build`` made."""
    import glob
    import os
    import shutil

    found = os.environ.get("FLOTILLA_KUBECTL") or shutil.which("kubectl")
    if found:
        return found
    hits = sorted(glob.glob(os.path.expanduser("~/.cache/flotilla/k8s/*/bin/kubectl")))
    if not hits:
        raise KubeError("kubectl not found: install it or set FLOTILLA_KUBECTL")
    return hits[-1]


def exec_in_pod(
    kubeconfig: Path, namespace: str, pod: str, command: list[str], *,
    container: str | None = None, stdin: bytes | None = None, timeout: float = 120.0,
) -> tuple[int, bytes]:
    """Run ``command`` in a pod's container (stdin piped when given); (exit code, output).

    Exit code 0 is success; the command's own failures come back as its exit code with its
    combined output, transport failures (no such pod, API down) raise ``KubeError``.
    """
    import subprocess

    argv = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "exec", "-n", namespace]
    if stdin is not None:
        argv.append("-i")
    argv += [pod, *(["-c", container] if container else []), "--", *command]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise KubeError(f"exec in {namespace}/{pod}: timed out after {timeout:.0f}s") from exc
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and b"command terminated with exit code" not in proc.stderr:
        raise KubeError(f"exec in {namespace}/{pod}: {proc.stderr.decode(errors='replace')}")
    return proc.returncode, out


def port_forward(
    kubeconfig: Path, namespace: str, target: str, ports: list[str], *, address: str = "127.0.0.1",
) -> Any:
    """Start ``kubectl port-forward`` to ``target`` (``pod/NAME``); returns the running process.

    Its output (a line per connection) is discarded so a long-lived forward never blocks on a
    full pipe. The caller owns the process: terminate and wait for it when done.
    """
    import subprocess

    argv = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "port-forward", "-n", namespace,
            "--address", address, target, *ports]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def follow_pod_logs(
    kubeconfig: Path, namespace: str, pod: str, *, container: str | None = None,
    since_seconds: int | None = None,
) -> Any:
    """Start ``kubectl logs -f`` for a pod's container; returns the process (stdout: the lines).

    A process rather than a streaming HTTP response so the caller can end it at once
    (terminate, wait, close stdout) instead of waiting on a blocked read.
    """
    import subprocess

    argv = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "logs", "-f", "-n", namespace, pod]
    if container:
        argv += ["-c", container]
    if since_seconds is not None:
        argv.append(f"--since={since_seconds}s")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def kubeconfig_context(path: Path) -> tuple[str, str, str]:
    """(current context name, API server URL, default namespace) of a kubeconfig file."""
    config = KubeConfig.from_file(str(path))
    ctx = config.current_context or ""
    single = config.get()
    if single is None:
        return ctx, "", "default"
    return ctx, str(single.cluster.server or ""), single.namespace or "default"


def service_proxy(
    client: Client, namespace: str, service: str, path: str = "/", *, port: str = "http",
    method: str = "GET", content: bytes = b"", headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """An HTTP request to a Service through the API server's proxy; status, headers, body.

    Works without kube-proxy, an Ingress or a port-forward: the API server dials an endpoint.
    Any status the service answers with is returned, not raised; API errors are mapped.
    """
    http: httpx2.Client = client._client._client  # lightkube's transport, TLS and auth
    url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
    with kube_errors(f"{method} {service}{path} through the API server proxy"):
        response = http.request(method, url, content=content, headers=headers or {},
                                timeout=timeout)
    return response.status_code, dict(response.headers), response.content
