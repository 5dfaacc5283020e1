"""The cluster-wide half: turns claims into LocalVolume records, then Ready records into PVs.

Flow per claim (WaitForFirstConsumer): the scheduler writes ``selected-node``; we place the volume
on that node (or drop the annotation with an Event so the scheduler picks again), create a
LocalVolume with a finalizer, wait for the node's agent to report it Ready, then create the PV
pre-bound to the claim. Names are deterministic (``pvc-<uid>``), so a controller killed at any
point finds its own half-done work on restart and neither duplicates nor orphans it.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import (
    Event,
    Namespace,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
)
from lightkube.resources.storage_v1 import CSIDriver, CSIStorageCapacity, StorageClass
from lightkube.types import PatchType

from flotilla.core.kube import (
    Informer,
    KubeConflictError,
    KubeError,
    KubeNotFoundError,
    kube_errors,
    post_event,
    to_dict,
    warm_up_decoders,
)
from flotilla.localpv import manifests
from flotilla.localpv.capacity import MANAGED_BY, desired_capacities, sync_capacities
from flotilla.localpv.model import (
    FINALIZER,
    GROUP,
    LABEL_BACKEND,
    LABEL_CLASS,
    LABEL_NODE,
    PROVISIONED_BY,
    PROVISIONER,
    SELECTED_NODE,
    Allocation,
    Backend,
    Claim,
    ClassParams,
)
from flotilla.localpv.policies import (
    InvalidInput,
    Place,
    Release,
    available,
    check_claim,
    parse_class_params,
    parse_quantity,
    place,
    release_decision,
    render_subpath,
)
from flotilla.localpv.resources import (
    LocalNode,
    LocalVolume,
    Obj,
    age_seconds,
    allocation_from,
    claim_from,
    create_object,
    node_report,
    now_iso,
    with_kind,
)
from flotilla.localpv.runtime import RetryLater, WorkQueue, every, start_workers

logger = logging.getLogger(__name__)

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANNOTATION_NODE_GONE = f"{GROUP}/node-gone-since"
ANNOTATION_LOSS_REPORTED = f"{GROUP}/node-loss-reported"
COMPONENT = "flotilla-localpv-controller"


@dataclass(frozen=True)
class ControllerSettings:
    """Knobs of the controller; read from flags at the entry point only."""

    namespace: str = "flotilla-localpv"
    """Namespace for the CSIStorageCapacity objects (the scheduler reads all namespaces)."""
    workers: int = 16
    """Reconcile threads; claims are independent, so more workers means faster binding."""
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


class Controller:
    """Watches claims, volumes, nodes and agents; reconciles one key at a time per worker."""

    def __init__(self, client: Client, settings: ControllerSettings) -> None:
        self.client = client
        self.settings = settings
        self.queue = WorkQueue()
        self.stop_event = threading.Event()
        self._place_lock = threading.Lock()
        self._capacity_dirty = threading.Event()
        self._refused: dict[str, str] = {}
        self._bound: set[str] = set()
        self._reserved: dict[str, Allocation] = {}
        self._reserve_lock = threading.Lock()
        self._events: queue.Queue[tuple[Obj, str, str, bool]] = queue.Queue()
        self.pvcs = Informer(client, PersistentVolumeClaim, on_change=self._on_pvc, name="pvc")
        self.pvs = Informer(client, PersistentVolume, on_change=self._on_pv, name="pv")
        self.classes = Informer(client, StorageClass, on_change=self._on_class, name="class")
        self.nodes = Informer(client, Node, on_change=self._on_node, name="node")
        self.volumes = Informer(client, LocalVolume, on_change=self._on_volume, name="volume")
        self.agents = Informer(client, LocalNode, on_change=self._on_node, name="localnode")
        self.capacities = Informer(client, CSIStorageCapacity, namespace=settings.namespace,
                                   labels=MANAGED_BY, on_change=lambda _t, _o: None,
                                   name="capacity")
        self._informers = [self.classes, self.nodes, self.agents, self.volumes, self.pvs,
                           self.pvcs, self.capacities]
        warm_up_decoders(Event, Namespace, CSIDriver, PersistentVolume.Status,
                         PersistentVolumeClaim.Status)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._ensure_cluster_objects()
        for informer in self._informers:
            informer.start()
        for informer in self._informers:
            informer.synced.wait(60)
        threading.Thread(target=self._post_events, name="events", daemon=True).start()
        start_workers(self.queue, self._reconcile, self.settings.workers, self.stop_event,
                      "controller")
        every(self.settings.capacity_interval, self.stop_event, self._publish_capacity,
              "capacity")
        every(self.settings.resync, self.stop_event, self._resync, "resync")
        logger.info("localpv controller running with %d workers", self.settings.workers)

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.close()
        for informer in self._informers:
            informer.stop()

    def _ensure_cluster_objects(self) -> None:
        for cls, body in ((Namespace, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": self.settings.namespace}}),
                          (CSIDriver, manifests.csi_driver())):
            try:
                create_object(self.client, cls, body)
            except KubeConflictError:
                pass
            except KubeError as exc:
                logger.warning("could not create %s: %s", body["kind"], exc)

    def _resync(self) -> None:
        for pvc in self.pvcs.items():
            self.queue.add("pvc:" + Informer.key_of(pvc))
        for lv in self.volumes.items():
            self.queue.add("lv:" + lv["metadata"]["name"])
        for pv in self.pvs.items():
            self.queue.add("pv:" + pv["metadata"]["name"])
        self._capacity_dirty.set()

    # --- event routing -----------------------------------------------------------------------

    def _on_pvc(self, _kind: str, pvc: Obj) -> None:
        self.queue.add("pvc:" + Informer.key_of(pvc))

    def _on_pv(self, _kind: str, pv: Obj) -> None:
        if (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER:
            self.queue.add("pv:" + pv["metadata"]["name"])

    def _on_class(self, _kind: str, sc: Obj) -> None:
        self._capacity_dirty.set()
        name = sc["metadata"]["name"]
        for pvc in self.pvcs.items():  # claims that arrived before their class did
            if (pvc.get("spec", {}).get("storageClassName") == name
                    and not pvc["spec"].get("volumeName")):
                self.queue.add("pvc:" + Informer.key_of(pvc))

    def _on_node(self, _kind: str, obj: Obj) -> None:
        self._capacity_dirty.set()
        name = obj["metadata"]["name"]
        for lv in self.volumes.items():
            if lv["spec"].get("node") == name:
                self.queue.add("lv:" + lv["metadata"]["name"])

    def _on_volume(self, _kind: str, lv: Obj) -> None:
        self._capacity_dirty.set()
        name = lv["metadata"]["name"]
        self.queue.add("lv:" + name)
        self.queue.add("pv:" + name)
        claim = lv["spec"].get("claim") or {}
        if claim.get("namespace") and claim.get("name"):
            self.queue.add(f"pvc:{claim['namespace']}/{claim['name']}")

    def _reconcile(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "pvc":
            self.reconcile_claim(name)
        elif kind == "lv":
            self.reconcile_volume(name)
        elif kind == "pv":
            self.reconcile_pv(name)

    # --- helpers -----------------------------------------------------------------------------

    def _event(self, obj: Obj, reason: str, message: str, *, warning: bool = False,
               kind: str = "PersistentVolumeClaim") -> None:
        """Queue an Event; a background thread writes it, off the provisioning path."""
        api = "v1" if kind in ("PersistentVolumeClaim", "PersistentVolume") else f"{GROUP}/v1alpha1"
        self._events.put((with_kind(obj, api, kind), reason, message, warning))

    def _post_events(self) -> None:
        while not self.stop_event.is_set():
            try:
                obj, reason, message, warning = self._events.get(timeout=0.5)
            except queue.Empty:
                continue
            post_event(self.client, obj, reason, message, warning=warning, component=COMPONENT)

    def _our_class(self, name: str | None) -> Obj | None:
        sc = self.classes.get(name or "")
        return sc if sc is not None and sc.get("provisioner") == PROVISIONER else None

    def _allocations(self) -> list[Allocation]:
        """Every promise: LocalVolumes in the cache plus placements still being written."""
        cached = self.volumes.items()
        names = {lv["metadata"]["name"] for lv in cached}
        found = [a for a in (allocation_from(lv) for lv in cached) if a is not None]
        with self._reserve_lock:
            found += [a for name, a in self._reserved.items() if name not in names]
        return found

    def _patch_volume(self, name: str, patch: Obj) -> None:
        with kube_errors(f"patch LocalVolume {name}"):
            obj = self.client.patch(LocalVolume, name, patch, patch_type=PatchType.MERGE)
        self.volumes.put(to_dict(obj))

    # --- claims ------------------------------------------------------------------------------

    def reconcile_claim(self, key: str) -> None:
        pvc = self.pvcs.get(key)
        if pvc is None or pvc["metadata"].get("deletionTimestamp"):
            return
        spec = pvc.get("spec", {})
        sc = self._our_class(spec.get("storageClassName"))
        if sc is None:
            return
        if spec.get("volumeName"):
            self._maybe_expand(pvc, sc)
            return
        if sc.get("volumeBindingMode") != "WaitForFirstConsumer":
            self._refuse(pvc, "StorageClass must use volumeBindingMode WaitForFirstConsumer: a "
                              "local volume's node is chosen by scheduling its first consumer")
            return
        pv_name = f"pvc-{pvc['metadata']['uid']}"
        lv = self.volumes.get(pv_name)
        if lv is not None:
            self._continue(pvc, sc, lv)
            return
        try:
            # Checked before a node is chosen, so a bad class or claim says so at once.
            params = parse_class_params(dict(sc.get("parameters") or {}))
            claim = claim_from(pvc)
            check_claim(claim, params)
            subpath = (render_subpath(params.path_pattern, claim)
                       if params.backend in (Backend.HOSTPATH, Backend.BTRFS) else (pv_name,))
        except InvalidInput as exc:
            self._refuse(pvc, str(exc))
            return
        node_name = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE)
        if not node_name:
            return
        self._provision(pvc, sc, claim, params, subpath, node_name)

    def _refuse(self, pvc: Obj, reason: str) -> None:
        """Permanent: say why once per change of the claim, never retry on our own."""
        key = Informer.key_of(pvc)
        seen = f"{pvc['metadata'].get('uid')}:{reason}"
        if self._refused.get(key) == seen:
            return
        self._refused[key] = seen
        logger.info("refusing %s: %s", key, reason)
        self._event(pvc, "ProvisioningFailed", reason, warning=True)

    def _reschedule(self, pvc: Obj, node_name: str, reason: str) -> None:
        meta = pvc["metadata"]
        path = "/metadata/annotations/" + SELECTED_NODE.replace("~", "~0").replace("/", "~1")
        try:
            with kube_errors("drop selected-node"):
                self.client.patch(PersistentVolumeClaim, meta["name"],
                                  [{"op": "test", "path": path, "value": node_name},
                                   {"op": "remove", "path": path}],
                                  namespace=meta["namespace"], patch_type=PatchType.JSON)
        except KubeError as exc:
            if exc.status not in (404, 409, 422):
                raise
            return  # the claim moved on (deleted, or the scheduler chose again)
        self._event(pvc, "Rescheduling", f"{reason}; asking the scheduler to choose another node",
                    warning=True)

    def _source(self, claim: Claim) -> Obj | None:
        if not claim.data_source_pvc:
            return None
        src = self.pvcs.get(f"{claim.namespace}/{claim.data_source_pvc}")
        volume = (src or {}).get("spec", {}).get("volumeName")
        lv = self.volumes.get(volume or "")
        if lv is None or lv.get("status", {}).get("phase") != "Ready":
            raise InvalidInput(f"clone source {claim.data_source_pvc} is not a bound "
                               "localpv volume")
        return lv

    def _provision(self, pvc: Obj, sc: Obj, claim: Claim, params: ClassParams,
                   subpath: tuple[str, ...], node_name: str) -> None:
        try:
            source = self._source(claim)
        except InvalidInput as exc:
            self._refuse(pvc, str(exc))
            return
        node = self.nodes.get(node_name)
        report = node_report(node_name, node, self.agents.get(node_name),
                             self.settings.agent_timeout)
        with self._place_lock:
            decision = place(
                claim, params, report, self._allocations(),
                source_pool=source["spec"]["pool"] if source else None,
                source_node=source["spec"]["node"] if source else None)
            if not isinstance(decision, Place):
                self._reschedule(pvc, node_name, decision.reason)
                return
            assert node is not None
            labels = node["metadata"].get("labels") or {}
            affinity_value = labels.get(params.node_affinity_key)
            if affinity_value is None:
                self._reschedule(pvc, node_name, f"node {node_name} has no label "
                                 f"{params.node_affinity_key} for the PV's node affinity")
                return
            spec: Obj = {
                "node": node_name, "nodeUID": node["metadata"].get("uid", ""),
                "backend": params.backend.value, "pool": decision.pool, "size": claim.size,
                "subpath": list(subpath), "volumeMode": claim.volume_mode.value,
                "fsType": params.fs_type, "volumeGroup": params.volume_group,
                "reclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "owner": {"uid": params.uid, "gid": params.gid, "mode": params.mode},
                "claim": {"namespace": claim.namespace, "name": claim.name, "uid": claim.uid},
                "accessModes": list(claim.access_modes),
                "storageClass": sc["metadata"]["name"],
                "nodeAffinityKey": params.node_affinity_key, "nodeAffinityValue": affinity_value,
            }
            if source is not None:
                src = source["spec"]
                spec["source"] = {"volume": source["metadata"]["name"], "pool": src["pool"],
                                  "subpath": src.get("subpath", [])}
            body = manifests.local_volume(claim.pv_name, spec, {
                LABEL_NODE: node_name, LABEL_BACKEND: params.backend.value,
                LABEL_CLASS: sc["metadata"]["name"]})
            # Reserve, then write outside the lock: placements stay exact, writes run in parallel.
            with self._reserve_lock:
                self._reserved[claim.pv_name] = Allocation(node_name, params.backend,
                                                           decision.pool, claim.size)
        try:
            self.volumes.put(create_object(self.client, LocalVolume, body))
        except KubeConflictError:
            pass  # already there: a restart or a concurrent pass; the watch continues it
        finally:
            with self._reserve_lock:
                self._reserved.pop(claim.pv_name, None)
        logger.debug("placed %s (%d bytes, %s) on %s in %s", claim.pv_name, claim.size,
                     params.backend, node_name, decision.pool)

    def _continue(self, pvc: Obj, sc: Obj, lv: Obj) -> None:
        """A LocalVolume exists for this claim: finish it or give it up."""
        status = lv.get("status", {})
        name = lv["metadata"]["name"]
        if lv["metadata"].get("deletionTimestamp"):
            return
        phase = status.get("phase")
        if phase == "Failed":
            message = status.get("message", "unknown error")
            self._event(pvc, "ProvisioningFailed",
                        f"node {lv['spec']['node']} could not create {name}: {message}",
                        warning=True)
            self._delete_volume(name, force_delete=True)
            self._reschedule(pvc, lv["spec"]["node"], f"node {lv['spec']['node']} failed")
            return
        if phase != "Ready":
            return
        if self.pvs.get(name) is None:
            body = manifests.persistent_volume(
                {**lv, "spec": {**lv["spec"]}}, storage_class=sc["metadata"]["name"],
                affinity_value=lv["spec"].get("nodeAffinityValue", lv["spec"]["node"]))
            try:
                self.pvs.put(create_object(self.client, PersistentVolume, body))
                self._event(pvc, "ProvisioningSucceeded",
                            f"created {name} ({lv['spec']['size']} bytes, "
                            f"{lv['spec']['backend']}) on node {lv['spec']['node']} at "
                            f"{status.get('path')} (pool {lv['spec']['pool']})")
            except KubeConflictError:
                pass
        if (self.settings.bind_claims and not pvc["spec"].get("volumeName")
                and name not in self._bound):
            self._bind(pvc, name, lv)

    def _bind(self, pvc: Obj, pv_name: str, lv: Obj) -> None:
        """Complete the binding with the writes the PV binder would make, in its order.

        kube-controller-manager's binder reaches the same state, but it is throttled by its client
        QPS (20/s by default): binding 100 claims took it ~30 s here. It verifies our result and
        finds nothing to do. The API server lets ``spec.volumeName`` be set only once, so racing
        the binder cannot bind a claim to anything but its own pre-bound PV.
        """
        meta = pvc["metadata"]
        capacity = str(lv.get("status", {}).get("capacity", lv["spec"]["size"]))
        try:
            with kube_errors(f"bind {meta['namespace']}/{meta['name']}"):
                self.client.patch(PersistentVolume.Status, pv_name, {"status": {"phase": "Bound"}},
                                  patch_type=PatchType.MERGE)
                self.client.patch(PersistentVolumeClaim, meta["name"], {
                    "metadata": {"annotations": {BIND_COMPLETED: "yes"}},
                    "spec": {"volumeName": pv_name}},
                    namespace=meta["namespace"], patch_type=PatchType.MERGE)
                self.client.patch(PersistentVolumeClaim.Status, meta["name"], {"status": {
                    "phase": "Bound", "accessModes": list(lv["spec"].get("accessModes") or
                                                          ["ReadWriteOnce"]),
                    "capacity": {"storage": capacity}}},
                    namespace=meta["namespace"], patch_type=PatchType.MERGE)
        except KubeError as exc:
            if exc.status == 409:
                raise RetryLater(0.2, "conflict while binding") from exc
            if exc.status not in (404, 422):
                raise
            logger.debug("binding %s left to the PV binder: %s", pv_name, exc)
        self._bound.add(pv_name)

    def _delete_volume(self, name: str, *, force_delete: bool = False) -> None:
        if force_delete:
            self._patch_volume(name, {"spec": {"reclaimPolicy": "Delete"}})
        try:
            with kube_errors(f"delete LocalVolume {name}"):
                self.client.delete(LocalVolume, name)
        except KubeNotFoundError:
            pass

    # --- expansion ---------------------------------------------------------------------------

    def _maybe_expand(self, pvc: Obj, sc: Obj) -> None:
        name = pvc["spec"]["volumeName"]
        lv = self.volumes.get(name)
        pv = self.pvs.get(name)
        if lv is None or pv is None or lv["metadata"].get("deletionTimestamp"):
            return
        requested = parse_quantity(str(pvc["spec"]["resources"]["requests"]["storage"]))
        current = parse_quantity(str((pvc.get("status", {}).get("capacity") or {})
                                     .get("storage", "0")))
        if requested <= current:
            return
        spec, status = lv["spec"], lv.get("status", {})
        if int(spec["size"]) < requested:
            if spec["backend"] in (Backend.DEVICE.value,):
                self._event(pvc, "VolumeResizeFailed", "whole-device volumes cannot grow",
                            warning=True)
                return
            report = node_report(spec["node"], self.nodes.get(spec["node"]),
                                 self.agents.get(spec["node"]), self.settings.agent_timeout)
            with self._place_lock:
                others = [a for a in (allocation_from(v) for v in self.volumes.items()
                                      if v["metadata"]["name"] != name) if a is not None]
                pool = next((p for p in report.pools if p.name == spec["pool"]
                             and p.backend.value == spec["backend"]), None)
                room = available(pool, others) if pool else 0
                if room < requested:
                    self._event(pvc, "VolumeResizeFailed",
                                f"pool {spec['pool']} on {spec['node']} has {room} bytes for "
                                f"this volume, {requested} requested", warning=True)
                    return
                self._patch_volume(name, {"spec": {"size": requested}})
            self._event(pvc, "Resizing", f"growing {name} to {requested} bytes")
            return
        if int(status.get("capacity", 0)) < requested:
            return  # the agent has not grown it yet; its status update brings us back
        with kube_errors(f"resize PV {name}"):
            self.client.patch(PersistentVolume, name,
                              {"spec": {"capacity": {"storage": str(requested)}}},
                              patch_type=PatchType.MERGE)
        meta = pvc["metadata"]
        with kube_errors(f"resize PVC {meta['name']}"):
            self.client.patch(PersistentVolumeClaim.Status, meta["name"],
                              {"status": {"capacity": {"storage": str(requested)}}},
                              namespace=meta["namespace"], patch_type=PatchType.MERGE)
        self._event(pvc, "VolumeResizeSuccessful", f"{name} is now {requested} bytes")

    # --- volumes -----------------------------------------------------------------------------

    def reconcile_volume(self, name: str) -> None:
        lv = self.volumes.get(name)
        if lv is None:
            return
        meta, spec = lv["metadata"], lv["spec"]
        annotations = meta.get("annotations") or {}
        node = self.nodes.get(spec.get("node", ""))
        report = node_report(spec.get("node", ""), node, None, self.settings.agent_timeout)
        same_machine = report.exists and report.node_uid == spec.get("nodeUID", report.node_uid)
        if not same_machine and not annotations.get(ANNOTATION_NODE_GONE):
            self._patch_volume(name, {"metadata": {"annotations": {ANNOTATION_NODE_GONE:
                                                                   now_iso()}}})
            return
        if same_machine and annotations.get(ANNOTATION_NODE_GONE):
            self._patch_volume(name, {"metadata": {"annotations": {ANNOTATION_NODE_GONE: None}}})
            return
        if meta.get("deletionTimestamp"):
            self._release(lv, report)
            return
        claim = spec.get("claim") or {}
        pvc = self.pvcs.get(f"{claim.get('namespace')}/{claim.get('name')}")
        claim_alive = pvc is not None and pvc["metadata"].get("uid") == claim.get("uid")
        if not claim_alive and self.pvs.get(name) is None:
            # No claim and no PV: created for a claim that went away before its PV existed, or
            # its PV was deleted. Delete policy: remove it. Retain: only if nothing was ever
            # handed out (not Ready); a Ready one is kept as the record of retained data.
            if spec.get("reclaimPolicy") == "Delete":
                logger.info("removing %s: neither its claim nor its PV exists", name)
                self._delete_volume(name)
            elif lv.get("status", {}).get("phase") != "Ready":
                self._delete_volume(name, force_delete=True)
            return
        if not same_machine and pvc is not None and not annotations.get(ANNOTATION_LOSS_REPORTED):
            self._event(pvc, "NodeLost", f"node {spec['node']} that holds {name} is gone or was "
                        "re-created; its data is not reachable", warning=True)
            self._patch_volume(name, {"metadata": {"annotations": {ANNOTATION_LOSS_REPORTED:
                                                                   "true"}}})

    def _release(self, lv: Obj, report: Any) -> None:
        meta, spec = lv["metadata"], lv["spec"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return
        gone_for = age_seconds((meta.get("annotations") or {}).get(ANNOTATION_NODE_GONE))
        decision = release_decision(report, spec.get("nodeUID", ""), gone_for,
                                    self.settings.node_gone_grace)
        if decision is Release.AGENT:
            return  # the agent deletes the data and removes the finalizer
        if decision is Release.WAIT:
            wait = self.settings.node_gone_grace - (gone_for or 0.0)
            raise RetryLater(max(0.5, min(wait + 0.1, 30.0)), "node gone, within grace")
        name = meta["name"]
        message = (f"node {spec['node']} is gone (or was re-created) for longer than "
                   f"{self.settings.node_gone_grace:.0f}s: released the record of {name}; its "
                   f"data at {lv.get('status', {}).get('path', '?')} was NOT deleted")
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        with kube_errors(f"release LocalVolume {name}"):
            self.client.patch(LocalVolume, name,
                              [{"op": "test", "path": "/metadata/resourceVersion",
                                "value": meta["resourceVersion"]},
                               {"op": "replace", "path": "/metadata/finalizers",
                                "value": finalizers}], patch_type=PatchType.JSON)
        self._event(lv, "ReleasedNodeGone", message, warning=True, kind="LocalVolume")
        pv = self.pvs.get(name)
        if pv is not None:
            self._event(pv, "ReleasedNodeGone", message, warning=True, kind="PersistentVolume")

    # --- persistent volumes ------------------------------------------------------------------

    def reconcile_pv(self, name: str) -> None:
        pv = self.pvs.get(name)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return
        if (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return
        if pv.get("status", {}).get("phase") != "Released":
            return
        if pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
            return
        lv = self.volumes.get(name)
        if lv is not None:
            if not lv["metadata"].get("deletionTimestamp"):
                logger.info("claim of %s released: deleting its data", name)
                self._delete_volume(name)
            return  # the volume's deletion brings us back here
        try:
            with kube_errors(f"delete PersistentVolume {name}"):
                self.client.delete(PersistentVolume, name)
        except KubeNotFoundError:
            pass

    # --- capacity ----------------------------------------------------------------------------

    def _publish_capacity(self) -> None:
        if not self._capacity_dirty.is_set():
            return
        self._capacity_dirty.clear()
        desired = desired_capacities(
            self.classes.items(), self.nodes.items(),
            {a["metadata"]["name"]: a for a in self.agents.items()}, self._allocations(),
            namespace=self.settings.namespace, agent_timeout=self.settings.agent_timeout)
        existing = {c["metadata"]["name"]: c for c in self.capacities.items()}
        sync_capacities(self.client, self.settings.namespace, desired, existing,
                        self.capacities.put)
