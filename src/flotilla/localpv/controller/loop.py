"""The thin controller: owns the informers, the work queue and the workers; dispatches typed keys.

What each kind's reconcile does lives beside it: :mod:`.claims` (PVCs), :mod:`.volumes`
(LocalVolumes), :mod:`.pvs` (released PVs), :mod:`.capacity` (CSIStorageCapacity). Here only
watch events become keys, keys become calls, and a periodic pass publishes capacity and resyncs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from lightkube import Client
from lightkube.resources.core_v1 import (
    Event,
    Namespace,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
)
from lightkube.resources.storage_v1 import CSIDriver, CSIStorageCapacity, StorageClass

from flotilla.core.kube import Informer, KubeConflictError, KubeError, warm_up_decoders
from flotilla.localpv import manifests
from flotilla.localpv.controller.capacity import (
    MANAGED_BY,
    desired_capacities,
    sync_capacities,
)
from flotilla.localpv.controller.claims import Claims
from flotilla.localpv.controller.context import Caches, Context, ControllerSettings, Recorder
from flotilla.localpv.controller.pvs import PersistentVolumes
from flotilla.localpv.controller.volumes import Volumes
from flotilla.localpv.model import PROVISIONED_BY, PROVISIONER
from flotilla.localpv.resources import LocalNode, LocalVolume, Obj, create_object
from flotilla.localpv.runtime import WorkQueue, every, start_workers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimKey:
    """A PVC, as ``namespace/name``."""

    key: str


@dataclass(frozen=True)
class VolumeKey:
    """A LocalVolume (cluster-scoped) by name."""

    name: str


@dataclass(frozen=True)
class PVKey:
    """A PersistentVolume (cluster-scoped) by name; ours share their LocalVolume's name."""

    name: str


Key = ClaimKey | VolumeKey | PVKey


class Controller:
    """Watches claims, volumes, nodes and agents; reconciles one key at a time per worker."""

    def __init__(self, client: Client, settings: ControllerSettings) -> None:
        self.client = client
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue()
        self.stop_event = threading.Event()
        self._capacity_dirty = threading.Event()
        self.caches = Caches(
            pvcs=Informer(client, PersistentVolumeClaim, on_change=self._on_pvc, name="pvc"),
            pvs=Informer(client, PersistentVolume, on_change=self._on_pv, name="pv"),
            classes=Informer(client, StorageClass, on_change=self._on_class, name="class"),
            nodes=Informer(client, Node, on_change=self._on_node, name="node"),
            volumes=Informer(client, LocalVolume, on_change=self._on_volume, name="volume"),
            agents=Informer(client, LocalNode, on_change=self._on_node, name="localnode"),
            capacities=Informer(
                client,
                CSIStorageCapacity,
                namespace=settings.namespace,
                labels=MANAGED_BY,
                on_change=lambda _t, _o: None,
                name="capacity",
            ),
        )
        c = self.caches
        self._informers = [c.classes, c.nodes, c.agents, c.volumes, c.pvs, c.pvcs, c.capacities]
        self.ctx = Context(client, settings, self.caches, Recorder(client))
        self.claims = Claims(self.ctx)
        self.volumes = Volumes(self.ctx)
        self.pvs = PersistentVolumes(self.ctx)
        warm_up_decoders(
            Event, Namespace, CSIDriver, PersistentVolume.Status, PersistentVolumeClaim.Status
        )

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._ensure_cluster_objects()
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            informer.synced.wait(60)
        threading.Thread(
            target=self.ctx.events.run, args=(self.stop_event,), name="events", daemon=True
        ).start()
        start_workers(
            self.queue, self.reconcile, self.settings.workers, self.stop_event, "controller"
        )
        every(self.settings.capacity_interval, self.stop_event, self._publish_capacity, "capacity")
        every(self.settings.resync, self.stop_event, self._resync, "resync")
        logger.info("localpv controller running with %d workers", self.settings.workers)

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.close()
        for informer in self._informers:
            informer.stop()

    def _ensure_cluster_objects(self) -> None:
        for cls, body in (
            (
                Namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": self.settings.namespace},
                },
            ),
            (CSIDriver, manifests.csi_driver()),
        ):
            try:
                create_object(self.client, cls, body)
            except KubeConflictError:
                pass
            except KubeError as exc:
                logger.warning("could not create %s: %s", body["kind"], exc)

    def _resync(self) -> None:
        for pvc in self.caches.pvcs.items():
            self.queue.add(ClaimKey(Informer.key_of(pvc)))
        for lv in self.caches.volumes.items():
            self.queue.add(VolumeKey(lv["metadata"]["name"]))
        for pv in self.caches.pvs.items():
            self.queue.add(PVKey(pv["metadata"]["name"]))
        self._capacity_dirty.set()

    # --- watch events become keys ------------------------------------------------------------

    def _on_pvc(self, _kind: str, pvc: Obj) -> None:
        self.queue.add(ClaimKey(Informer.key_of(pvc)))

    def _on_pv(self, _kind: str, pv: Obj) -> None:
        if (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER:
            self.queue.add(PVKey(pv["metadata"]["name"]))

    def _on_class(self, _kind: str, sc: Obj) -> None:
        self._capacity_dirty.set()
        name = sc["metadata"]["name"]
        for pvc in self.caches.pvcs.items():  # claims that arrived before their class did
            if pvc.get("spec", {}).get("storageClassName") == name and not pvc["spec"].get(
                "volumeName"
            ):
                self.queue.add(ClaimKey(Informer.key_of(pvc)))

    def _on_node(self, _kind: str, obj: Obj) -> None:
        self._capacity_dirty.set()
        name = obj["metadata"]["name"]
        for lv in self.caches.volumes.items():
            if lv["spec"].get("node") == name:
                self.queue.add(VolumeKey(lv["metadata"]["name"]))

    def _on_volume(self, _kind: str, lv: Obj) -> None:
        self._capacity_dirty.set()
        name = lv["metadata"]["name"]
        self.queue.add(VolumeKey(name))
        self.queue.add(PVKey(name))
        claim = lv["spec"].get("claim") or {}
        if claim.get("namespace") and claim.get("name"):
            self.queue.add(ClaimKey(f"{claim['namespace']}/{claim['name']}"))

    # --- keys become calls -------------------------------------------------------------------

    def reconcile(self, key: Key) -> None:
        """One pass for one object; retries are the worker loop's business (see runtime)."""
        if isinstance(key, ClaimKey):
            self.claims.reconcile(key.key)
        elif isinstance(key, VolumeKey):
            self.volumes.reconcile(key.name)
        elif isinstance(key, PVKey):
            self.pvs.reconcile(key.name)

    def _publish_capacity(self) -> None:
        if not self._capacity_dirty.is_set():
            return
        self._capacity_dirty.clear()
        c = self.caches
        desired = desired_capacities(
            c.classes.items(),
            c.nodes.items(),
            {a["metadata"]["name"]: a for a in c.agents.items()},
            self.ctx.allocations(),
            namespace=self.settings.namespace,
            agent_timeout=self.settings.agent_timeout,
        )
        existing = {o["metadata"]["name"]: o for o in c.capacities.items()}
        sync_capacities(self.client, self.settings.namespace, desired, existing, c.capacities.put)
