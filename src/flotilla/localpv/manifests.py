"""Kubernetes objects the provisioner writes, built as plain dicts by pure functions.

CRDs, PVs, CSIStorageCapacity and CSIDriver objects, so that their shape is tested without a
cluster and the deploy manifests (``flotilla localpv manifests``) come from the same source.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flotilla.localpv.backends.discovery import Disk
from flotilla.localpv.model import (
    API_VERSION,
    GROUP,
    LABEL_BACKEND,
    LABEL_CLASS,
    LABEL_NODE,
    PROVISIONED_BY,
    PROVISIONER,
    VERSION,
    VolumeMode,
)

Obj = dict[str, Any]

_OPEN: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(
    kind: str, plural: str, short: list[str], spec_props: Obj, status_props: Obj, columns: list[Obj]
) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": spec_props,
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                                "status": {
                                    "type": "object",
                                    "properties": status_props,
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def _col(name: str, path: str, kind: str = "string") -> Obj:
    return {"name": name, "type": kind, "jsonPath": path}


def crds() -> list[Obj]:
    """LocalVolume (one per volume), LocalNode (one per agent), BlockDevice (one per disk).

    No status subresource: the controller writes ``spec`` and the agent writes ``status`` of the
    same object with merge patches, which keeps RBAC to one resource per kind.
    """
    s, i = {"type": "string"}, {"type": "integer"}
    volume = _crd(
        "LocalVolume",
        "localvolumes",
        ["flv"],
        {
            "node": s,
            "nodeUID": s,
            "backend": s,
            "pool": s,
            "size": i,
            "volumeMode": s,
            "subpath": {"type": "array", "items": s},
            "fsType": s,
            "reclaimPolicy": s,
            "source": _OPEN,
            "owner": _OPEN,
            "claim": _OPEN,
            "storageClass": s,
        },
        {"phase": s, "path": s, "capacity": i, "usedBytes": i, "message": s},
        [
            _col("Node", ".spec.node"),
            _col("Backend", ".spec.backend"),
            _col("Size", ".spec.size", "integer"),
            _col("Phase", ".status.phase"),
            _col("Path", ".status.path"),
        ],
    )
    node = _crd(
        "LocalNode",
        "localnodes",
        ["fln"],
        {},
        {"nodeUID": s, "heartbeat": s, "pools": {"type": "array", "items": _OPEN}},
        [_col("Heartbeat", ".status.heartbeat")],
    )
    device = _crd(
        "BlockDevice",
        "blockdevices",
        ["fbd"],
        {
            "node": s,
            "path": s,
            "byId": s,
            "size": i,
            "model": s,
            "serial": s,
            "rotational": {"type": "boolean"},
            "fsType": s,
            "mountpoint": s,
        },
        {"claimedBy": s, "state": s},
        [
            _col("Node", ".spec.node"),
            _col("Path", ".spec.path"),
            _col("Size", ".spec.size", "integer"),
            _col("State", ".status.state"),
        ],
    )
    return [volume, node, device]


def persistent_volume(lv: Obj, *, storage_class: str, affinity_value: str) -> Obj:
    """The PV for a Ready LocalVolume: ``spec.local`` plus node affinity, pre-bound to the claim."""
    spec, status = lv["spec"], lv["status"]
    claim = spec["claim"]
    mode = spec.get("volumeMode", VolumeMode.FILESYSTEM.value)
    # Formatted devices are mounted by the agent, so the path is always a directory or, for
    # volumeMode Block, the device itself; ``local.fsType`` (kubelet formats) is not used.
    local: Obj = {"path": status["path"]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": lv["metadata"]["name"],
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {LABEL_NODE: spec["node"], LABEL_BACKEND: spec["backend"]},
        },
        "spec": {
            "capacity": {"storage": str(status.get("capacity", spec["size"]))},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": spec.get("reclaimPolicy", "Delete"),
            "storageClassName": storage_class,
            "volumeMode": mode,
            "local": local,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim["namespace"],
                "name": claim["name"],
                "uid": claim["uid"],
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": spec.get("nodeAffinityKey", "kubernetes.io/hostname"),
                                    "operator": "In",
                                    "values": [affinity_value],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


def capacity_name(storage_class: str, node: str) -> str:
    """Stable, short, DNS-safe name of the CSIStorageCapacity for one class on one node."""
    digest = hashlib.sha256(f"{storage_class}\x00{node}".encode()).hexdigest()[:16]
    return f"localpv-{digest}"


def storage_capacity(
    namespace: str, storage_class: str, node: str, key: str, value: str, capacity: int, maximum: int
) -> Obj:
    """A CSIStorageCapacity the kube-scheduler reads to filter nodes without room."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIStorageCapacity",
        "metadata": {
            "name": capacity_name(storage_class, node),
            "namespace": namespace,
            "labels": {LABEL_NODE: node, LABEL_CLASS: storage_class},
        },
        "storageClassName": storage_class,
        "nodeTopology": {"matchLabels": {key: value}},
        "capacity": str(capacity),
        "maximumVolumeSize": str(maximum),
    }


def csi_driver() -> Obj:
    """Named like the provisioner so the scheduler's capacity check applies to our classes.

    No kubelet plugin stands behind it: our PVs use ``spec.local``, so it is never called.
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": PROVISIONER},
        "spec": {
            "attachRequired": False,
            "podInfoOnMount": False,
            "storageCapacity": True,
            "volumeLifecycleModes": ["Persistent"],
        },
    }


def block_device(node: str, disk: Disk, claimed_by: str | None) -> Obj:
    """The BlockDevice object for one discovered disk (name stable per node and path)."""
    digest = hashlib.sha256(f"{node}\x00{disk.by_id or disk.path}".encode()).hexdigest()[:16]
    return {
        "apiVersion": API_VERSION,
        "kind": "BlockDevice",
        "metadata": {"name": f"bd-{digest}", "labels": {LABEL_NODE: node}},
        "spec": {
            "node": node,
            "path": disk.path,
            "byId": disk.by_id,
            "size": disk.size,
            "model": disk.model,
            "serial": disk.serial,
            "rotational": disk.rotational,
            "fsType": disk.fs_type,
            "mountpoint": disk.mountpoint,
        },
        "status": {
            "state": "Claimed" if claimed_by else "Unclaimed",
            "claimedBy": claimed_by or "",
        },
    }


def local_volume(name: str, spec: Obj, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalVolume",
        "metadata": {"name": name, "labels": labels, "finalizers": [f"{GROUP}/volume"]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }
