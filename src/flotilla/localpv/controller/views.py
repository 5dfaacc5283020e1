"""Typed, read-only views of the cached Kubernetes objects the controller decides over.

The informers hold plain dicts; each reconcile reads its object through one of these views, so the
``decide_…`` functions see named fields instead of dict paths and stay pure. ``obj`` keeps the
original dict for what needs the whole object (Events, manifests, model translation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flotilla.localpv.model import FINALIZER, GROUP, PROVISIONED_BY, PROVISIONER, SELECTED_NODE
from flotilla.localpv.policies import InvalidInput, whole_number

Obj = dict[str, Any]

ANNOTATION_NODE_GONE = f"{GROUP}/node-gone-since"
ANNOTATION_LOSS_REPORTED = f"{GROUP}/node-loss-reported"


@dataclass(frozen=True)
class Nothing:
    """The action of a pass that finds nothing to do (``why`` is for tests and debug logs)."""

    why: str = ""


@dataclass(frozen=True)
class ClassView:
    """A StorageClass as the controller reads it."""

    name: str
    ours: bool
    wait_for_first_consumer: bool
    parameters: dict[str, str] = field(default_factory=dict)
    reclaim_policy: str = "Delete"

    @classmethod
    def of(cls, sc: Obj) -> ClassView:
        return cls(
            name=str(sc["metadata"]["name"]),
            ours=sc.get("provisioner") == PROVISIONER,
            wait_for_first_consumer=sc.get("volumeBindingMode") == "WaitForFirstConsumer",
            parameters={str(k): str(v) for k, v in (sc.get("parameters") or {}).items()},
            reclaim_policy=str(sc.get("reclaimPolicy") or "Delete"),
        )


@dataclass(frozen=True)
class ClaimView:
    """A PersistentVolumeClaim: identity, class, binding, the node the scheduler chose, sizes."""

    namespace: str
    name: str
    uid: str
    deleting: bool
    storage_class: str
    volume_name: str
    selected_node: str
    requested: str
    """``spec.resources.requests.storage`` as written (a quantity), empty when absent."""
    capacity: str
    """``status.capacity.storage`` (what the claim has), ``0`` before binding."""
    obj: Obj = field(compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def pv_name(self) -> str:
        """Deterministic: a controller restarted mid-way finds its own work, never a twin."""
        return f"pvc-{self.uid}"

    @classmethod
    def of(cls, pvc: Obj) -> ClaimView:
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        requests = (spec.get("resources") or {}).get("requests") or {}
        capacity = ((pvc.get("status") or {}).get("capacity") or {}).get("storage", "0")
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta["name"]),
            uid=str(meta.get("uid", "")),
            deleting=bool(meta.get("deletionTimestamp")),
            storage_class=str(spec.get("storageClassName") or ""),
            volume_name=str(spec.get("volumeName") or ""),
            selected_node=str((meta.get("annotations") or {}).get(SELECTED_NODE) or ""),
            requested=str(requests.get("storage") or ""),
            capacity=str(capacity),
            obj=pvc,
        )


@dataclass(frozen=True)
class VolumeView:
    """A LocalVolume: where it lives, for whom, how far the node agent got."""

    name: str
    node: str
    node_uid: str | None
    """The Node UID recorded at placement; None when the record has none (then any UID fits)."""
    deleting: bool
    has_finalizer: bool
    phase: str
    message: str
    size: int
    capacity: int
    backend: str
    pool: str
    path: str
    reclaim_policy: str
    claim_namespace: str
    claim_name: str
    claim_uid: str
    node_gone_since: str
    loss_reported: bool
    obj: Obj = field(compare=False, repr=False)

    @property
    def claim_key(self) -> str:
        return f"{self.claim_namespace}/{self.claim_name}"

    @classmethod
    def of(cls, lv: Obj) -> VolumeView:
        meta, spec, status = lv["metadata"], lv.get("spec") or {}, lv.get("status") or {}
        annotations = meta.get("annotations") or {}
        claim = spec.get("claim") or {}
        node_uid = spec.get("nodeUID")
        return cls(
            name=str(meta["name"]),
            node=str(spec.get("node", "")),
            node_uid=None if node_uid is None else str(node_uid),
            deleting=bool(meta.get("deletionTimestamp")),
            has_finalizer=FINALIZER in (meta.get("finalizers") or []),
            phase=str(status.get("phase") or ""),
            message=str(status.get("message") or "unknown error"),
            size=_int(spec.get("size")),
            capacity=_int(status.get("capacity")),
            backend=str(spec.get("backend", "")),
            pool=str(spec.get("pool", "")),
            path=str(status.get("path") or "?"),
            reclaim_policy=str(spec.get("reclaimPolicy") or ""),
            claim_namespace=str(claim.get("namespace") or ""),
            claim_name=str(claim.get("name") or ""),
            claim_uid=str(claim.get("uid") or ""),
            node_gone_since=str(annotations.get(ANNOTATION_NODE_GONE) or ""),
            loss_reported=bool(annotations.get(ANNOTATION_LOSS_REPORTED)),
            obj=lv,
        )


@dataclass(frozen=True)
class PVView:
    """A PersistentVolume: ours or not, and whether its claim let it go."""

    name: str
    deleting: bool
    ours: bool
    phase: str
    reclaim_policy: str
    obj: Obj = field(compare=False, repr=False)

    @classmethod
    def of(cls, pv: Obj) -> PVView:
        meta = pv["metadata"]
        return cls(
            name=str(meta["name"]),
            deleting=bool(meta.get("deletionTimestamp")),
            ours=(meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER,
            phase=str((pv.get("status") or {}).get("phase") or ""),
            reclaim_policy=str((pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") or ""),
            obj=pv,
        )


def _int(value: Any) -> int:
    try:
        return whole_number(value or 0, "size")
    except InvalidInput:
        return 0
