"""Dependencies installed once and cached by the hash of what pins them.

The Node runtime needs the ``cloudevents`` npm package (and what it requires) for functions with the
``cloudevent`` signature. ``node/package-lock.json`` pins it; ``npm ci`` installs it into
``~/.cache/flotilla/fn/node-runtime/<hash>/node_modules`` the first time it is needed, and the
same directory is copied into images, so ``fn run`` and the image run the same code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from .model import FnError

__all__ = ["DependencyError", "cache_root", "node_runtime_modules", "tree_files"]

NODE_LIB = Path(__file__).resolve().parent / "node"
_PINS = ("package.json", "package-lock.json")


class DependencyError(FnError, RuntimeError):
    """Dependencies could not be installed; the message has the installer's last words."""


def cache_root() -> Path:
    """Where installed dependencies are kept: ``$FLOTILLA_CACHE_DIR`` or ``~/.cache/flotilla``."""
    explicit = os.environ.get("FLOTILLA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flotilla"


def _pins_hash(directory: Path, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:16]


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError("npm is not installed (Debian package npm); it installs cloudevents")
    return npm


def node_runtime_modules(cache: Path | None = None) -> Path:
    """The runtime's ``node_modules``, installed with ``npm ci`` on first use."""
    root = (cache or cache_root()) / "fn" / "node-runtime"
    target = root / _pins_hash(NODE_LIB, _PINS)
    done = target / ".complete"
    if done.exists():
        return target / "node_modules"
    work = root / f"{target.name}.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in _PINS:
        shutil.copyfile(NODE_LIB / name, work / name)
    proc = subprocess.run(
        [_npm(), "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DependencyError(f"npm ci for the Node runtime failed: {last[0]}")
    (work / ".complete").write_text("ok\n")
    try:
        work.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(work, ignore_errors=True)
    return target / "node_modules"


def tree_files(directory: Path, prefix: str) -> dict[str, bytes]:
    """Every regular file under ``directory`` as ``prefix/relative/path -> bytes`` (for images)."""
    out: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[f"{prefix}/{path.relative_to(directory).as_posix()}"] = path.read_bytes()
    return out
