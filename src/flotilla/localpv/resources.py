"""lightkube resource classes for our custom resources, and translations from raw JSON.

The translations (Kubernetes dict -> model dataclass) are the adapter's only logic; everything
they feed is decided in :mod:`flotilla.localpv.policies`.
"""

from __future__ import annotations

import datetime
from typing import Any

from lightkube import Client

from flotilla.core.kube import custom_resource, kube_errors, to_dict
from flotilla.localpv.model import (
    GROUP,
    VERSION,
    Allocation,
    Backend,
    Claim,
    NodeReport,
    Pool,
    VolumeMode,
)
from flotilla.localpv.policies import InvalidInput, parse_quantity, whole_number

LocalVolume = custom_resource(GROUP, VERSION, "LocalVolume", "localvolumes")
LocalNode = custom_resource(GROUP, VERSION, "LocalNode", "localnodes")
BlockDevice = custom_resource(GROUP, VERSION, "BlockDevice", "blockdevices")

Obj = dict[str, Any]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age_seconds(stamp: str | None) -> float | None:
    """Seconds since an RFC 3339 timestamp we wrote, or None when absent or unreadable."""
    if not stamp:
        return None
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (datetime.datetime.now(datetime.UTC) - when).total_seconds()


def claim_from(pvc: Obj) -> Claim:
    """The fields of a PVC that placement and naming depend on."""
    meta, spec = pvc["metadata"], pvc.get("spec", {})
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        raise InvalidInput("the claim requests no storage")
    source = spec.get("dataSourceRef") or spec.get("dataSource")
    source_pvc = None
    if source:
        if source.get("kind") != "PersistentVolumeClaim" or source.get("apiGroup"):
            raise InvalidInput(
                f"dataSource kind {source.get('kind')} is not supported "
                "(only PersistentVolumeClaim clones)"
            )
        source_pvc = source["name"]
    return Claim(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        size=parse_quantity(str(storage)),
        access_modes=tuple(spec.get("accessModes") or ("ReadWriteOnce",)),
        volume_mode=VolumeMode(spec.get("volumeMode") or "Filesystem"),
        has_selector=bool(spec.get("selector")),
        annotations=dict(meta.get("annotations") or {}),
        data_source_pvc=source_pvc,
    )


def allocation_from(lv: Obj) -> Allocation | None:
    spec = lv.get("spec", {})
    subpath = spec.get("subpath")
    try:
        return Allocation(
            spec["node"],
            Backend(spec["backend"]),
            spec["pool"],
            whole_number(spec["size"], "size"),
            subpath=tuple(str(p) for p in subpath) if isinstance(subpath, list) else (),
            name=str(lv.get("metadata", {}).get("name", "")),
        )
    except (KeyError, ValueError, TypeError):
        return None


def node_report(
    name: str, node: Obj | None, local_node: Obj | None, agent_timeout: float
) -> NodeReport:
    """What the controller knows about ``name`` from its Node and LocalNode objects."""
    if node is None:
        return NodeReport(name=name, exists=False)
    status = (local_node or {}).get("status", {})
    age = age_seconds(status.get("heartbeat"))
    pools = []
    for p in status.get("pools") or []:
        try:
            pools.append(
                Pool(
                    name,
                    Backend(p["backend"]),
                    str(p["name"]),
                    whole_number(p["budget"], "budget"),
                    whole_number(p["free"], "free"),
                )
            )
        except (KeyError, ValueError, TypeError):
            continue
    return NodeReport(
        name=name,
        exists=True,
        node_uid=node["metadata"].get("uid", ""),
        agent_uid=status.get("nodeUID", ""),
        agent_alive=age is not None and age < agent_timeout,
        labels=dict(node["metadata"].get("labels") or {}),
        pools=tuple(pools),
    )


def with_kind(obj: Obj, api_version: str, kind: str) -> Obj:
    """Objects from lists lack apiVersion/kind; events need them."""
    return {
        **obj,
        "apiVersion": obj.get("apiVersion") or api_version,
        "kind": obj.get("kind") or kind,
    }


def create_object(client: Client, resource: type[Any], body: Obj) -> Obj:
    """Create from a dict; an existing object raises KubeConflictError (mapped by kube_errors)."""
    api: Any = client  # lightkube's overloads are per class; ours is dynamic
    with kube_errors(f"create {body.get('kind')} {body.get('metadata', {}).get('name')}"):
        return to_dict(api.create(resource.from_dict(body)))
