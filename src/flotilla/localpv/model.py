"""Names, constants and the plain data the provisioner's decisions are made over.

Everything here is free of I/O: the controller and agent translate Kubernetes JSON into these
dataclasses, and the pure functions in :mod:`flotilla.localpv.policies` decide over them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

PROVISIONER = "localpv.flotilla.dev"
GROUP = "localpv.flotilla.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

FINALIZER = f"{GROUP}/volume"
"""On LocalVolume: the agent removes it only after the data is gone (or deliberately kept)."""

SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"

LABEL_NODE = f"{GROUP}/node"
LABEL_BACKEND = f"{GROUP}/backend"
LABEL_CLASS = f"{GROUP}/storage-class"
ANNOTATION_SUBDIR = f"{GROUP}/subdir"
"""PVC annotation: a user-chosen name that the class's ``pathPattern`` may use as ``{subdir}``."""

DEFAULT_NODE_AFFINITY_KEY = "kubernetes.io/hostname"
DEFAULT_PATH_PATTERN = "{namespace}_{pvc}_{pv}"


class Backend(enum.StrEnum):
    """Where a volume's bytes live on its node."""

    HOSTPATH = "hostpath"
    BTRFS = "btrfs"
    DEVICE = "device"
    LVM = "lvm"


class Phase(enum.StrEnum):
    """Lifecycle of a LocalVolume as the node agent reports it."""

    PENDING = "Pending"
    READY = "Ready"
    FAILED = "Failed"


class VolumeMode(enum.StrEnum):
    FILESYSTEM = "Filesystem"
    BLOCK = "Block"


@dataclass(frozen=True)
class ClassParams:
    """A StorageClass's ``parameters``, validated. Sizes in bytes, mode as an int."""

    backend: Backend = Backend.HOSTPATH
    path_pattern: str = DEFAULT_PATH_PATTERN
    node_affinity_key: str = DEFAULT_NODE_AFFINITY_KEY
    uid: int | None = None
    gid: int | None = None
    mode: int = 0o777
    fs_type: str = "ext4"
    """Device backend only: ext4 or xfs, used when the claim is not ``volumeMode: Block``."""
    volume_group: str = ""
    """LVM backend only: the volume group to carve logical volumes from."""


@dataclass(frozen=True)
class Claim:
    """What the controller needs to know about one PersistentVolumeClaim."""

    namespace: str
    name: str
    uid: str
    size: int
    access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    volume_mode: VolumeMode = VolumeMode.FILESYSTEM
    has_selector: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    data_source_pvc: str | None = None
    """Name of a PVC in the same namespace to clone from (``spec.dataSource``)."""

    @property
    def pv_name(self) -> str:
        """Deterministic: a controller restarted mid-way finds its own work, never a twin."""
        return f"pvc-{self.uid}"


@dataclass(frozen=True)
class Pool:
    """One place on a node that volumes are carved from: a hostpath or btrfs root, a device."""

    node: str
    backend: Backend
    name: str
    """Root directory, or BlockDevice name for the device backend."""
    budget: int
    """Bytes the pool may promise in total (configured budget, or the filesystem's size)."""
    free: int
    """Bytes free on the filesystem as last reported by the agent."""


@dataclass(frozen=True)
class Allocation:
    """A volume already placed (or being placed) in a pool."""

    node: str
    backend: Backend
    pool: str
    size: int
    subpath: tuple[str, ...] = ()
    """Directory backends: the volume's directory under the pool's root (for nesting checks)."""
    name: str = ""
    """The LocalVolume's name, to say which volume a new one would collide with."""

    @property
    def directory(self) -> tuple[str, ...]:
        """Absolute path as components (root plus subpath); empty for devices and LVs.

        Compared across pools, because two configured roots may themselves nest.
        """
        if self.backend not in (Backend.HOSTPATH, Backend.BTRFS) or not self.subpath:
            return ()
        return (*(p for p in self.pool.split("/") if p), *self.subpath)


@dataclass(frozen=True)
class NodeReport:
    """What the controller knows about one node and its agent."""

    name: str
    exists: bool
    node_uid: str = ""
    agent_uid: str = ""
    """The node UID the agent saw when it last reported; differs when a node was re-created."""
    agent_alive: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    pools: tuple[Pool, ...] = ()
