"""Where a volume's bytes live on its node: one protocol, four backends, and their safe file access.

``base`` holds the protocol and what root-based backends share; ``hostpath``, ``btrfs``,
``device`` and ``lvm`` implement it; ``safefs`` walks directories without following links;
``discovery`` finds the disks the device backend may use. Backends never see Kubernetes objects.
"""

from flotilla.localpv.backends.base import (
    BackendError,
    PoolStatus,
    Realised,
    RootConfig,
    RootedPools,
    VolumeBackend,
    VolumeSpec,
    parse_root,
)
from flotilla.localpv.backends.hostpath import HostPathBackend

__all__ = [
    "BackendError",
    "HostPathBackend",
    "PoolStatus",
    "Realised",
    "RootConfig",
    "RootedPools",
    "VolumeBackend",
    "VolumeSpec",
    "parse_root",
]
