"""Clients of the Kubernetes API and its errors, mapped once: callers never see lightkube's.

Also polling until a condition holds, which every caller needs with them.
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


def client_from_environment(*, timeout: float = 30.0) -> Client:
    """A client from the pod's service account when in a cluster, else ``$KUBECONFIG``."""
    config = KubeConfig.from_env()
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
