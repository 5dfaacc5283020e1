"""Clients of the Kubernetes API, and polling until a condition holds.

Errors are mapped in :mod:`flotilla.core.kube.errors`: callers never see lightkube's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import Client, KubeConfig
from lightkube.core.resource import GlobalResource, NamespacedResource

from flotilla.core.kube.errors import KubeError

T = TypeVar("T")
Resource = GlobalResource | NamespacedResource


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
