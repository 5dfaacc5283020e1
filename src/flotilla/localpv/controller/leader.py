"""Lease-based leader election, so a controller Deployment can run more than one replica.

The coordination.k8s.io Lease protocol client-go uses: take the Lease when it is free or expired
(optimistic concurrency on resourceVersion), renew it every ``renew`` seconds, and stop acting
(``on_lost``) when renewing fails for longer than the lease duration.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from lightkube import Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from flotilla.core.kube import KubeConflictError, KubeError, KubeNotFoundError, kube_errors, to_dict
from flotilla.localpv.resources import create_object

logger = logging.getLogger(__name__)


def _micro_time(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_free(
    holder: str | None, renewed: str | None, duration: int, me: str, now: datetime.datetime
) -> bool:
    """May ``me`` take a lease last renewed at ``renewed`` by ``holder``?"""
    if not holder or holder == me or not renewed:
        return True
    try:
        last = datetime.datetime.fromisoformat(renewed.replace("Z", "+00:00"))
    except ValueError:
        return True
    return now - last > datetime.timedelta(seconds=duration)


class LeaderElector:
    """Holds one Lease in ``namespace``; ``acquire`` blocks until we lead or ``stop`` is set."""

    def __init__(
        self, client: Client, *, namespace: str, name: str, duration: int = 15, renew: float = 5.0
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.duration = duration
        self.renew = renew
        self.identity = f"{socket.gethostname()}-{os.getpid()}"
        self.on_lost: Callable[[], None] = lambda: None
        self._leading = threading.Event()
        self._released = threading.Event()

    def _try(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": _micro_time(now),
        }
        try:
            with kube_errors(f"get Lease {self.name}"):
                lease = to_dict(self.client.get(Lease, self.name, namespace=self.namespace))
        except KubeNotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now)},
            }
            try:
                create_object(self.client, Lease, body)
                return True
            except KubeConflictError:
                return False
        current = lease.get("spec", {})
        if not lease_free(
            current.get("holderIdentity"),
            current.get("renewTime"),
            int(current.get("leaseDurationSeconds") or self.duration),
            self.identity,
            now,
        ):
            return False
        if current.get("holderIdentity") != self.identity:
            spec["acquireTime"] = _micro_time(now)
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": lease["metadata"]["resourceVersion"],
            },
            {"op": "replace", "path": "/spec", "value": {**current, **spec}},
        ]
        try:
            with kube_errors(f"take Lease {self.name}"):
                self.client.patch(
                    Lease, self.name, patch, namespace=self.namespace, patch_type=PatchType.JSON
                )
        except KubeError:
            return False
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until leading (True) or stopped (False); then keep renewing in the background."""
        while not stop.is_set():
            try:
                if self._try():
                    break
            except KubeError as exc:
                logger.info("leader election: %s", exc)
            stop.wait(self.renew)
        else:
            return False
        logger.info("leading as %s", self.identity)
        self._leading.set()
        threading.Thread(target=self._keep, args=(stop,), name="lease-renew", daemon=True).start()
        return True

    def _keep(self, stop: threading.Event) -> None:
        last_ok = time.monotonic()
        while not stop.wait(self.renew) and not self._released.is_set():
            try:
                if self._try():
                    last_ok = time.monotonic()
                    continue
            except KubeError as exc:
                logger.warning("lease renewal failed: %s", exc)
            if time.monotonic() - last_ok > self.duration:
                logger.error("lost the lease; stopping")
                self._leading.clear()
                self.on_lost()
                return

    def release(self) -> None:
        """Give the lease up at shutdown so a standby takes over without waiting it out."""
        self._released.set()
        if not self._leading.is_set():
            return
        self._leading.clear()
        try:
            with kube_errors(f"release Lease {self.name}"):
                self.client.patch(
                    Lease,
                    self.name,
                    {"spec": {"holderIdentity": None}},
                    namespace=self.namespace,
                    patch_type=PatchType.MERGE,
                )
        except KubeError:
            pass
