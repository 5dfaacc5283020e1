"""The hostpath backend: a directory per volume under an allow-listed root."""

from __future__ import annotations

from flotilla.localpv.backends.base import Realised, RootedPools, VolumeSpec
from flotilla.localpv.backends.safefs import make_volume_dir, remove_volume_dir, tree_usage
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
        path = make_volume_dir(root.path, spec.subpath, spec.owner)
        return Realised(path, spec.size)

    def expand(self, spec: VolumeSpec) -> int:
        self._root(spec.pool)
        return spec.size

    def delete(self, spec: VolumeSpec) -> bool:
        root = self._root(spec.pool)
        return remove_volume_dir(root.path, spec.subpath)

    def usage(self, spec: VolumeSpec) -> int | None:
        root = self._root(spec.pool)
        try:
            return tree_usage(root.path, spec.subpath)
        except FileNotFoundError:
            return None
