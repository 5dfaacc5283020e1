"""The hostpath backend: a directory per volume under an allow-listed root."""

from __future__ import annotations

from flotilla.localpv.backends.base import Realised, RootedPools, VolumeSpec
from flotilla.localpv.backends.safefs import (
    check_nothing_inside,
    make_volume_dir,
    registered,
    remove_volume_dir,
    tree_usage,
    unregister,
)
from flotilla.localpv.model import Backend


class HostPathBackend(RootedPools):
    """A directory per volume under allow-listed roots. Size is a promise, not enforced.

    The kernel here offers no ext4/xfs project quota, so the size is accounted against the root's
    budget (capacity-aware scheduling stays honest) but writes past it are not stopped: use btrfs
    for enforcement.
    """

    kind = Backend.HOSTPATH

    def create(self, spec: VolumeSpec) -> Realised:
        root = self._root(spec.pool)
        with registered(root.path, spec.name, spec.subpath):
            path = make_volume_dir(root.path, spec.subpath, spec.owner)
        return Realised(path, spec.size)

    def expand(self, spec: VolumeSpec) -> int:
        self._root(spec.pool)
        return spec.size

    def delete(self, spec: VolumeSpec) -> bool:
        root = self._root(spec.pool)
        check_nothing_inside(root.path, spec.name, spec.subpath)
        removed = remove_volume_dir(root.path, spec.subpath)
        unregister(root.path, spec.name)
        return removed

    def usage(self, spec: VolumeSpec) -> int | None:
        root = self._root(spec.pool)
        try:
            return tree_usage(root.path, spec.subpath)
        except FileNotFoundError:
            return None
