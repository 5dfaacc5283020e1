"""Directory operations that cannot be steered outside a root by symlinks or ``..``.

Every step opens the next component relative to the previous directory's file descriptor with
``O_NOFOLLOW | O_DIRECTORY`` (openat semantics), so a symlink planted anywhere under the root, even
between our check and our use, makes the operation fail instead of following it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from flotilla.localpv.policies import InvalidInput, nests, validate_component, validate_subpath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(InvalidInput):
    """A path component was a symlink or not a directory: refused, nothing touched."""


class NestedVolume(InvalidInput):
    """Another volume's directory would contain this one's, or sit inside it: refused."""


REGISTRY = ".flotilla-localpv"
"""Under each root: one file per volume, holding its subpath. Rendered components must start
with a letter or digit, so no volume directory can ever take this dot-name."""
_registry_locks: dict[str, threading.Lock] = {}
_registry_guard = threading.Lock()


def _root_lock(root: str) -> threading.Lock:
    """Check-then-register must not interleave: one agent per node, so a lock per root suffices."""
    with _registry_guard:
        return _registry_locks.setdefault(root, threading.Lock())


def open_root(root: str) -> int:
    """An fd of the configured root; the root itself must be a real directory, not a symlink."""
    if not os.path.isabs(root):
        raise InvalidInput(f"root {root!r} is not absolute")
    try:
        return os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafePath(f"root {root} is not a plain directory: {exc.strerror}") from exc


def _open_child(parent_fd: int, name: str, *, path: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{path}/{name} is a symlink or not a directory; refusing") from exc
        raise


@contextlib.contextmanager
def opened_parent(root: str, parts: tuple[str, ...], *, create: bool) -> Iterator[int]:
    """Yield an fd of the directory holding ``parts[-1]``, walking (and maybe creating) parents."""
    parts = validate_subpath(parts)
    fds = [open_root(root)]
    try:
        where = root
        for name in parts[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fds[-1])
            fds.append(_open_child(fds[-1], name, path=where))
            where = f"{where}/{name}"
        yield fds[-1]
    finally:
        for fd in reversed(fds):
            os.close(fd)


@dataclass(frozen=True)
class Owner:
    """Who owns a new volume directory and with which mode (None: leave as created)."""

    uid: int | None = None
    gid: int | None = None
    mode: int = 0o777


def make_volume_dir(root: str, parts: tuple[str, ...], owner: Owner) -> str:
    """Create ``root/parts...`` without following symlinks; idempotent for a real directory."""
    with opened_parent(root, parts, create=True) as parent:
        name = parts[-1]
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        fd = _open_child(parent, name, path=root)
        try:
            if owner.uid is not None or owner.gid is not None:
                os.fchown(
                    fd,
                    -1 if owner.uid is None else owner.uid,
                    -1 if owner.gid is None else owner.gid,
                )
            os.fchmod(fd, owner.mode)
        finally:
            os.close(fd)
    return os.path.join(root, *parts)


def remove_volume_dir(root: str, parts: tuple[str, ...]) -> bool:
    """Delete ``root/parts...`` and everything in it, never following a link; False if absent.

    Empty parent directories the pattern created (e.g. a namespace directory) are removed too.
    """
    try:
        with opened_parent(root, parts, create=False) as parent:
            try:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePath(f"{root}/{'/'.join(parts)} is not a directory; refusing to delete")
            shutil.rmtree(parts[-1], dir_fd=parent)
    except FileNotFoundError:
        return False
    prune_parents(root, parts)
    return True


def prune_parents(root: str, parts: tuple[str, ...]) -> None:
    """Remove the empty directories the pattern created above a volume, never a volume's own."""
    try:
        volumes = set(registered_volumes(root).values())
    except (OSError, InvalidInput):
        return
    for depth in range(len(parts) - 1, 0, -1):
        if parts[:depth] in volumes:
            return
        try:
            with opened_parent(root, parts[:depth], create=False) as parent:
                os.rmdir(parts[depth - 1], dir_fd=parent)
        except OSError:
            return


def tree_usage(root: str, parts: tuple[str, ...]) -> int:
    """Bytes allocated under the volume directory (like ``du``), not following links."""
    total = 0
    with opened_parent(root, parts, create=False) as parent:
        fd = _open_child(parent, parts[-1], path=root)
        try:
            for _dirpath, _dirs, files, dirfd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_blocks * 512
        finally:
            os.close(fd)
    return total


def filesystem_space(root: str) -> tuple[int, int]:
    """(total, free-for-unprivileged) bytes of the filesystem holding ``root``."""
    st = os.statvfs(root)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def _read_registry(root_fd: int) -> dict[str, tuple[str, ...]]:
    try:
        reg = os.open(REGISTRY, _DIR_FLAGS, dir_fd=root_fd)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UnsafePath(f"{REGISTRY} is a symlink or not a directory; refusing") from exc
    found: dict[str, tuple[str, ...]] = {}
    try:
        for name in os.listdir(reg):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=reg)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                text = f.read(8192).decode("utf-8", "replace").strip("\n")
            found[name] = tuple(text.split("/"))
    finally:
        os.close(reg)
    return found


def registered_volumes(root: str) -> dict[str, tuple[str, ...]]:
    """Volume name -> subpath, as recorded on disk under ``root``."""
    fd = open_root(root)
    try:
        return _read_registry(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def registered(root: str, name: str, parts: tuple[str, ...]) -> Iterator[None]:
    """Record ``name`` at ``parts`` under ``root`` and run the body, unless another recorded volume
    contains it or sits inside it (:class:`NestedVolume`, nothing created).

    The record is written before the directory, so a crash in between leaves a record without a
    directory (harmless, the retry finds its own record), never a directory nobody recorded.
    """
    validate_component(name)
    parts = validate_subpath(parts)
    with _root_lock(root):
        fd = open_root(root)
        try:
            records = _read_registry(fd)
            for other, where in records.items():
                if other != name and nests(parts, where):
                    raise NestedVolume(
                        f"{root}/{'/'.join(parts)} would contain or sit inside "
                        f"volume {other} at {root}/{'/'.join(where)}; refusing"
                    )
            with contextlib.suppress(FileExistsError):
                os.mkdir(REGISTRY, 0o700, dir_fd=fd)
            reg = _open_child(fd, REGISTRY, path=root)
            try:
                entry = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=reg,
                )
                with os.fdopen(entry, "w") as f:
                    f.write("/".join(parts) + "\n")
            finally:
                os.close(reg)
            try:
                yield
            except BaseException:
                if name not in records:  # nothing of ours was there before: take the record back
                    _drop_record(fd, root, name)
                raise
        finally:
            os.close(fd)


def _drop_record(root_fd: int, root: str, name: str) -> None:
    """Remove ``name``'s record (the registry goes when it empties); the caller holds the lock."""
    try:
        reg = _open_child(root_fd, REGISTRY, path=root)
    except FileNotFoundError:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=reg)
    finally:
        os.close(reg)
    with contextlib.suppress(OSError):
        os.rmdir(REGISTRY, dir_fd=root_fd)


def check_nothing_inside(root: str, name: str, parts: tuple[str, ...]) -> None:
    """Before deleting ``parts``: refuse when another recorded volume lives inside it."""
    for other, where in registered_volumes(root).items():
        if other != name and len(where) > len(parts) and nests(parts, where):
            raise NestedVolume(
                f"volume {other} lives inside {root}/{'/'.join(parts)}; refusing to delete"
            )


def unregister(root: str, name: str) -> None:
    """Drop ``name``'s record (after its data is gone); the registry goes when it empties."""
    validate_component(name)
    with _root_lock(root):
        fd = open_root(root)
        try:
            _drop_record(fd, root, name)
        finally:
            os.close(fd)
