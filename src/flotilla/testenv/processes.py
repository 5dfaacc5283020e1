"""Processes we start and may stop: tracked by pid, trusted only while they run our binary."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from flotilla.testenv.components import Component
from flotilla.testenv.errors import StartError

STOP_GRACE_SECONDS = 10.0


@dataclass
class ProcessRecord:
    """A process we started: its pid and the binary, to check a pid was not reused."""

    name: str
    pid: int
    binary: str
    log: str


def is_running(record: ProcessRecord) -> bool:
    """True when the pid is alive and still runs the binary we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.split(b"\0", 1)[0].decode(errors="replace") == record.binary


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_process(component: Component, log_path: Path, cwd: Path) -> ProcessRecord:
    """Start detached (own session) so it outlives the `flotilla testenv up` that started it."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            component.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
    record = ProcessRecord(component.name, proc.pid, component.argv[0], str(log_path))
    # Until exec() completes, /proc shows the parent's command line; wait for ours.
    deadline = time.monotonic() + 5
    while not is_running(record) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return record


def ensure_alive(record: ProcessRecord) -> None:
    if not is_running(record):
        raise StartError(
            f"{record.name} exited during start-up; last lines of {record.log}:\n"
            + tail(Path(record.log))
        )


def stop_process(record: ProcessRecord, grace: float = STOP_GRACE_SECONDS) -> bool:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; False when it was not running."""
    if not is_running(record):
        return False
    _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while is_running(record) and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.02)
    if is_running(record):
        _signal(record.pid, signal.SIGKILL)
    _reap(record.pid)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect our own exited children so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
