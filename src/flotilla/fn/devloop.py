"""``fn run`` and ``fn test``: the runtime as a local process, restarted when a file changes.

One supervisor for every runtime (rather than uvicorn's reloader for Python and something else for
Node), so hot reload behaves the same everywhere. The decisions are pure: which command serves a
runtime, and which files changed between two snapshots.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flotilla.core.nodedist import NodeDistError, node_binary

from .deps import cache_root, function_dependencies, node_runtime_modules
from .image import IGNORED_DIRS
from .jvm import java_runtime
from .localmounts import LOCAL_CONFIG, LOCAL_FOLDERS, local_mounts, mount_command
from .manifests import limit_env
from .model import FnError, FunctionSpec, Runtime, Signature

__all__ = [
    "Command",
    "changed_files",
    "run_supervised",
    "serve_command",
    "snapshot",
    "test_command",
]

logger = logging.getLogger(__name__)
NODE_LIB = Path(__file__).resolve().parent / "node"
Snapshot = dict[str, tuple[float, int]]


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _node() -> str:
    """The Node the image runs (``flotilla.core.nodedist``, fetched from npm once), so a function
    tested with ``fn run`` meets the same major and patch version in the cluster.
    ``$FLOTILLA_FN_NODE`` names another binary, for a machine that cannot reach npm."""
    explicit = os.environ.get("FLOTILLA_FN_NODE")
    if explicit:
        if shutil.which(explicit) is None:
            raise FnError(f"FLOTILLA_FN_NODE={explicit} is not an executable")
        return explicit
    try:
        return str(node_binary(cache_root() / "node"))
    except NodeDistError as exc:
        raise FnError(f"{exc} (set FLOTILLA_FN_NODE to a node binary to use another)") from None


def serve_command(
    spec: FunctionSpec,
    project: Path,
    port: int,
    base_env: dict[str, str] | None = None,
    scratch: Path | None = None,
) -> Command:
    """How to serve ``spec`` from ``project`` on ``port`` with the same variables as the image,
    and its volumes at their paths (``localmounts``; ``scratch`` holds emptyDirs and overlays)."""
    command = _runtime_command(spec, project, port, base_env)
    if not spec.sources.volumes:
        return command
    if scratch is None:
        raise FnError(f"{spec.name} has volumes: fn run needs a scratch directory for them")
    argv = mount_command(command.argv, local_mounts(spec, project, scratch), scratch)
    return Command(argv, command.env, command.cwd)


def _runtime_command(
    spec: FunctionSpec, project: Path, port: int, base_env: dict[str, str] | None
) -> Command:
    env = {
        **(base_env if base_env is not None else os.environ),
        **spec.env,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "FLOTILLA_FN_NAME": spec.name,
        "FLOTILLA_FN_SOURCE": str(project),
        "FLOTILLA_FN_HANDLER": spec.handler_ref,
        "FLOTILLA_FN_SIGNATURE": spec.signature.value,
        "FLOTILLA_FN_VERSION": "dev",
        **{e["name"]: e["value"] for e in limit_env(spec)},
        **local_source_env(spec, project),
    }
    installed = function_dependencies(spec.runtime.value, project)
    if spec.runtime is Runtime.PYTHON:
        if installed is not None:  # the image's PYTHONPATH order: runtime, then dependencies
            paths = [env.get("PYTHONPATH"), str(installed)]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return Command([sys.executable, "-m", "flotilla.fn.runtime"], env, project)
    if spec.runtime is Runtime.JAVA:
        # Builds with Maven when the sources changed (so a reload rebuilds), then execs java.
        return Command([sys.executable, "-m", "flotilla.fn.jvm"], env, project)
    env["NODE_PATH"] = os.pathsep.join(filter(None, [_node_path(spec), str(installed or "")]))
    return Command([_node(), str(NODE_LIB / "flotilla-fn.js")], env, project)


def _node_path(spec: FunctionSpec) -> str:
    """The runtime's directory, plus the cloudevents package for cloudevent functions."""
    if spec.signature is Signature.CLOUDEVENT:
        return os.pathsep.join([str(NODE_LIB), str(node_runtime_modules())])
    return str(NODE_LIB)


def local_source_env(spec: FunctionSpec, project: Path) -> dict[str, str]:
    """Env from Secrets/ConfigMaps for ``fn run``: read from files under ``.local-config/``
    (``secrets/<name>/<key>``, ``configmaps/<name>/<key>``), which images never include."""
    root = project / LOCAL_CONFIG
    out: dict[str, str] = {}
    for ref in spec.sources.env_from:
        directory = root / LOCAL_FOLDERS[ref.kind] / ref.name
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.is_file():
                    out[path.name] = path.read_text().rstrip("\n")
    for var, ref in spec.sources.env.items():
        path = root / LOCAL_FOLDERS[ref.kind] / ref.name / ref.key
        if not path.is_file():
            raise FnError(f"env {var} comes from {ref.kind} {ref.name}; put its value in {path}")
        out[var] = path.read_text().rstrip("\n")
    return out


def test_command(spec: FunctionSpec, project: Path) -> Command:
    """The function's own tests: pytest for Python, ``node --test`` for Node."""
    env = dict(os.environ)
    if spec.runtime is Runtime.PYTHON:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
        return Command(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                str(project),
                str(project),
            ],
            env,
            project,
        )
    if spec.runtime is Runtime.JAVA:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise FileNotFoundError("mvn is not installed (Debian package maven)")
        java_runtime()  # the tests compile against flotilla-fn, which this installs into ~/.m2
        return Command([mvn, "-B", "-q", "test"], env, project)
    env["NODE_PATH"] = _node_path(spec)
    return Command([_node(), "--test"], env, project)


def snapshot(project: Path) -> Snapshot:
    """Modification time and size of every file that could change the function."""
    out: Snapshot = {}
    for path in project.rglob("*"):
        rel = PurePosixPath(path.relative_to(project).as_posix())
        if any(part in IGNORED_DIRS or part == "node_modules" for part in rel.parts[:-1]):
            continue
        if rel.name.endswith((".pyc", "~", ".swp")) or rel.name.startswith(".#"):
            continue
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            out[str(rel)] = (st.st_mtime, st.st_size)
    return out


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Files added, removed or modified between two snapshots, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_supervised(
    command: Command,
    *,
    watch: Path | None,
    interval: float = 0.4,
    should_stop: Callable[[], bool] = lambda: False,
    on_restart: Callable[[list[str]], None] | None = None,
) -> int:
    """Run ``command``; restart it when files under ``watch`` change; stop on Ctrl-C.

    A crashed process is started again after the next change, not in a loop.
    """

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)  # stop the child on SIGTERM too
    proc = subprocess.Popen(command.argv, env=command.env, cwd=command.cwd)
    before = snapshot(watch) if watch else {}
    try:
        while not should_stop():
            time.sleep(interval)
            if watch is None:
                if proc.poll() is not None:
                    return proc.returncode
                continue
            after = snapshot(watch)
            changes = changed_files(before, after)
            if changes:
                before = after
                if on_restart:
                    on_restart(changes)
                _stop(proc)
                proc = subprocess.Popen(command.argv, env=command.env, cwd=command.cwd)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)
