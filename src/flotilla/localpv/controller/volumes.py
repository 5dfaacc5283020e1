"""LocalVolumes: notice lost and re-created nodes, remove orphaned records, release deleted ones.

Each LocalVolume records the Node UID at placement. A missing node, or one re-created under the
same name (another UID: another machine), is stamped ``node-gone-since``; a deletion then waits
``node_gone_grace`` and, if the node is still gone, releases the record and says the data was NOT
deleted. While the node is there, its agent deletes the data and removes the finalizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lightkube.types import PatchType

from flotilla.core.kube import kube_errors
from flotilla.localpv.controller.context import Context
from flotilla.localpv.controller.views import (
    ANNOTATION_LOSS_REPORTED,
    ANNOTATION_NODE_GONE,
    ClaimView,
    Nothing,
    VolumeView,
)
from flotilla.localpv.model import FINALIZER, NodeReport
from flotilla.localpv.policies import Release, release_decision
from flotilla.localpv.resources import LocalVolume, age_seconds, node_report, now_iso
from flotilla.localpv.runtime import RetryLater

logger = logging.getLogger(__name__)

# --- actions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StampNodeGone:
    """The node is missing or another machine: note since when (the grace period starts)."""


@dataclass(frozen=True)
class ClearNodeGone:
    """The node came back as the same machine: forget the stamp."""


@dataclass(frozen=True)
class HandleDeletion:
    """The volume is being deleted: see :func:`decide_release`."""


@dataclass(frozen=True)
class DeleteRecord:
    """Neither claim nor PV: delete the LocalVolume (``force``: make its policy Delete first)."""

    force: bool


@dataclass(frozen=True)
class ReportNodeLost:
    message: str


@dataclass(frozen=True)
class Wait:
    """The node may come back within the grace period: look again after ``after`` seconds."""

    after: float


@dataclass(frozen=True)
class Forget:
    """Gone past the grace period: remove our finalizer and say the data was NOT deleted."""

    message: str


VolumeAction = (
    Nothing | StampNodeGone | ClearNodeGone | HandleDeletion | DeleteRecord | ReportNodeLost
)

# --- decisions (pure) ----------------------------------------------------------------------------


def decide_volume(
    lv: VolumeView, node: NodeReport, claim: ClaimView | None, *, pv_exists: bool
) -> VolumeAction:
    """The next step for one LocalVolume, from its node, its claim (by name) and its PV."""
    expected_uid = lv.node_uid if lv.node_uid is not None else node.node_uid
    same_machine = node.exists and node.node_uid == expected_uid
    if not same_machine and not lv.node_gone_since:
        return StampNodeGone()
    if same_machine and lv.node_gone_since:
        return ClearNodeGone()
    if lv.deleting:
        return HandleDeletion()
    claim_alive = claim is not None and claim.uid == lv.claim_uid
    if not claim_alive and not pv_exists:
        # No claim and no PV: created for a claim that went away before its PV existed, or its
        # PV was deleted. Delete policy: remove it. Retain: only if nothing was ever handed out
        # (not Ready); a Ready one is kept as the record of retained data.
        if lv.reclaim_policy == "Delete":
            return DeleteRecord(force=False)
        if lv.phase != "Ready":
            return DeleteRecord(force=True)
        return Nothing("retained: the record of kept data")
    if not same_machine and claim is not None and not lv.loss_reported:
        return ReportNodeLost(
            f"node {lv.node} that holds {lv.name} is gone or was re-created; "
            "its data is not reachable"
        )
    return Nothing()


def decide_release(
    lv: VolumeView, node: NodeReport, gone_for: float | None, grace: float
) -> Nothing | Wait | Forget:
    """What to do with a LocalVolume being deleted, given how long its node has been gone."""
    if not lv.has_finalizer:
        return Nothing("no finalizer of ours")
    decision = release_decision(node, lv.node_uid or "", gone_for, grace)
    if decision is Release.AGENT:
        return Nothing("the agent deletes the data and removes the finalizer")
    if decision is Release.WAIT:
        return Wait(max(0.5, min(grace - (gone_for or 0.0) + 0.1, 30.0)))
    return Forget(
        f"node {lv.node} is gone (or was re-created) for longer than {grace:.0f}s: "
        f"released the record of {lv.name}; its data at {lv.path} was NOT deleted"
    )


# --- execution -----------------------------------------------------------------------------------


class Volumes:
    """Reconciles one LocalVolume per call: read, decide, act."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile(self, name: str) -> None:
        ctx = self.ctx
        raw = ctx.caches.volumes.get(name)
        if raw is None:
            return
        lv = VolumeView.of(raw)
        report = node_report(
            lv.node, ctx.caches.nodes.get(lv.node), None, ctx.settings.agent_timeout
        )
        claim_raw = ctx.caches.pvcs.get(lv.claim_key)
        claim = ClaimView.of(claim_raw) if claim_raw is not None else None
        action = decide_volume(lv, report, claim, pv_exists=ctx.caches.pvs.get(name) is not None)
        if isinstance(action, StampNodeGone):
            ctx.patch_volume(name, {"metadata": {"annotations": {ANNOTATION_NODE_GONE: now_iso()}}})
        elif isinstance(action, ClearNodeGone):
            ctx.patch_volume(name, {"metadata": {"annotations": {ANNOTATION_NODE_GONE: None}}})
        elif isinstance(action, HandleDeletion):
            self._release(lv, report)
        elif isinstance(action, DeleteRecord):
            if not action.force:
                logger.info("removing %s: neither its claim nor its PV exists", name)
            ctx.delete_volume(name, force_delete=action.force)
        elif isinstance(action, ReportNodeLost):
            assert claim is not None
            ctx.events.claim(claim.obj, "NodeLost", action.message, warning=True)
            ctx.patch_volume(
                name, {"metadata": {"annotations": {ANNOTATION_LOSS_REPORTED: "true"}}}
            )

    def _release(self, lv: VolumeView, report: NodeReport) -> None:
        ctx = self.ctx
        step = decide_release(
            lv, report, age_seconds(lv.node_gone_since or None), ctx.settings.node_gone_grace
        )
        if isinstance(step, Wait):
            raise RetryLater(step.after, "node gone, within grace")
        if not isinstance(step, Forget):
            return
        meta = lv.obj["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        with kube_errors(f"release LocalVolume {lv.name}"):
            ctx.client.patch(
                LocalVolume,
                lv.name,
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": meta["resourceVersion"],
                    },
                    {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
                ],
                patch_type=PatchType.JSON,
            )
        ctx.events.volume(lv.obj, "ReleasedNodeGone", step.message, warning=True)
        pv = ctx.caches.pvs.get(lv.name)
        if pv is not None:
            ctx.events.pv(pv, "ReleasedNodeGone", step.message, warning=True)
