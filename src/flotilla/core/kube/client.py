"""Clients of the Kubernetes API, and polling until a condition holds.

Errors are mapped in :mod:`flotilla.core.kube.errors`: callers never see lightkube's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import Client, KubeConfig
from lightkube.core.resource import GlobalResource, NamespacedResource

from flotilla.core.errors import FlotillaError
from flotilla.core.kube.errors import KubeError

T = TypeVar("T")
Resource = GlobalResource | NamespacedResource


def client_from_kubeconfig(path: Path, *, timeout: float = 30.0) -> Client:
    """A client for the kubeconfig file at ``path`` (its current context)."""
    config = KubeConfig.from_file(str(path))
    return Client(config=config, timeout=httpx2.Timeout(timeout), field_manager="flotilla")


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeconfigError(FlotillaError):
    """No usable credentials: the kubeconfig is missing or broken, and no pod's either."""


def kubeconfig_path(explicit: Path | None) -> Path | None:
    """The kubeconfig every command uses: ``--kubeconfig``, then ``$KUBECONFIG`` (its first
    entry), then ``~/.kube/config`` when it exists; None means "in-cluster".

    A file named by the flag or the variable must exist: falling through to another cluster
    because of a typo would act on the wrong one.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise KubeconfigError(f"kubeconfig {explicit} does not exist (--kubeconfig)")
        return explicit
    env = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), "")
    if env:
        if not Path(env).is_file():
            raise KubeconfigError(f"kubeconfig {env} does not exist ($KUBECONFIG)")
        return Path(env)
    default = Path.home() / ".kube" / "config"
    return default if default.is_file() else None


def client_for(
    kubeconfig: Path | None,
    *,
    timeout: float = 30.0,
    in_cluster: bool = False,
    service_account: Path = SERVICE_ACCOUNT,
) -> Client:
    """A client found in the one order every command follows (:func:`kubeconfig_path`, then the
    pod's service account; only the latter with ``in_cluster``); a file that cannot be used is a
    one-line :class:`KubeconfigError`."""
    import yaml
    from lightkube.core.exceptions import ConfigError

    path = None if in_cluster else kubeconfig_path(kubeconfig)
    try:
        if path is not None:
            config = KubeConfig.from_file(str(path))
        else:
            config = KubeConfig.from_service_account(service_account=str(service_account))
    except ConfigError as exc:
        if path is None:
            raise KubeconfigError(
                "no Kubernetes credentials: pass --kubeconfig, set $KUBECONFIG, create "
                "~/.kube/config, or run in a pod"
            ) from None
        raise KubeconfigError(f"cannot use kubeconfig {path}: {exc}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        where = path if path is not None else service_account  # not YAML, or keys missing
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KubeconfigError(f"cannot use kubeconfig {where}: {problem}") from None
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
