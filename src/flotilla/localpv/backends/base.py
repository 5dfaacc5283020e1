"""The one interface every storage backend implements, and what the root-based ones share.

The agent translates a LocalVolume object into a :class:`VolumeSpec` and calls the backend named
in it; backends never see Kubernetes objects. Pool names come from the agent's own configuration
(allow-list); a spec naming any other pool is refused before a backend is asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from flotilla.localpv.backends.safefs import Owner, filesystem_space
from flotilla.localpv.model import Backend, VolumeMode
from flotilla.localpv.policies import InvalidInput, LocalPVError


class BackendError(LocalPVError):
    """A backend operation failed on the node; the agent reports it on the LocalVolume."""


@dataclass(frozen=True)
class VolumeSpec:
    """What the agent asks a backend for: one volume in one pool."""

    name: str
    pool: str
    size: int
    subpath: tuple[str, ...] = ()
    owner: Owner = field(default_factory=Owner)
    volume_mode: VolumeMode = VolumeMode.FILESYSTEM
    fs_type: str = "ext4"
    source: VolumeSpec | None = None
    """Clone source (same node, same backend, same pool)."""


@dataclass(frozen=True)
class Realised:
    """What exists on the node after ``create``: the PV's ``spec.local.path`` and its size."""

    path: str
    capacity: int
    volume_mode: VolumeMode = VolumeMode.FILESYSTEM


@dataclass(frozen=True)
class PoolStatus:
    """A pool as the agent reports it: budget (bytes it may promise) and free bytes now."""

    name: str
    budget: int
    free: int


class VolumeBackend(Protocol):
    """Create, grow, measure and delete volumes of one kind on this node."""

    kind: Backend

    def pools(self) -> list[PoolStatus]:
        """Pools this node offers, for capacity publishing."""
        ...

    def create(self, spec: VolumeSpec) -> Realised:
        """Make the volume exist; calling it again for the same spec is harmless."""
        ...

    def expand(self, spec: VolumeSpec) -> int:
        """Grow to ``spec.size``; returns the new capacity in bytes."""
        ...

    def delete(self, spec: VolumeSpec) -> bool:
        """Remove the volume's data and only that; False when there was nothing to remove."""
        ...

    def usage(self, spec: VolumeSpec) -> int | None:
        """Bytes used, or None when the backend cannot tell cheaply."""
        ...


@dataclass(frozen=True)
class RootConfig:
    """One allow-listed root directory; ``budget`` caps what it may promise (None: fs size)."""

    path: str
    budget: int | None = None


def parse_root(text: str) -> RootConfig:
    """``/srv/local`` or ``/srv/local=100Gi`` (a budget) from the command line."""
    from flotilla.localpv.policies import parse_quantity

    path, _, budget = text.partition("=")
    if not os.path.isabs(path):
        raise InvalidInput(f"root {path!r} must be an absolute path")
    real = os.path.realpath(path)
    return RootConfig(real, parse_quantity(budget) if budget else None)


class RootedPools:
    """What the root-based backends share: their allow-listed roots, each one a pool."""

    kind: Backend

    def __init__(self, roots: list[RootConfig]) -> None:
        self._roots = {r.path: r for r in roots}

    def _root(self, pool: str) -> RootConfig:
        root = self._roots.get(pool)
        if root is None:
            raise InvalidInput(f"{pool!r} is not a {self.kind.value} root on this node")
        return root

    def pools(self) -> list[PoolStatus]:
        """Capacity is the root's budget when it has one, else its filesystem's size."""
        result = []
        for root in self._roots.values():
            total, free = filesystem_space(root.path)
            result.append(
                PoolStatus(root.path, root.budget if root.budget is not None else total, free)
            )
        return result
