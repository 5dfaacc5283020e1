"""Dependencies installed once and cached by the hash of what pins them.

The Node runtime needs the ``cloudevents`` npm package (and what it requires) for functions with the
``cloudevent`` signature. ``node/package-lock.json`` pins it; ``npm ci`` installs it into
``~/.cache/flotilla/fn/node-runtime/<hash>/node_modules`` the first time it is needed, and the
same directory is copied into images, so ``fn run`` and the image run the same code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .model import FnError

__all__ = [
    "DependencyError",
    "cache_root",
    "function_dependencies",
    "node_runtime_modules",
    "tree_files",
]

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


# Production dependencies only, no install scripts (they would run code at build time), quiet.
NPM_FLAGS = ("--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund")


def _npm(purpose: str) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError(f"npm is not installed (Debian package npm); it installs {purpose}")
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
        [_npm("the runtime's cloudevents"), "ci", *NPM_FLAGS],
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


# --- the function's own dependencies -----------------------------------------------------------

PYTHON_PINS = ("requirements.txt",)
NODE_PINS = ("package.json", "package-lock.json")


def _node_dependencies(package_json: Path) -> dict[str, Any]:
    """The ``dependencies`` a function's package.json asks for (devDependencies are never
    installed); a file that is not a JSON object is one error line."""
    try:
        doc = json.loads(package_json.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DependencyError(f"{package_json}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise DependencyError(f"{package_json}: must be a JSON object")
    deps = doc.get("dependencies") or {}
    if not isinstance(deps, dict):
        raise DependencyError(f"{package_json}: dependencies must be an object")
    return deps


def function_dependencies(runtime: str, project: Path, cache: Path | None = None) -> Path | None:
    """The function's dependencies installed once per hash of its pins, or ``None`` without pins.

    Python: ``pip install --target`` from ``requirements.txt`` (the directory goes on
    ``PYTHONPATH``); Node: ``npm ci`` (or ``npm install`` without a lock) from ``package.json``
    (its ``node_modules`` goes on ``NODE_PATH``). ``fn run`` and ``fn build`` use the same
    directory, so the image holds what was run.
    """
    pins = PYTHON_PINS if runtime == "python" else NODE_PINS
    if not (project / pins[0]).is_file():
        return None
    if runtime != "python" and not _node_dependencies(project / pins[0]):
        return None  # package.json only for scripts or metadata: nothing to install, no npm
    root = (cache or cache_root()) / "fn" / f"{runtime}-deps"
    target = root / _pins_hash(project, pins)
    result = target / ("site" if runtime == "python" else "node_modules")
    if (target / ".complete").exists():
        return result
    work = root / f"{target.name}.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in pins:
        if (project / name).is_file():
            shutil.copyfile(project / name, work / name)
    if runtime == "python":
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(work / "site"),
            "-r",
            str(work / "requirements.txt"),
        ]
    elif (work / "package-lock.json").exists():
        argv = [_npm("the function's package.json dependencies"), "ci", *NPM_FLAGS]
    else:
        argv = [_npm("the function's package.json dependencies"), "install", *NPM_FLAGS]
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DependencyError(f"installing {pins[0]} failed: {lines[-1] if lines else 'no output'}")
    (work / "site" if runtime == "python" else work / "node_modules").mkdir(exist_ok=True)
    (work / ".complete").write_text("ok\n")
    try:
        work.rename(target)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return result
