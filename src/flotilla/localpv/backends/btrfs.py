"""btrfs backend: a subvolume per volume, a qgroup limit as the size, snapshots as clones.

Subvolumes are created, snapshotted and destroyed with ioctls on a directory fd opened without
following links (the openat discipline of :mod:`.safefs`); quota commands run ``btrfs`` on
``/proc/self/fd/N`` of such an fd, so no path is resolved twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
from collections.abc import Sequence

from flotilla.localpv.backends.base import (
    BackendError,
    Realised,
    RootConfig,
    RootedPools,
    VolumeSpec,
)
from flotilla.localpv.backends.safefs import (
    UnsafePath,
    check_nothing_inside,
    opened_parent,
    prune_parents,
    registered,
    unregister,
)
from flotilla.localpv.model import Backend
from flotilla.localpv.policies import InvalidInput

_IOC_WRITE = 1
_VOL_ARGS_SIZE = 4096  # struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }
BTRFS_SUBVOLUME_INODE = 256


def _iow(nr: int, size: int) -> int:
    return (_IOC_WRITE << 30) | (size << 16) | (0x94 << 8) | nr


IOC_SNAP_CREATE = _iow(1, _VOL_ARGS_SIZE)
IOC_SUBVOL_CREATE = _iow(14, _VOL_ARGS_SIZE)
IOC_SNAP_DESTROY = _iow(15, _VOL_ARGS_SIZE)


def vol_args(name: str, fd: int = 0) -> bytearray:
    """The ioctl argument block naming ``name`` in the directory the ioctl is issued on."""
    raw = name.encode()
    if not raw or b"/" in raw or len(raw) > 4087:
        raise InvalidInput(f"bad subvolume name {name!r}")
    return bytearray(struct.pack("q4088s", fd, raw))


def qgroup_limit_command(size: int, path: str) -> list[str]:
    """``btrfs qgroup limit`` for the subvolume at ``path`` (referenced bytes, exact)."""
    return ["btrfs", "qgroup", "limit", str(int(size)), path]


def parse_qgroup_show(text: str, subvolume_id: int) -> tuple[int, int | None] | None:
    """(referenced bytes, limit or None) of qgroup ``0/<id>`` in ``btrfs qgroup show --raw -r``."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == f"0/{subvolume_id}":
            limit = None if fields[3] in ("none", "-") else int(fields[3])
            return int(fields[1]), limit
    return None


def parse_rootid(text: str) -> int:
    match = re.search(r"[0-9]+", text)
    if not match:
        raise BackendError(f"cannot parse subvolume id from {text!r}")
    return int(match.group())


def _run(argv: Sequence[str], *, fds: tuple[int, ...] = ()) -> str:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, pass_fds=fds, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise BackendError(f"{' '.join(argv[:3])} failed: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


class BtrfsBackend(RootedPools):
    """Subvolumes under allow-listed roots on btrfs, sized by qgroup limits (enforced)."""

    kind = Backend.BTRFS

    def __init__(self, roots: list[RootConfig], *, enable_quota: bool = True) -> None:
        super().__init__(roots)
        if enable_quota:
            for root in roots:
                _run(["btrfs", "quota", "enable", root.path])

    def _open_subvolume(self, parent: int, name: str) -> int | None:
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
            )
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnsafePath(f"{name} is a symlink or not a directory; refusing") from exc
        if os.fstat(fd).st_ino != BTRFS_SUBVOLUME_INODE:
            os.close(fd)
            raise UnsafePath(f"{name} exists and is not a btrfs subvolume; refusing")
        return fd

    def _limit(self, fd: int, size: int) -> None:
        _run(qgroup_limit_command(size, f"/proc/self/fd/{fd}"), fds=(fd,))

    def create(self, spec: VolumeSpec) -> Realised:
        root = self._root(spec.pool)
        name = spec.subpath[-1]
        with (
            registered(root.path, spec.name, spec.subpath),
            opened_parent(root.path, spec.subpath, create=True) as parent,
        ):
            fd = self._open_subvolume(parent, name)
            if fd is None:
                if spec.source is not None:
                    self._snapshot(spec.source, parent, name)
                else:
                    fcntl.ioctl(parent, IOC_SUBVOL_CREATE, vol_args(name))
                fd = self._open_subvolume(parent, name)
                if fd is None:
                    raise BackendError(f"subvolume {name} vanished right after creation")
                if spec.source is None:
                    owner = spec.owner
                    if owner.uid is not None or owner.gid is not None:
                        os.fchown(
                            fd,
                            -1 if owner.uid is None else owner.uid,
                            -1 if owner.gid is None else owner.gid,
                        )
                    os.fchmod(fd, owner.mode)
            try:
                self._limit(fd, spec.size)
            finally:
                os.close(fd)
        return Realised(os.path.join(root.path, *spec.subpath), spec.size)

    def _snapshot(self, source: VolumeSpec, parent: int, name: str) -> None:
        src_root = self._root(source.pool)
        with opened_parent(src_root.path, source.subpath, create=False) as src_parent:
            src = self._open_subvolume(src_parent, source.subpath[-1])
            if src is None:
                raise BackendError(f"clone source {source.name} has no subvolume on this node")
            try:
                fcntl.ioctl(parent, IOC_SNAP_CREATE, vol_args(name, src))
            finally:
                os.close(src)

    def expand(self, spec: VolumeSpec) -> int:
        root = self._root(spec.pool)
        with opened_parent(root.path, spec.subpath, create=False) as parent:
            fd = self._open_subvolume(parent, spec.subpath[-1])
            if fd is None:
                raise BackendError(f"volume {spec.name} has no subvolume to expand")
            try:
                self._limit(fd, spec.size)
            finally:
                os.close(fd)
        return spec.size

    def delete(self, spec: VolumeSpec) -> bool:
        root = self._root(spec.pool)
        check_nothing_inside(root.path, spec.name, spec.subpath)
        try:
            with opened_parent(root.path, spec.subpath, create=False) as parent:
                fd = self._open_subvolume(parent, spec.subpath[-1])
                if fd is None:
                    unregister(root.path, spec.name)
                    return False
                os.close(fd)
                fcntl.ioctl(parent, IOC_SNAP_DESTROY, vol_args(spec.subpath[-1]))
        except FileNotFoundError:
            unregister(root.path, spec.name)
            return False
        unregister(root.path, spec.name)
        prune_parents(root.path, spec.subpath)
        return True

    def usage(self, spec: VolumeSpec) -> int | None:
        root = self._root(spec.pool)
        with opened_parent(root.path, spec.subpath, create=False) as parent:
            fd = self._open_subvolume(parent, spec.subpath[-1])
            if fd is None:
                return None
            try:
                path = f"/proc/self/fd/{fd}"
                rootid = parse_rootid(
                    _run(["btrfs", "inspect-internal", "rootid", path], fds=(fd,))
                )
                shown = _run(["btrfs", "qgroup", "show", "--raw", "-r", "-f", path], fds=(fd,))
            finally:
                os.close(fd)
        found = parse_qgroup_show(shown, rootid)
        return None if found is None else found[0]
