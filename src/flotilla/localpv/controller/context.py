"""What every reconciler of the controller shares: settings, caches, memory, Events, the client.

The thin controller (:mod:`.loop`) builds one :class:`Context`; the per-kind reconcilers
(:mod:`.claims`, :mod:`.volumes`, :mod:`.pvs`) read the caches through typed views, decide with
pure functions and act through ``core.kube`` with the client held here.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

from lightkube import Client
from lightkube.types import PatchType

from flotilla.core.kube import Informer, KubeNotFoundError, kube_errors, post_event, to_dict
from flotilla.localpv.model import GROUP, Allocation
from flotilla.localpv.resources import LocalVolume, Obj, allocation_from, with_kind

logger = logging.getLogger(__name__)

COMPONENT = "flotilla-localpv-controller"


@dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the controller; read from flags at the entry point only."""

    namespace: str = "flotilla-localpv"
    """Namespace for the CSIStorageCapacity objects (the scheduler reads all namespaces)."""
    workers: int = 64
    """Reconcile threads; claims are independent, so more workers means faster binding.

    Each reconcile mostly waits on API writes: at 500 claims 16 workers left claims queued
    4-5 s between stages, 64 brought that under 0.6 s (docs/benchmarks.md)."""
    node_gone_grace: float = 300.0
    """Seconds a deleted volume's node may be missing before its record is released."""
    agent_timeout: float = 30.0
    """Seconds without an agent heartbeat before its node is treated as unable to provision."""
    capacity_interval: float = 1.0
    """Seconds between CSIStorageCapacity refreshes (only changed objects are written)."""
    resync: float = 30.0
    """Seconds between full passes over every object, a safety net for missed events."""
    bind_claims: bool = True
    """Complete claim binding ourselves instead of waiting for the (throttled) PV binder."""


@dataclass
class Memory:
    """What the controller keeps between passes; none of it needs to survive a restart.

    Each entry says when it goes, so the maps cannot grow with the history of the cluster.
    """

    refused: dict[str, str] = field(default_factory=dict)
    """Claim key -> ``uid:reason`` last said in a ProvisioningFailed Event (say it once).
    Goes when the claim is deleted."""
    bound: set[str] = field(default_factory=set)
    """PV names whose claim binding we completed. Goes when the PV is deleted."""
    reserved: dict[str, Allocation] = field(default_factory=dict)
    """Placements decided but not yet in the LocalVolume cache. Goes when the create returns."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def first_refusal(self, key: str, seen: str) -> bool:
        """True the first time ``seen`` is said for ``key`` (then remembered)."""
        with self.lock:
            if self.refused.get(key) == seen:
                return False
            self.refused[key] = seen
            return True

    def forget_claim(self, key: str) -> None:
        with self.lock:
            self.refused.pop(key, None)

    def was_bound(self, pv_name: str) -> bool:
        with self.lock:
            return pv_name in self.bound

    def mark_bound(self, pv_name: str) -> None:
        with self.lock:
            self.bound.add(pv_name)

    def forget_pv(self, pv_name: str) -> None:
        with self.lock:
            self.bound.discard(pv_name)

    def reserve(self, name: str, allocation: Allocation) -> None:
        with self.lock:
            self.reserved[name] = allocation

    def release(self, name: str) -> None:
        with self.lock:
            self.reserved.pop(name, None)

    def reservations(self, except_names: set[str]) -> list[Allocation]:
        with self.lock:
            return [a for name, a in self.reserved.items() if name not in except_names]


class Recorder:
    """The one per-object logger for what users should see: Kubernetes Events.

    Events are queued and written by a background thread, off the provisioning path.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queue: queue.Queue[tuple[Obj, str, str, bool]] = queue.Queue()

    def claim(self, pvc: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        self._queue.put((with_kind(pvc, "v1", "PersistentVolumeClaim"), reason, message, warning))

    def volume(self, lv: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        self._queue.put(
            (with_kind(lv, f"{GROUP}/v1alpha1", "LocalVolume"), reason, message, warning)
        )

    def pv(self, pv: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        self._queue.put((with_kind(pv, "v1", "PersistentVolume"), reason, message, warning))

    def run(self, stop: threading.Event) -> None:
        """Write queued Events until ``stop``; a failed write is logged by ``post_event``."""
        while not stop.is_set():
            try:
                obj, reason, message, warning = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            post_event(self._client, obj, reason, message, warning=warning, component=COMPONENT)


@dataclass
class Caches:
    """The informers' caches the reconcilers read (the controller owns and runs them)."""

    pvcs: Informer
    pvs: Informer
    classes: Informer
    nodes: Informer
    volumes: Informer
    agents: Informer
    capacities: Informer


@dataclass
class Context:
    """Everything a reconciler needs, built once by the controller."""

    client: Client
    settings: ControllerSettings
    caches: Caches
    events: Recorder
    memory: Memory = field(default_factory=Memory)
    place_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while room is computed and promised, so two claims cannot take the same bytes."""

    def allocations(self) -> list[Allocation]:
        """Every promise: LocalVolumes in the cache plus placements still being written."""
        cached = self.caches.volumes.items()
        names = {lv["metadata"]["name"] for lv in cached}
        found = [a for a in (allocation_from(lv) for lv in cached) if a is not None]
        return found + self.memory.reservations(names)

    def allocations_besides(self, name: str) -> list[Allocation]:
        """The cached volumes' promises other than ``name``'s (room for ``name`` to grow)."""
        return [
            a
            for a in (
                allocation_from(lv)
                for lv in self.caches.volumes.items()
                if lv["metadata"]["name"] != name
            )
            if a is not None
        ]

    def patch_volume(self, name: str, patch: Obj) -> None:
        """Merge-patch a LocalVolume and record the result in the cache at once."""
        with kube_errors(f"patch LocalVolume {name}"):
            obj = self.client.patch(LocalVolume, name, patch, patch_type=PatchType.MERGE)
        self.caches.volumes.put(to_dict(obj))

    def delete_volume(self, name: str, *, force_delete: bool = False) -> None:
        """Delete a LocalVolume; ``force_delete`` first sets its policy so the agent wipes it."""
        if force_delete:
            self.patch_volume(name, {"spec": {"reclaimPolicy": "Delete"}})
        try:
            with kube_errors(f"delete LocalVolume {name}"):
                self.client.delete(LocalVolume, name)
        except KubeNotFoundError:
            pass
