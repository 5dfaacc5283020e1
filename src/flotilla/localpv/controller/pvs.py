"""PersistentVolumes: when a claim lets go of one of ours (Released, policy Delete), reclaim it.

The LocalVolume goes first (its node agent deletes exactly that directory, subvolume, LV or
device, then removes the finalizer); the volume's deletion brings us back to delete the PV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lightkube.resources.core_v1 import PersistentVolume

from flotilla.core.kube import KubeNotFoundError, kube_errors
from flotilla.localpv.controller.context import Context
from flotilla.localpv.controller.views import Nothing, PVView, VolumeView

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeleteVolume:
    """Delete the LocalVolume: its agent deletes the data."""


@dataclass(frozen=True)
class DeletePV:
    """The data is gone: delete the PV."""


def decide_pv(pv: PVView | None, lv: VolumeView | None) -> Nothing | DeleteVolume | DeletePV:
    """The next step for one of our PVs and the LocalVolume of the same name."""
    if pv is None or pv.deleting:
        return Nothing("the PV is gone or going")
    if not pv.ours:
        return Nothing("not provisioned by us")
    if pv.phase != "Released" or pv.reclaim_policy != "Delete":
        return Nothing("still claimed, or kept")
    if lv is not None:
        if not lv.deleting:
            return DeleteVolume()
        return Nothing("the volume's deletion brings us back here")
    return DeletePV()


class PersistentVolumes:
    """Reconciles one PV per call: read, decide, act."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile(self, name: str) -> None:
        ctx = self.ctx
        raw = ctx.caches.pvs.get(name)
        if raw is None:
            ctx.memory.forget_pv(name)
            return
        lv_raw = ctx.caches.volumes.get(name)
        action = decide_pv(PVView.of(raw), VolumeView.of(lv_raw) if lv_raw is not None else None)
        if isinstance(action, DeleteVolume):
            logger.info("claim of %s released: deleting its data", name)
            ctx.delete_volume(name)
        elif isinstance(action, DeletePV):
            try:
                with kube_errors(f"delete PersistentVolume {name}"):
                    ctx.client.delete(PersistentVolume, name)
            except KubeNotFoundError:
                pass
