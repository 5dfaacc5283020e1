"""Local resources: run ``cmd`` once per update, keep ``serve_cmd`` running, probe its readiness."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable

from flotilla.dev.plan.model import LocalResource, Probe
from flotilla.dev.tiltfile.tools import tool_env

LogFn = Callable[[str], None]


def _argv(cmd: tuple[str, ...] | str) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


def run_cmd(lr: LocalResource, log: LogFn, stop: threading.Event) -> int:
    """Run ``cmd`` to completion, streaming its output; the exit code (-1 when stopped)."""
    proc = subprocess.Popen(
        _argv(lr.cmd),
        cwd=lr.dir or None,
        env=tool_env({**os.environ, **lr.env}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in stdout:
                log(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name=f"cmd-{lr.name}", daemon=True)
    reader.start()
    with proc, stdout:
        while proc.poll() is None:
            if stop.wait(0.05):
                _kill(proc)
                reader.join(5)
                return -1
        reader.join(5)
        return proc.returncode


def _kill(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


class Server:
    """A running ``serve_cmd`` whose output goes to the resource log; stop() ends its group."""

    def __init__(self, lr: LocalResource, log: LogFn) -> None:
        self.proc = subprocess.Popen(
            _argv(lr.serve_cmd),
            cwd=lr.serve_dir or lr.dir or None,
            env=tool_env({**os.environ, **lr.serve_env}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._log = log
        self._thread = threading.Thread(target=self._pump, name=f"serve-{lr.name}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.proc.stdout:
                self._log(line.rstrip("\n"))

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        _kill(self.proc)
        self._thread.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def probe_once(probe: Probe) -> bool:
    """One readiness check: exec exits 0, HTTP answers < 400, or TCP connects."""
    try:
        if probe.kind == "exec":
            return (
                subprocess.run(
                    list(probe.command),
                    capture_output=True,
                    timeout=probe.timeout_secs,
                    check=False,
                ).returncode
                == 0
            )
        if probe.kind == "http":
            url = f"http://{probe.host}:{probe.port}{probe.path}"
            with urllib.request.urlopen(url, timeout=probe.timeout_secs) as resp:
                return int(resp.status) < 400
        with socket.create_connection((probe.host, probe.port), timeout=probe.timeout_secs):
            return True
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


def wait_probe(
    probe: Probe, stop: threading.Event, deadline: float, alive: Callable[[], bool]
) -> bool:
    """Probe until ``success_threshold`` passes in a row; False on stop, death or deadline."""
    if stop.wait(probe.initial_delay_secs):
        return False
    ok = 0
    period = min(probe.period_secs, 0.5)  # first readiness quickly, as Tilt does at start-up
    while not stop.is_set() and time.monotonic() < deadline and alive():
        ok = ok + 1 if probe_once(probe) else 0
        if ok >= probe.success_threshold:
            return True
        stop.wait(period)
    return False
