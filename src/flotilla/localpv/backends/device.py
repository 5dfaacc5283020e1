"""device backend: a whole disk or partition per volume, raw (Block) or formatted (ext4/xfs).

Exclusivity: the controller places at most one volume per device (a device pool is full as soon
as anything is allocated on it) and the agent refuses a second claim on a device it already holds.
On release the filesystem is unmounted and every signature wiped, plus the first and last MiB.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence

from flotilla.localpv.backends.base import BackendError, PoolStatus, Realised, VolumeSpec
from flotilla.localpv.backends.discovery import DeviceFilter, Disk, discover
from flotilla.localpv.model import Backend, VolumeMode
from flotilla.localpv.policies import InvalidInput, validate_component

WIPE_BYTES = 1 << 20


def mkfs_command(fs_type: str, device: str) -> list[str]:
    """Format ``device``; forced because we only format devices we own and have wiped."""
    if fs_type == "ext4":
        return ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", device]
    if fs_type == "xfs":
        return ["mkfs.xfs", "-q", "-f", device]
    raise InvalidInput(f"unsupported fsType {fs_type!r}")


def _run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise BackendError(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _fs_of(device: str) -> str:
    proc = subprocess.run(
        ["blkid", "-o", "value", "-s", "TYPE", device],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip()


def _is_mounted(path: str) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == path for line in mounts if len(line.split()) > 1)


class DeviceBackend:
    """Hands out eligible block devices found by discovery; never anything else."""

    kind = Backend.DEVICE

    def __init__(self, include: Sequence[str], *, mount_root: str) -> None:
        self.mount_root = os.path.realpath(mount_root)
        self.rule = DeviceFilter(tuple(include), owned_mount_root=self.mount_root)

    def inventory(self) -> list[Disk]:
        """Eligible disks now (published as BlockDevice objects by the agent)."""
        return discover(self.rule)

    def _device(self, pool: str) -> Disk:
        for disk in self.inventory():
            if disk.path == pool:
                return disk
        raise InvalidInput(f"{pool!r} is not an eligible device on this node")

    def pools(self) -> list[PoolStatus]:
        return [PoolStatus(d.path, d.size, d.size) for d in self.inventory()]

    def _mount_dir(self, spec: VolumeSpec) -> str:
        validate_component(spec.name)
        return os.path.join(self.mount_root, spec.name)

    def create(self, spec: VolumeSpec) -> Realised:
        disk = self._device(spec.pool)
        if spec.volume_mode is VolumeMode.BLOCK:
            return Realised(disk.path, disk.size, VolumeMode.BLOCK)
        target = self._mount_dir(spec)
        if not _is_mounted(target):
            if _fs_of(disk.path) != spec.fs_type:
                _run(["wipefs", "-a", disk.path])
                _run(mkfs_command(spec.fs_type, disk.path))
            os.makedirs(target, mode=0o700, exist_ok=True)
            _run(["mount", "-t", spec.fs_type, disk.path, target])
        os.chmod(target, spec.owner.mode)
        if spec.owner.uid is not None or spec.owner.gid is not None:
            os.chown(
                target,
                -1 if spec.owner.uid is None else spec.owner.uid,
                -1 if spec.owner.gid is None else spec.owner.gid,
            )
        return Realised(target, disk.size)

    def expand(self, spec: VolumeSpec) -> int:
        raise BackendError("a whole-device volume cannot grow")

    def delete(self, spec: VolumeSpec) -> bool:
        disk = self._device(spec.pool)
        if spec.volume_mode is VolumeMode.FILESYSTEM:
            target = self._mount_dir(spec)
            if _is_mounted(target):
                _run(["umount", target])
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(target)
        wipe(disk.path, disk.size)
        return True

    def usage(self, spec: VolumeSpec) -> int | None:
        if spec.volume_mode is VolumeMode.BLOCK:
            return None
        target = self._mount_dir(spec)
        if not _is_mounted(target):
            return None
        st = os.statvfs(target)
        return (st.f_blocks - st.f_bfree) * st.f_frsize


def wipe(device: str, size: int) -> None:
    """Remove every signature and zero the head and tail, so the next owner sees a blank disk."""
    _run(["wipefs", "-a", device])
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        zeros = bytes(WIPE_BYTES)
        os.pwrite(fd, zeros, 0)
        if size > 2 * WIPE_BYTES:
            os.pwrite(fd, zeros, size - WIPE_BYTES)
        os.fsync(fd)
    finally:
        os.close(fd)
