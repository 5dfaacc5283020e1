"""The node half: realises this node's LocalVolumes on disk and reports what the node can offer.

The agent trusts nothing in a LocalVolume beyond what its own configuration allows: the pool must
be one of its roots or devices, the subpath is re-validated, and a volume recorded for another
incarnation of this node (different Node UID) is never created or deleted here.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn

from lightkube import Client
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from flotilla.core.kube import (
    Informer,
    KubeConflictError,
    KubeNotFoundError,
    kube_errors,
    post_event,
    to_dict,
    warm_up_decoders,
)
from flotilla.localpv import manifests
from flotilla.localpv.backends import BackendError, VolumeBackend, VolumeSpec
from flotilla.localpv.backends.safefs import NestedVolume, Owner
from flotilla.localpv.model import API_VERSION, FINALIZER, LABEL_NODE, Backend, VolumeMode
from flotilla.localpv.policies import (
    MAX_ID,
    InvalidInput,
    nesting_volume,
    nests,
    validate_subpath,
    whole_number,
)
from flotilla.localpv.resources import (
    BlockDevice,
    LocalNode,
    LocalVolume,
    Obj,
    allocation_from,
    create_object,
    now_iso,
    with_kind,
)
from flotilla.localpv.runtime import RetryLater, WorkQueue, every, start_workers

logger = logging.getLogger(__name__)
COMPONENT = "flotilla-localpv-agent"


@dataclass(frozen=True)
class AgentSettings:
    """Knobs of one node agent; read from flags at the entry point only."""

    node: str
    heartbeat: float = 5.0
    """Seconds between LocalNode reports (pools, free bytes, liveness)."""
    usage_interval: float = 30.0
    """Seconds between measurements of used bytes per volume (metrics and status)."""
    workers: int = 2
    metrics_port: int | None = None
    """Serve Prometheus metrics on 127.0.0.1:PORT when set."""
    metrics_address: str = "127.0.0.1"
    extra: dict[str, str] = field(default_factory=dict)


def spec_from(lv: Obj) -> VolumeSpec:
    """Translate a LocalVolume into a backend request, re-validating what a backend relies on."""
    spec = lv["spec"]
    owner = spec.get("owner") or {}
    source = None
    if spec.get("source"):
        src = spec["source"]
        source = VolumeSpec(
            name=str(src.get("volume", "")),
            pool=str(src.get("pool", "")),
            size=0,
            subpath=validate_subpath(list(src.get("subpath") or [])),
        )
    mode = owner.get("mode")
    if mode is not None and (type(mode) is not int or mode & ~0o777):
        raise InvalidInput(f"mode {mode!r} is not a permission mode")
    uid, gid = (
        None if owner.get(k) is None else whole_number(owner[k], k, limit=MAX_ID)
        for k in ("uid", "gid")
    )
    backend = Backend(spec["backend"])
    subpath = (
        validate_subpath(list(spec.get("subpath") or []))
        if backend in (Backend.HOSTPATH, Backend.BTRFS)
        else (lv["metadata"]["name"],)
    )
    return VolumeSpec(
        name=lv["metadata"]["name"],
        pool=str(spec["pool"]),
        size=whole_number(spec["size"], "size"),
        subpath=subpath,
        owner=Owner(uid, gid, 0o777 if mode is None else mode),
        volume_mode=VolumeMode(spec.get("volumeMode") or "Filesystem"),
        fs_type=str(spec.get("fsType") or "ext4"),
        source=source,
    )


class Agent:
    """Reconciles LocalVolumes labelled with this node and publishes the node's pools."""

    def __init__(
        self, client: Client, settings: AgentSettings, backends: dict[Backend, VolumeBackend]
    ) -> None:
        self.client = client
        self.settings = settings
        self.backends = backends
        self.queue: WorkQueue[str] = WorkQueue()
        self.stop_event = threading.Event()
        self.node_uid = ""
        self.volumes = Informer(
            client,
            LocalVolume,
            labels={LABEL_NODE: settings.node},
            on_change=self._on_volume,
            name="volume",
        )
        self.node = Informer(
            client,
            Node,
            fields={"metadata.name": settings.node},
            on_change=self._on_node,
            name="node",
        )
        self.metrics: Any = None
        warm_up_decoders(Event)
        self._devices_seen: dict[str, Obj] = {}
        self._refused_deletes: set[str] = set()

    def start(self) -> None:
        self.node.start()
        self.node.synced.wait(30)
        self._refresh_node_uid()
        self.volumes.start()
        self.volumes.synced.wait(30)
        if self.settings.metrics_port is not None:
            from flotilla.localpv.node.metrics import AgentMetrics

            self.metrics = AgentMetrics(self.settings.node)
            self.metrics.serve(self.settings.metrics_address, self.settings.metrics_port)
        every(self.settings.heartbeat, self.stop_event, self.report, "heartbeat")
        every(self.settings.usage_interval, self.stop_event, self.measure, "usage")
        start_workers(
            self.queue,
            self.reconcile,
            self.settings.workers,
            self.stop_event,
            f"agent-{self.settings.node}",
        )
        logger.info(
            "localpv agent for %s running (backends: %s)",
            self.settings.node,
            ", ".join(b.value for b in self.backends),
        )

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.close()
        self.volumes.stop()
        self.node.stop()

    def _refresh_node_uid(self) -> None:
        node = self.node.get(self.settings.node)
        self.node_uid = node["metadata"].get("uid", "") if node else ""

    def _on_node(self, _kind: str, _obj: Obj) -> None:
        self._refresh_node_uid()
        for lv in self.volumes.items():
            self.queue.add(lv["metadata"]["name"])

    def _on_volume(self, _kind: str, lv: Obj) -> None:
        self.queue.add(lv["metadata"]["name"])

    # --- reporting ---------------------------------------------------------------------------

    def pools(self) -> list[Obj]:
        result = []
        for kind, backend in self.backends.items():
            try:
                for pool in backend.pools():
                    result.append(
                        {
                            "backend": kind.value,
                            "name": pool.name,
                            "budget": pool.budget,
                            "free": pool.free,
                        }
                    )
            except (OSError, BackendError) as exc:
                logger.warning("cannot measure %s pools: %s", kind, exc)
        return result

    def report(self) -> None:
        """Heartbeat: the LocalNode says this agent is alive, for which Node UID, with what room."""
        self._refresh_node_uid()
        pools = self.pools()
        status = {"nodeUID": self.node_uid, "heartbeat": now_iso(), "pools": pools}
        if self.metrics is not None:
            self.metrics.pools(pools)
        self._publish_devices()
        try:
            with kube_errors("report LocalNode"):
                self.client.patch(
                    LocalNode, self.settings.node, {"status": status}, patch_type=PatchType.MERGE
                )
        except KubeNotFoundError:
            body = {
                "apiVersion": API_VERSION,
                "kind": "LocalNode",
                "metadata": {"name": self.settings.node},
                "spec": {},
                "status": status,
            }
            with contextlib.suppress(KubeConflictError):
                create_object(self.client, LocalNode, body)

    def _publish_devices(self) -> None:
        backend = self.backends.get(Backend.DEVICE)
        inventory = getattr(backend, "inventory", None)
        if inventory is None:
            return
        try:
            disks = inventory()
        except (OSError, BackendError, subprocess.SubprocessError) as exc:
            logger.warning("disk discovery failed: %s", exc)
            return
        holders = {
            lv["spec"].get("pool"): lv["metadata"]["name"]
            for lv in self.volumes.items()
            if lv["spec"].get("backend") == Backend.DEVICE.value
        }
        for disk in disks:
            body = manifests.block_device(self.settings.node, disk, holders.get(disk.path))
            name = body["metadata"]["name"]
            if self._devices_seen.get(name) == body:
                continue
            try:
                with kube_errors(f"publish BlockDevice {name}"):
                    self.client.patch(BlockDevice, name, body, patch_type=PatchType.MERGE)
            except KubeNotFoundError:
                create_object(self.client, BlockDevice, body)
            logger.info("BlockDevice %s (%s): %s", name, disk.path, body["status"]["state"])
            self._devices_seen[name] = body

    def measure(self) -> None:
        """Used bytes per Ready volume, into its status and the metrics."""
        for lv in self.volumes.items():
            if lv.get("status", {}).get("phase") != "Ready" or lv["metadata"].get(
                "deletionTimestamp"
            ):
                continue
            try:
                spec = spec_from(lv)
                backend = self.backends.get(Backend(lv["spec"]["backend"]))
                used = backend.usage(spec) if backend else None
            except (InvalidInput, BackendError, OSError, ValueError) as exc:
                logger.debug("cannot measure %s: %s", lv["metadata"]["name"], exc)
                continue
            if self.metrics is not None:
                self.metrics.volume(
                    spec.name, lv["spec"]["backend"], int(lv["status"].get("capacity", 0)), used
                )
            if used is not None and used != lv["status"].get("usedBytes"):
                self._status(lv, {"usedBytes": used})

    # --- reconcile ---------------------------------------------------------------------------

    def _status(self, lv: Obj, status: Obj) -> None:
        name = lv["metadata"]["name"]
        with kube_errors(f"update status of {name}"):
            obj = self.client.patch(
                LocalVolume, name, {"status": status}, patch_type=PatchType.MERGE
            )
        self.volumes.put(to_dict(obj))

    def _event(self, lv: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        post_event(
            self.client,
            with_kind(lv, API_VERSION, "LocalVolume"),
            reason,
            message,
            warning=warning,
            component=COMPONENT,
        )

    def reconcile(self, name: str) -> None:
        lv = self.volumes.get(name)
        if lv is None or lv.get("spec", {}).get("node") != self.settings.node:
            return
        meta, spec = lv["metadata"], lv["spec"]
        status = lv.get("status") or {}
        if spec.get("nodeUID") and self.node_uid and spec["nodeUID"] != self.node_uid:
            # Recorded for an earlier Node object of this name: not ours to create or delete.
            if not meta.get("deletionTimestamp") and status.get("phase") == "Pending":
                self._status(
                    lv,
                    {
                        "phase": "Failed",
                        "message": "node was re-created since this volume was placed",
                    },
                )
            return
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                self._remove(lv)
            return
        phase = status.get("phase") or "Pending"
        if phase == "Pending":
            self._create(lv)
        elif phase == "Ready" and int(spec.get("size", 0)) > int(status.get("capacity", 0)):
            self._expand(lv)

    def _backend(self, lv: Obj) -> VolumeBackend:
        try:
            kind = Backend(lv["spec"]["backend"])
        except (KeyError, ValueError) as exc:
            raise InvalidInput(f"unknown backend {lv['spec'].get('backend')!r}") from exc
        backend = self.backends.get(kind)
        if backend is None:
            raise InvalidInput(f"backend {kind} is not configured on node {self.settings.node}")
        return backend

    def _create(self, lv: Obj) -> None:
        try:
            backend = self._backend(lv)
            if backend.kind is Backend.DEVICE:
                self._check_exclusive(lv)
            self._check_disjoint(lv)
            realised = backend.create(spec_from(lv))
        except (InvalidInput, BackendError, OSError, ValueError, KeyError) as exc:
            logger.warning("cannot create %s: %s", lv["metadata"]["name"], exc)
            self._status(lv, {"phase": "Failed", "message": str(exc)[:1000]})
            self._event(lv, "CreateFailed", str(exc), warning=True)
            return
        self._status(
            lv,
            {"phase": "Ready", "path": realised.path, "capacity": realised.capacity, "message": ""},
        )

    def _check_exclusive(self, lv: Obj) -> None:
        for other in self.volumes.items():
            if (
                other["metadata"]["name"] != lv["metadata"]["name"]
                and other["spec"].get("backend") == Backend.DEVICE.value
                and other["spec"].get("pool") == lv["spec"].get("pool")
            ):
                raise InvalidInput(
                    f"device {lv['spec'].get('pool')} is already claimed by "
                    f"{other['metadata']['name']}"
                )

    def _check_disjoint(self, lv: Obj) -> None:
        """The controller placed it apart from every other volume; re-check with our own cache."""
        mine = allocation_from(lv)
        others = [a for a in (allocation_from(o) for o in self.volumes.items()) if a is not None]
        other = nesting_volume(mine, others) if mine is not None else None
        if other is not None:
            raise NestedVolume(
                f"{lv['metadata']['name']} would contain or sit inside the "
                f"directory of volume {other}; refusing to create it"
            )

    def _inside(self, lv: Obj) -> str | None:
        """A volume of this node whose directory lies strictly inside ``lv``'s."""
        mine = allocation_from(lv)
        if mine is None or not mine.directory:
            return None
        for other in (allocation_from(o) for o in self.volumes.items()):
            if (
                other is not None
                and other.name != mine.name
                and len(other.directory) > len(mine.directory)
                and nests(mine.directory, other.directory)
            ):
                return other.name
        return None

    def _refuse_delete(self, lv: Obj, reason: str) -> NoReturn:
        """Keep the finalizer: the data is still there and must not go with another's."""
        name = lv["metadata"]["name"]
        if name not in self._refused_deletes:
            self._refused_deletes.add(name)
            self._event(lv, "DeleteRefused", reason, warning=True)
        logger.warning("not deleting %s: %s", name, reason)
        raise RetryLater(30, reason)

    def _expand(self, lv: Obj) -> None:
        try:
            capacity = self._backend(lv).expand(spec_from(lv))
        except (InvalidInput, BackendError, OSError, ValueError) as exc:
            self._status(lv, {"message": f"expansion failed: {exc}"[:1000]})
            self._event(lv, "ExpandFailed", str(exc), warning=True)
            return
        self._status(lv, {"capacity": capacity, "message": ""})
        self._event(lv, "Expanded", f"now {capacity} bytes")

    def _remove(self, lv: Obj) -> None:
        name = lv["metadata"]["name"]
        spec = lv["spec"]
        path = lv.get("status", {}).get("path", "?")
        if spec.get("reclaimPolicy", "Delete") == "Delete":
            inside = self._inside(lv)
            if inside is not None:
                self._refuse_delete(lv, f"volume {inside} lives inside {path}")
            try:
                removed = self._backend(lv).delete(spec_from(lv))
            except NestedVolume as exc:
                self._refuse_delete(lv, str(exc))
            except (InvalidInput, ValueError, KeyError) as exc:
                # Nothing this agent may touch: the record was never realised by it.
                removed = False
                self._event(lv, "NothingDeleted", f"refused to delete: {exc}", warning=True)
            message = (
                f"deleted the data at {path}"
                if removed
                else f"no data found at {path}; nothing deleted"
            )
        else:
            message = f"reclaim policy Retain: kept the data at {path}"
        finalizers = [f for f in lv["metadata"].get("finalizers") or [] if f != FINALIZER]
        with kube_errors(f"remove finalizer of {name}"):
            self.client.patch(
                LocalVolume,
                name,
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": lv["metadata"]["resourceVersion"],
                    },
                    {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
                ],
                patch_type=PatchType.JSON,
            )
        if self.metrics is not None:
            self.metrics.forget(name)
        self._refused_deletes.discard(name)
        self._event(lv, "Released", message)
        logger.info("%s: %s", name, message)
