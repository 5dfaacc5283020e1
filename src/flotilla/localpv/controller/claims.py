"""Claims (PVCs): place a LocalVolume for a claim, turn a Ready one into a bound PV, grow it.

Flow per claim (WaitForFirstConsumer): the scheduler writes ``selected-node``; we place the volume
on that node (or drop the annotation with an Event so the scheduler picks again), create a
LocalVolume with a finalizer, wait for the node's agent to report it Ready, then create the PV
pre-bound to the claim. Names are deterministic (``pvc-<uid>``), so a controller killed at any
point finds its own half-done work on restart and neither duplicates nor orphans it.

Each pass reads the cached claim through a :class:`ClaimView`, asks a pure ``decide_…`` function
for one small action, and executes it through ``core.kube``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.types import PatchType

from flotilla.core.kube import (
    KubeConflictError,
    KubeInvalidError,
    KubeNotFoundError,
    kube_errors,
)
from flotilla.localpv import manifests
from flotilla.localpv.controller.context import Context
from flotilla.localpv.controller.views import ClaimView, ClassView, Nothing, VolumeView
from flotilla.localpv.model import (
    LABEL_BACKEND,
    LABEL_CLASS,
    LABEL_NODE,
    SELECTED_NODE,
    Allocation,
    Backend,
    Claim,
    ClassParams,
    NodeReport,
)
from flotilla.localpv.policies import (
    InvalidInput,
    Place,
    Reschedule,
    available,
    check_claim,
    parse_class_params,
    parse_quantity,
    place,
    render_subpath,
)
from flotilla.localpv.resources import (
    LocalVolume,
    Obj,
    claim_from,
    create_object,
    node_report,
)
from flotilla.localpv.runtime import Permanent, RetryLater

logger = logging.getLogger(__name__)

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
NEEDS_WFFC = (
    "StorageClass must use volumeBindingMode WaitForFirstConsumer: a local volume's "
    "node is chosen by scheduling its first consumer"
)

# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refuse:
    """Permanent: say why once per change of the claim (an Event), never retry on our own."""

    reason: str


@dataclass(frozen=True)
class Expand:
    """The claim is bound: see whether it asks for more (:func:`decide_expansion`)."""


@dataclass(frozen=True)
class Provision:
    """A valid claim with a node chosen by the scheduler: place it there."""

    claim: Claim
    params: ClassParams
    subpath: tuple[str, ...]
    node: str


@dataclass(frozen=True)
class GiveUp:
    """The node agent failed: say so, delete the record, send the claim back to the scheduler."""

    node: str
    message: str


@dataclass(frozen=True)
class Finish:
    """The volume is Ready: create its PV and/or complete the binding."""

    create_pv: bool
    bind: bool


@dataclass(frozen=True)
class CreateVolume:
    """Write this LocalVolume; ``allocation`` is promised until the cache holds it."""

    body: Obj
    allocation: Allocation


@dataclass(frozen=True)
class ResizeFailed:
    reason: str


@dataclass(frozen=True)
class Grow:
    """Ask the node agent for ``size`` bytes (it grows the volume, then reports capacity)."""

    size: int


@dataclass(frozen=True)
class FinishResize:
    """The agent grew the volume: report ``size`` on the PV and the claim."""

    size: int


ClaimAction = Nothing | Refuse | Expand | Provision | GiveUp | Finish

# --- decisions (pure) ----------------------------------------------------------------------------


def decide_claim(
    pvc: ClaimView | None,
    sc: ClassView | None,
    lv: VolumeView | None,
    *,
    pv_exists: bool,
    may_bind: bool,
) -> ClaimAction:
    """The next step for one claim, from the claim, its class, and its volume if placed."""
    if pvc is None or pvc.deleting:
        return Nothing("the claim is gone or going")
    if sc is None or not sc.ours:
        return Nothing("not a class of ours")
    if pvc.volume_name:
        return Expand()
    if not sc.wait_for_first_consumer:
        return Refuse(NEEDS_WFFC)
    if lv is not None:
        return _continue(lv, pv_exists=pv_exists, may_bind=may_bind)
    try:
        # Checked before a node is chosen, so a bad class or claim says so at once.
        params = parse_class_params(sc.parameters)
        claim = claim_from(pvc.obj)
        check_claim(claim, params)
        subpath = (
            render_subpath(params.path_pattern, claim)
            if params.backend in (Backend.HOSTPATH, Backend.BTRFS)
            else (claim.pv_name,)
        )
    except InvalidInput as exc:
        return Refuse(str(exc))
    if not pvc.selected_node:
        return Nothing("waiting for the scheduler to choose a node")
    return Provision(claim, params, subpath, pvc.selected_node)


def _continue(lv: VolumeView, *, pv_exists: bool, may_bind: bool) -> ClaimAction:
    """A LocalVolume exists for this claim: finish it or give it up."""
    if lv.deleting:
        return Nothing("its volume is being deleted")
    if lv.phase == "Failed":
        return GiveUp(lv.node, f"node {lv.node} could not create {lv.name}: {lv.message}")
    if lv.phase != "Ready":
        return Nothing("waiting for the node agent")
    if pv_exists and not may_bind:
        return Nothing("provisioned")
    return Finish(create_pv=not pv_exists, bind=may_bind)


def decide_placement(
    claim: Claim,
    params: ClassParams,
    subpath: tuple[str, ...],
    sc: ClassView,
    node: NodeReport,
    allocations: list[Allocation],
    source: VolumeView | None,
) -> Refuse | Reschedule | CreateVolume:
    """Where on the selected node the claim goes, as the LocalVolume to write, or why not.

    ``source`` is the volume of the claim's clone source (None when it has none or is unbound).
    """
    if claim.data_source_pvc and (source is None or source.phase != "Ready"):
        return Refuse(f"clone source {claim.data_source_pvc} is not a bound localpv volume")
    decision = place(
        claim,
        params,
        node,
        allocations,
        source_pool=source.pool if source else None,
        source_node=source.node if source else None,
        subpath=subpath if params.backend in (Backend.HOSTPATH, Backend.BTRFS) else (),
    )
    if not isinstance(decision, Place):
        return decision
    affinity_value = node.labels.get(params.node_affinity_key)
    if affinity_value is None:
        return Reschedule(
            f"node {node.name} has no label {params.node_affinity_key} for the PV's node affinity"
        )
    spec: Obj = {
        "node": node.name,
        "nodeUID": node.node_uid,
        "backend": params.backend.value,
        "pool": decision.pool,
        "size": claim.size,
        "subpath": list(subpath),
        "volumeMode": claim.volume_mode.value,
        "fsType": params.fs_type,
        "volumeGroup": params.volume_group,
        "reclaimPolicy": sc.reclaim_policy,
        "owner": {"uid": params.uid, "gid": params.gid, "mode": params.mode},
        "claim": {"namespace": claim.namespace, "name": claim.name, "uid": claim.uid},
        "accessModes": list(claim.access_modes),
        "storageClass": sc.name,
        "nodeAffinityKey": params.node_affinity_key,
        "nodeAffinityValue": affinity_value,
    }
    if source is not None:
        spec["source"] = {
            "volume": source.name,
            "pool": source.pool,
            "subpath": (source.obj.get("spec") or {}).get("subpath", []),
        }
    body = manifests.local_volume(
        claim.pv_name,
        spec,
        {LABEL_NODE: node.name, LABEL_BACKEND: params.backend.value, LABEL_CLASS: sc.name},
    )
    return CreateVolume(
        body,
        Allocation(node.name, params.backend, decision.pool, claim.size, subpath, claim.pv_name),
    )


def decide_expansion(
    pvc: ClaimView, lv: VolumeView | None, *, pv_exists: bool
) -> Nothing | ResizeFailed | Grow | FinishResize:
    """A bound claim that asks for more than it has: grow the volume, then report the size."""
    if lv is None or not pv_exists or lv.deleting:
        return Nothing("no volume to grow")
    try:
        requested, current = parse_quantity(pvc.requested), parse_quantity(pvc.capacity)
    except InvalidInput:
        return Nothing("sizes the API server should not have let through")
    if requested <= current:
        return Nothing("not asking for more")
    if lv.size < requested:
        if lv.backend == Backend.DEVICE.value:
            return ResizeFailed("whole-device volumes cannot grow")
        return Grow(requested)
    if lv.capacity < requested:
        return Nothing("the agent has not grown it yet; its status update brings us back")
    return FinishResize(requested)


def decide_growth(
    lv: VolumeView, size: int, node: NodeReport, others: list[Allocation]
) -> ResizeFailed | Grow:
    """Whether the volume's pool has room for ``size`` bytes beside everyone else's promises."""
    pool = next(
        (p for p in node.pools if p.name == lv.pool and p.backend.value == lv.backend), None
    )
    room = available(pool, others) if pool else 0
    if room < size:
        return ResizeFailed(
            f"pool {lv.pool} on {lv.node} has {room} bytes for this volume, {size} requested"
        )
    return Grow(size)


# --- execution -----------------------------------------------------------------------------------


class Claims:
    """Reconciles one claim per call: read, decide, act."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile(self, key: str) -> None:
        caches, memory = self.ctx.caches, self.ctx.memory
        raw = caches.pvcs.get(key)
        if raw is None:
            memory.forget_claim(key)
            return
        pvc = ClaimView.of(raw)
        sc_raw = caches.classes.get(pvc.storage_class)
        sc = ClassView.of(sc_raw) if sc_raw is not None else None
        lv_raw = caches.volumes.get(pvc.pv_name)
        lv = VolumeView.of(lv_raw) if lv_raw is not None else None
        action = decide_claim(
            pvc,
            sc,
            lv,
            pv_exists=caches.pvs.get(pvc.pv_name) is not None,
            may_bind=self.ctx.settings.bind_claims and not memory.was_bound(pvc.pv_name),
        )
        if isinstance(action, Refuse):
            self._refuse(pvc, action.reason)
        elif isinstance(action, Expand):
            self._expand(pvc)
        elif isinstance(action, Provision):
            assert sc is not None
            self._provision(pvc, sc, action)
        elif isinstance(action, GiveUp):
            assert lv is not None
            self.ctx.events.claim(pvc.obj, "ProvisioningFailed", action.message, warning=True)
            self.ctx.delete_volume(lv.name, force_delete=True)
            self._reschedule(pvc, action.node, f"node {action.node} failed")
        elif isinstance(action, Finish):
            assert lv is not None and sc is not None
            self._finish(pvc, sc, lv, action)

    def _refuse(self, pvc: ClaimView, reason: str) -> None:
        if not self.ctx.memory.first_refusal(pvc.key, f"{pvc.uid}:{reason}"):
            return
        logger.info("refusing %s: %s", pvc.key, reason)
        self.ctx.events.claim(pvc.obj, "ProvisioningFailed", reason, warning=True)

    def _reschedule(self, pvc: ClaimView, node_name: str, reason: str) -> None:
        """Drop ``selected-node`` only if it still names ``node_name`` (a JSON patch test)."""
        path = "/metadata/annotations/" + SELECTED_NODE.replace("~", "~0").replace("/", "~1")
        try:
            with kube_errors("drop selected-node"):
                self.ctx.client.patch(
                    PersistentVolumeClaim,
                    pvc.name,
                    [
                        {"op": "test", "path": path, "value": node_name},
                        {"op": "remove", "path": path},
                    ],
                    namespace=pvc.namespace,
                    patch_type=PatchType.JSON,
                )
        except (KubeNotFoundError, KubeConflictError, KubeInvalidError):
            return  # the claim moved on (deleted, or the scheduler chose again)
        self.ctx.events.claim(
            pvc.obj,
            "Rescheduling",
            f"{reason}; asking the scheduler to choose another node",
            warning=True,
        )

    def _source(self, claim: Claim) -> VolumeView | None:
        if not claim.data_source_pvc:
            return None
        caches = self.ctx.caches
        src = caches.pvcs.get(f"{claim.namespace}/{claim.data_source_pvc}")
        lv = caches.volumes.get(((src or {}).get("spec") or {}).get("volumeName") or "")
        return VolumeView.of(lv) if lv is not None else None

    def _provision(self, pvc: ClaimView, sc: ClassView, step: Provision) -> None:
        ctx, claim = self.ctx, step.claim
        source = self._source(claim)
        report = node_report(
            step.node,
            ctx.caches.nodes.get(step.node),
            ctx.caches.agents.get(step.node),
            ctx.settings.agent_timeout,
        )
        with ctx.place_lock:
            decision = decide_placement(
                claim, step.params, step.subpath, sc, report, ctx.allocations(), source
            )
            if isinstance(decision, CreateVolume):
                # Reserve, then write outside the lock: placements stay exact, writes parallel.
                ctx.memory.reserve(claim.pv_name, decision.allocation)
        if isinstance(decision, Refuse):
            self._refuse(pvc, decision.reason)
            return
        if isinstance(decision, Reschedule):
            self._reschedule(pvc, step.node, decision.reason)
            return
        try:
            ctx.caches.volumes.put(create_object(ctx.client, LocalVolume, decision.body))
        except KubeConflictError:
            pass  # already there: a restart or a concurrent pass; the watch continues it
        except KubeInvalidError as exc:
            raise Permanent(f"the API server refused the LocalVolume for {pvc.key}: {exc}") from exc
        finally:
            ctx.memory.release(claim.pv_name)
        logger.debug(
            "placed %s (%d bytes, %s) on %s in %s",
            claim.pv_name,
            claim.size,
            step.params.backend,
            step.node,
            decision.allocation.pool,
        )

    def _finish(self, pvc: ClaimView, sc: ClassView, lv: VolumeView, step: Finish) -> None:
        ctx = self.ctx
        if step.create_pv:
            body = manifests.persistent_volume(
                {**lv.obj, "spec": {**lv.obj["spec"]}},
                storage_class=sc.name,
                affinity_value=lv.obj["spec"].get("nodeAffinityValue", lv.node),
            )
            try:
                ctx.caches.pvs.put(create_object(ctx.client, PersistentVolume, body))
                ctx.events.claim(
                    pvc.obj,
                    "ProvisioningSucceeded",
                    f"created {lv.name} ({lv.size} bytes, {lv.backend}) on node "
                    f"{lv.node} at {lv.path} (pool {lv.pool})",
                )
            except KubeConflictError:
                pass
        if step.bind:
            self._bind(pvc, lv)

    def _bind(self, pvc: ClaimView, lv: VolumeView) -> None:
        """Complete the binding with the writes the PV binder would make, in its order.

        kube-controller-manager's binder reaches the same state, but it is throttled by its client
        QPS (20/s by default): binding 100 claims took it ~30 s here. It verifies our result and
        finds nothing to do. The API server lets ``spec.volumeName`` be set only once, so racing
        the binder cannot bind a claim to anything but its own pre-bound PV.
        """
        client, pv_name = self.ctx.client, lv.name
        capacity = str(lv.obj.get("status", {}).get("capacity", lv.obj["spec"]["size"]))
        modes = list(lv.obj["spec"].get("accessModes") or ["ReadWriteOnce"])
        try:
            with kube_errors(f"bind {pvc.key}"):
                client.patch(
                    PersistentVolume.Status,
                    pv_name,
                    {"status": {"phase": "Bound"}},
                    patch_type=PatchType.MERGE,
                )
                client.patch(
                    PersistentVolumeClaim,
                    pvc.name,
                    {
                        "metadata": {"annotations": {BIND_COMPLETED: "yes"}},
                        "spec": {"volumeName": pv_name},
                    },
                    namespace=pvc.namespace,
                    patch_type=PatchType.MERGE,
                )
                client.patch(
                    PersistentVolumeClaim.Status,
                    pvc.name,
                    {
                        "status": {
                            "phase": "Bound",
                            "accessModes": modes,
                            "capacity": {"storage": capacity},
                        }
                    },
                    namespace=pvc.namespace,
                    patch_type=PatchType.MERGE,
                )
        except KubeConflictError as exc:
            raise RetryLater(0.2, "conflict while binding") from exc
        except (KubeNotFoundError, KubeInvalidError) as exc:
            logger.debug("binding %s left to the PV binder: %s", pv_name, exc)
        self.ctx.memory.mark_bound(pv_name)

    # --- expansion ----------------------------------------------------------------------------

    def _expand(self, pvc: ClaimView) -> None:
        ctx = self.ctx
        lv_raw = ctx.caches.volumes.get(pvc.volume_name)
        lv = VolumeView.of(lv_raw) if lv_raw is not None else None
        step = decide_expansion(pvc, lv, pv_exists=ctx.caches.pvs.get(pvc.volume_name) is not None)
        if isinstance(step, ResizeFailed):
            ctx.events.claim(pvc.obj, "VolumeResizeFailed", step.reason, warning=True)
        elif isinstance(step, Grow):
            assert lv is not None
            self._grow(pvc, lv, step.size)
        elif isinstance(step, FinishResize):
            assert lv is not None
            self._finish_resize(pvc, lv.name, step.size)

    def _grow(self, pvc: ClaimView, lv: VolumeView, size: int) -> None:
        ctx = self.ctx
        report = node_report(
            lv.node,
            ctx.caches.nodes.get(lv.node),
            ctx.caches.agents.get(lv.node),
            ctx.settings.agent_timeout,
        )
        with ctx.place_lock:
            growth = decide_growth(lv, size, report, ctx.allocations_besides(lv.name))
            if isinstance(growth, Grow):
                ctx.patch_volume(lv.name, {"spec": {"size": size}})
        if isinstance(growth, ResizeFailed):
            ctx.events.claim(pvc.obj, "VolumeResizeFailed", growth.reason, warning=True)
            return
        ctx.events.claim(pvc.obj, "Resizing", f"growing {lv.name} to {size} bytes")

    def _finish_resize(self, pvc: ClaimView, name: str, size: int) -> None:
        client = self.ctx.client
        with kube_errors(f"resize PV {name}"):
            client.patch(
                PersistentVolume,
                name,
                {"spec": {"capacity": {"storage": str(size)}}},
                patch_type=PatchType.MERGE,
            )
        with kube_errors(f"resize PVC {pvc.name}"):
            client.patch(
                PersistentVolumeClaim.Status,
                pvc.name,
                {"status": {"capacity": {"storage": str(size)}}},
                namespace=pvc.namespace,
                patch_type=PatchType.MERGE,
            )
        self.ctx.events.claim(pvc.obj, "VolumeResizeSuccessful", f"{name} is now {size} bytes")
