"""``fn run`` with volumes: each one at the path the function reads in the cluster.

A function reads ``/etc/creds/password`` in its pod; under ``fn run`` the same path has to work,
without touching the machine's own ``/etc``. So the runtime starts under ``unshare --mount`` (with
``--user --map-root-user`` when not root, which needs no privilege) and a short ``sh`` script:
- each volume's local directory is bind-mounted at its path, read-only for Secrets and ConfigMaps;
- a path that does not exist gets an overlay on its nearest existing parent first (``mkdir`` then
  writes to a scratch upper directory, never to the machine), and the mounts that were under that
  parent (``/etc/resolv.conf`` in a container, say) are bound back on top of the overlay;
- a path whose first component this machine lacks (``/data``) would need a new root (a mount on
  ``/`` is not seen by path lookups), so it is refused in one line.

Where the files come from (the same tree ``local_source_env`` reads single keys from):
Secret ``db`` → ``.local-config/secrets/db/``, ConfigMap ``settings`` →
``.local-config/configmaps/settings/``, claim ``data`` → ``.local-config/pvcs/data/`` (kept
across runs, as a claim is), ``emptyDir`` → a fresh directory per ``fn run``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .model import FnError, FunctionSpec

__all__ = ["LocalMount", "local_mounts", "mount_command"]

LOCAL_CONFIG = ".local-config"
_FOLDERS = {"secret": "secrets", "configMap": "configmaps", "pvc": "pvcs"}


@dataclass(frozen=True)
class LocalMount:
    target: str
    source: Path
    read_only: bool


def local_mounts(spec: FunctionSpec, project: Path, scratch: Path) -> list[LocalMount]:
    """Where each volume's files come from on this machine; a missing Secret or ConfigMap
    directory is one error naming it (a claim's directory is created, as a new claim is empty)."""
    mounts = []
    for index, volume in enumerate(spec.sources.volumes):
        if volume.kind == "emptyDir":
            source = scratch / f"empty-{index}"
            source.mkdir(parents=True, exist_ok=True)
        else:
            source = project / LOCAL_CONFIG / _FOLDERS[volume.kind] / volume.source
            if volume.kind == "pvc":
                source.mkdir(parents=True, exist_ok=True)
            elif not source.is_dir():
                raise FnError(
                    f"volume {volume.path} comes from {volume.kind} {volume.source}; "
                    f"put its files in {source}"
                )
        mounts.append(LocalMount(volume.path, source, volume.kind in ("secret", "configMap")))
    return mounts


def _existing_parent(target: str) -> str:
    path = PurePosixPath(target)
    for parent in (path, *path.parents):
        if Path(parent).exists():
            return str(parent)
    return "/"


def _mountpoints() -> list[str]:
    """This process's mount points (``/proc/self/mountinfo`` field 5, octal escapes decoded)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(fields[4].encode().decode("unicode_escape"))
    return points


def mount_script(
    mounts: list[LocalMount], scratch: Path, mountpoints: list[str] | None = None
) -> str:
    """The ``sh`` script that makes the mounts, then ``exec "$@"``. Pure given ``mountpoints``.

    Every path is checked before anything is mounted, so a refusal leaves nothing half-done."""
    points = _mountpoints() if mountpoints is None else mountpoints
    lines = ["set -e"]
    overlays: list[str] = []
    for mount in mounts:
        target = PurePosixPath(mount.target)
        if not target.is_absolute() or ".." in target.parts:
            raise FnError(f"volume {mount.target}: needs an absolute path without '..'")
        parent = _existing_parent(mount.target)
        if parent == "/" and mount.target != "/":
            raise FnError(
                f"volume {mount.target}: fn run mounts volumes only under a directory this machine "
                f"has (/{target.parts[1]} does not exist here; /mnt, /srv, /opt, /var or /etc do)"
            )
        if parent != mount.target and parent not in overlays:
            overlays.append(parent)
    for number, parent in enumerate(sorted(overlays, key=lambda p: p.count("/"))):
        base = scratch / f"overlay-{number}"
        stash, upper, work = base / "stash", base / "upper", base / "work"
        for directory in (stash, upper, work):
            directory.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        lines += [
            f"mount --rbind {q(parent)} {q(str(stash))}",
            f"mount -t overlay overlay -o lowerdir={q(parent)},upperdir={q(str(upper))},"
            f"workdir={q(str(work))} {q(parent)}",
        ]
        for point in points:
            if point.startswith(parent.rstrip("/") + "/"):
                inner = str(stash) + point[len(parent.rstrip("/")) :]
                lines.append(f"mount --rbind {q(inner)} {q(point)} 2>/dev/null || true")
    for mount in mounts:
        q = shlex.quote
        lines += [
            f"mkdir -p {q(mount.target)}",
            f"mount --bind {q(str(mount.source))} {q(mount.target)}",
        ]
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {q(mount.target)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def mount_command(argv: list[str], mounts: list[LocalMount], scratch: Path) -> list[str]:
    """``argv`` started in a private mount namespace that has ``mounts``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise FnError("fn run needs unshare (util-linux) to mount the function's volumes")
    namespace = [unshare, "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    return [*namespace, "sh", "-c", mount_script(mounts, scratch), "fn-run-mounts", *argv]
