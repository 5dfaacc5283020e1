"""lvm backend: a logical volume per volume in an allow-listed volume group.

This machine's kernel has no device-mapper, so LVM is not exercised end to end here: the commands
are built and their JSON reports parsed by pure functions that the tests check, and the commands
run through an injectable ``runner`` so the whole flow is tested against recorded outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flotilla.localpv.backends.base import BackendError, PoolStatus, Realised, VolumeSpec
from flotilla.localpv.model import Backend, VolumeMode
from flotilla.localpv.policies import InvalidInput, validate_component

Runner = Callable[[Sequence[str]], str]
EXTENT = 4 * 2**20
"""LVM's default extent size: sizes are rounded up to it, and we report the rounded size."""


def run_command(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise BackendError(f"{argv[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def round_to_extent(size: int) -> int:
    return -(-size // EXTENT) * EXTENT


def vgs_command(groups: Sequence[str]) -> list[str]:
    return [
        "vgs",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "vg_name,vg_size,vg_free",
        *groups,
    ]


def lvcreate_command(vg: str, name: str, size: int) -> list[str]:
    return [
        "lvcreate",
        "--yes",
        "--wipesignatures",
        "y",
        "--zero",
        "y",
        "--name",
        name,
        "--size",
        f"{round_to_extent(size)}b",
        vg,
    ]


def lvextend_command(vg: str, name: str, size: int, *, resize_fs: bool) -> list[str]:
    argv = ["lvextend", "--size", f"{round_to_extent(size)}b"]
    if resize_fs:
        argv.append("--resizefs")
    return [*argv, f"{vg}/{name}"]


def lvremove_command(vg: str, name: str) -> list[str]:
    return ["lvremove", "--yes", f"{vg}/{name}"]


def lvs_command(vg: str, name: str) -> list[str]:
    return [
        "lvs",
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "lv_name,vg_name,lv_size,lv_path",
        f"{vg}/{name}",
    ]


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int


def parse_vgs(text: str) -> list[VolumeGroup]:
    """``vgs --reportformat json --units b --nosuffix`` -> volume groups."""
    rows = json.loads(text)["report"][0]["vg"]
    return [VolumeGroup(r["vg_name"], int(r["vg_size"]), int(r["vg_free"])) for r in rows]


def parse_lvs(text: str) -> dict[str, tuple[int, str]]:
    """``lvs --reportformat json`` -> {lv name: (size bytes, device path)}."""
    rows = json.loads(text)["report"][0]["lv"]
    return {r["lv_name"]: (int(r["lv_size"]), r.get("lv_path", "")) for r in rows}


class LvmBackend:
    """Logical volumes in allow-listed volume groups; raw or formatted like the device backend."""

    kind = Backend.LVM

    def __init__(
        self, groups: Sequence[str], *, mount_root: str, runner: Runner = run_command
    ) -> None:
        for group in groups:
            validate_component(group)
        self.groups = tuple(groups)
        self.mount_root = mount_root
        self.run = runner

    def _group(self, pool: str) -> str:
        if pool not in self.groups:
            raise InvalidInput(f"{pool!r} is not an allowed volume group on this node")
        return pool

    def pools(self) -> list[PoolStatus]:
        if not self.groups:
            return []
        return [
            PoolStatus(vg.name, vg.size, vg.free)
            for vg in parse_vgs(self.run(vgs_command(self.groups)))
        ]

    def create(self, spec: VolumeSpec) -> Realised:
        vg = self._group(spec.pool)
        validate_component(spec.name)
        existing = self._lookup(vg, spec.name)
        if existing is None:
            self.run(lvcreate_command(vg, spec.name, spec.size))
            existing = self._lookup(vg, spec.name)
            if existing is None:
                raise BackendError(f"{vg}/{spec.name} missing right after lvcreate")
        size, device = existing
        device = device or f"/dev/{vg}/{spec.name}"
        if spec.volume_mode is VolumeMode.BLOCK:
            return Realised(device, size, VolumeMode.BLOCK)
        target = os.path.join(self.mount_root, spec.name)
        self.run(["mkfs." + spec.fs_type, "-q", device])
        self.run(["mkdir", "-p", target])
        self.run(["mount", device, target])
        return Realised(target, size)

    def _lookup(self, vg: str, name: str) -> tuple[int, str] | None:
        try:
            return parse_lvs(self.run(lvs_command(vg, name))).get(name)
        except BackendError:
            return None

    def expand(self, spec: VolumeSpec) -> int:
        vg = self._group(spec.pool)
        self.run(
            lvextend_command(
                vg, spec.name, spec.size, resize_fs=spec.volume_mode is VolumeMode.FILESYSTEM
            )
        )
        found = self._lookup(vg, spec.name)
        return found[0] if found else round_to_extent(spec.size)

    def delete(self, spec: VolumeSpec) -> bool:
        vg = self._group(spec.pool)
        if self._lookup(vg, spec.name) is None:
            return False
        if spec.volume_mode is VolumeMode.FILESYSTEM:
            target = os.path.join(self.mount_root, spec.name)
            with contextlib.suppress(BackendError):  # not mounted
                self.run(["umount", target])
        self.run(lvremove_command(vg, spec.name))
        return True

    def usage(self, spec: VolumeSpec) -> int | None:
        return None
