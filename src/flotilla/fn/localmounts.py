"""``fn run`` with volumes: each one at the path the function reads in the cluster.

A function reads ``/etc/creds/password`` in its pod; under ``fn run`` the same path has to work,
without touching the machine's own ``/etc``. So the runtime starts under ``unshare --mount`` (with
``--user --map-root-user`` when not root, which needs no privilege) and a short ``sh`` script:
- each volume's local directory is bind-mounted at its path, read-only for Secrets and ConfigMaps;
- a path that does not exist gets an overlay on its nearest existing parent first (``mkdir`` then
  writes to a scratch upper directory, never to the machine), and the mounts that were under that
  parent (``/etc/resolv.conf`` in a container, say) are bound back on top of the overlay;
- a path whose first component this machine lacks (``/data``) needs a new root (a mount on ``/``
  is not seen by path lookups): the root is overlaid in a scratch directory, the other mounts
  bound into it, and the runtime runs chrooted there (still in its project directory).

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

__all__ = ["LOCAL_CONFIG", "LOCAL_FOLDERS", "LocalMount", "local_mounts", "mount_command"]

LOCAL_CONFIG = ".local-config"
# Where .local-config/ keeps each kind of source; env and volumes read the same tree.
LOCAL_FOLDERS = {"secret": "secrets", "configMap": "configmaps", "pvc": "pvcs"}


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
            source = project / LOCAL_CONFIG / LOCAL_FOLDERS[volume.kind] / volume.source
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


def _mount_of(path: str, points: list[str]) -> str:
    """The mount point ``path`` lives on: the longest of ``points`` that contains it."""
    best = "/"
    for point in points:
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best = point
    return best


def _overlay(lines: list[str], at: str, base: Path, points: list[str], prefix: str) -> None:
    """An overlay on ``at`` (already under ``prefix``), with the mounts below it bound back."""
    q = shlex.quote
    stash, upper, work = base / "stash", base / "upper", base / "work"
    for directory in (stash, upper, work):
        directory.mkdir(parents=True, exist_ok=True)
    lines += [
        f"mount --rbind {q(prefix + at)} {q(str(stash))}",
        f"mount -t overlay overlay -o lowerdir={q(prefix + at)},upperdir={q(str(upper))},"
        f"workdir={q(str(work))} {q(prefix + at)}",
    ]
    for point in points:
        if point.startswith(at.rstrip("/") + "/"):
            inner = str(stash) + point[len(at.rstrip("/")) :]
            lines.append(f"mount --rbind {q(inner)} {q(prefix + point)} 2>/dev/null || true")


def mount_script(
    mounts: list[LocalMount], scratch: Path, mountpoints: list[str] | None = None
) -> str:
    """The ``sh`` script that makes the mounts, then runs ``"$@"``. Given ``mountpoints`` it
    reads nothing else; it creates, under ``scratch``, the directories the script mounts on.

    A path whose parent exists gets an overlay on that parent. A path right under ``/`` that
    this machine lacks (``/data``) cannot be made that way (a mount on ``/`` is not seen by path
    lookups), so then the whole root is overlaid in ``<scratch>/root``, every other mount bound
    into it, and the function runs chrooted there, in the directory it was started in.
    Every path is checked before anything is mounted, so a refusal leaves nothing half-done."""
    points = sorted(set(_mountpoints() if mountpoints is None else mountpoints))
    q = shlex.quote
    parents: list[str] = []
    for mount in mounts:
        target = PurePosixPath(mount.target)
        if not target.is_absolute() or ".." in target.parts or mount.target == "/":
            raise FnError(f"volume {mount.target}: needs an absolute path below / without '..'")
        parent = _existing_parent(mount.target)
        if parent != mount.target and parent not in parents:
            parents.append(parent)
    new_root = "/" in parents
    lines = ["set -e"]
    prefix = ""
    if new_root:
        root = scratch / "root"
        upper, work = scratch / "root-layer" / "upper", scratch / "root-layer" / "work"
        for directory in (root, upper, work):
            directory.mkdir(parents=True, exist_ok=True)
        lines.append(
            f"mount -t overlay overlay -o lowerdir=/,upperdir={q(str(upper))},"
            f"workdir={q(str(work))} {q(str(root))}"
        )
        top = [p for p in points if p != "/" and _mount_of(p, [x for x in points if x != p]) == "/"]
        lines += [f"mount --rbind {q(p)} {q(str(root) + p)} 2>/dev/null || true" for p in top]
        prefix = str(root)
        # On the root filesystem the root overlay already takes a mkdir; elsewhere, overlay.
        parents = [p for p in parents if _mount_of(p, points) != "/"]
    for number, parent in enumerate(sorted(parents, key=lambda p: p.count("/"))):
        _overlay(lines, parent, scratch / f"overlay-{number}", points, prefix)
    for mount in mounts:
        mounted = prefix + mount.target
        lines += [f"mkdir -p {q(mounted)}", f"mount --bind {q(str(mount.source))} {q(mounted)}"]
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {q(mounted)}")
    if new_root:
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        lines.append(
            f'exec {q(chroot)} {q(prefix)} /bin/sh -c \'cd "$0" && exec "$@"\' "$PWD" "$@"'
        )
    else:
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
