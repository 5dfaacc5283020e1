"""Disk discovery: what block devices a node has, and which of them may be handed out.

``lsblk --json`` output and the ``/dev/disk/by-id`` links are parsed by pure functions; the filter
decides eligibility (allow-listed by glob, writable, not mounted, no partitions, not a system
disk) so that the agent never offers a disk the operator did not mean to give away.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

LSBLK_COLUMNS = "NAME,PATH,SIZE,TYPE,MODEL,SERIAL,ROTA,FSTYPE,MOUNTPOINT,RO,PKNAME"


@dataclass(frozen=True)
class Disk:
    """One block device as discovered."""

    path: str
    size: int
    kind: str
    model: str = ""
    serial: str = ""
    rotational: bool = False
    fs_type: str = ""
    mountpoint: str = ""
    read_only: bool = False
    has_children: bool = False
    by_id: str = ""


def lsblk_command() -> list[str]:
    return ["lsblk", "--json", "--bytes", "--output", LSBLK_COLUMNS]


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true")


def parse_lsblk(text: str, by_id: dict[str, str] | None = None) -> list[Disk]:
    """Flatten ``lsblk --json`` into Disks; a device with partitions is marked ``has_children``."""
    by_id = by_id or {}
    result: list[Disk] = []

    def walk(node: dict[str, Any]) -> None:
        children = node.get("children") or []
        path = node.get("path") or f"/dev/{node.get('name')}"
        result.append(
            Disk(
                path=path,
                size=int(node.get("size") or 0),
                kind=str(node.get("type") or ""),
                model=(node.get("model") or "").strip(),
                serial=(node.get("serial") or "").strip(),
                rotational=_flag(node.get("rota")),
                fs_type=node.get("fstype") or "",
                mountpoint=node.get("mountpoint") or "",
                read_only=_flag(node.get("ro")),
                has_children=bool(children),
                by_id=by_id.get(path, ""),
            )
        )
        for child in children:
            walk(child)

    for device in json.loads(text).get("blockdevices", []):
        walk(device)
    return result


@dataclass(frozen=True)
class DeviceFilter:
    """Which disks may be offered: path globs (required) and a minimum size."""

    include: tuple[str, ...]
    min_size: int = 1 << 20
    owned_mount_root: str = ""
    """Mounts under this directory are ours (a claimed, formatted device), not the system's."""


def eligible(disk: Disk, rule: DeviceFilter) -> bool:
    """May ``disk`` be offered? Never a mounted system disk, a parent of partitions, or r/o."""
    if not any(
        fnmatch.fnmatch(disk.path, g) or (disk.by_id and fnmatch.fnmatch(disk.by_id, g))
        for g in rule.include
    ):
        return False
    if disk.kind not in ("disk", "part", "loop") or disk.read_only or disk.has_children:
        return False
    if disk.size < rule.min_size:
        return False
    return not (
        disk.mountpoint
        and not (rule.owned_mount_root and disk.mountpoint.startswith(rule.owned_mount_root + "/"))
    )


def by_id_links(directory: str = "/dev/disk/by-id") -> dict[str, str]:
    """device path -> its first stable /dev/disk/by-id link."""
    links: dict[str, str] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return links
    for name in names:
        target = os.path.realpath(os.path.join(directory, name))
        links.setdefault(target, os.path.join(directory, name))
    return links


def discover(rule: DeviceFilter) -> list[Disk]:
    """Eligible disks on this machine right now."""
    out = subprocess.run(
        lsblk_command(), capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return [d for d in parse_lsblk(out, by_id_links()) if eligible(d, rule)]
