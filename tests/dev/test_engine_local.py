"""The engine on local resources only: ordering, file changes, manual triggers, ci exit codes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.dev.runtime.engine import Engine, EngineConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def project(tmp_path: Path, port: int) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("1")
    (tmp_path / "Tiltfile").write_text(f"""
local_resource('gen', 'cat src/a.txt >> out.txt', deps=['src'], labels=['build'])
local_resource('srv', serve_cmd='exec python3 -m http.server {port} --bind 127.0.0.1',
               readiness_probe=probe(period_secs=1, http_get=http_get_action(port={port})),
               resource_deps=['gen'], labels=['web'])
local_resource('manual', 'echo manual run', trigger_mode=TRIGGER_MODE_MANUAL, deps=['src'],
               labels=['build'])
local_resource('later', 'echo later', auto_init=False)
""")
    return tmp_path / "Tiltfile"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(EngineConfig(tiltfile=project(tmp_path, free_port()), debounce_ms=30))
    eng.load()
    eng.start()
    try:
        yield eng
    finally:
        eng.stop()


def status(engine: Engine, name: str) -> str:
    return engine.states[name].status


def test_start_order_serve_and_readiness(engine: Engine, tmp_path: Path) -> None:
    wait_for(lambda: status(engine, "srv") == "ready")
    assert (tmp_path / "out.txt").read_text() == "1"
    assert status(engine, "later") == "disabled"
    gen, srv = engine.states["gen"].last, engine.states["srv"].last
    assert gen is not None and srv is not None and gen.started <= srv.started


def test_file_change_reruns_auto_and_waits_for_manual(engine: Engine, tmp_path: Path) -> None:
    wait_for(lambda: status(engine, "manual") == "ready" and status(engine, "gen") == "ready")
    manual_runs = len(engine.states["manual"].history)
    (tmp_path / "src" / "a.txt").write_text("2")
    wait_for(lambda: (tmp_path / "out.txt").read_text() == "12")
    wait_for(lambda: engine.states["manual"].pending_changes != set())
    assert len(engine.states["manual"].history) == manual_runs
    engine.trigger("manual")
    wait_for(lambda: len(engine.states["manual"].history) == manual_runs + 1
             and status(engine, "manual") == "ready")
    assert engine.states["manual"].pending_changes == set()
    assert any("manual run" in line for line in engine.states["manual"].log)


def test_tiltfile_edit_reloads_and_reports_errors(engine: Engine, tmp_path: Path) -> None:
    wait_for(lambda: status(engine, "gen") == "ready")
    tf = tmp_path / "Tiltfile"
    good = tf.read_text()
    tf.write_text(good + "\nnot_a_builtin()\n")
    wait_for(lambda: engine.tiltfile_state.status == "error")
    assert "not_a_builtin" in engine.tiltfile_state.error
    tf.write_text(good + "\nlocal_resource('added', 'echo added')\n")
    wait_for(lambda: "added" in engine.states and status(engine, "added") == "ready")
    assert engine.tiltfile_state.status == "ready"


def test_ci_succeeds_and_fails_with_the_log(tmp_path: Path) -> None:
    (tmp_path / "Tiltfile").write_text("local_resource('ok', 'echo fine')\n")
    ok = CliRunner().invoke(app, ["dev", "ci", "-q", "-f", str(tmp_path / "Tiltfile")])
    assert ok.exit_code == 0, ok.stderr
    (tmp_path / "Tiltfile").write_text(
        "local_resource('ok', 'echo fine')\n"
        "local_resource('bad', 'echo compiling; echo boom >&2; exit 2', resource_deps=['ok'])\n")
    bad = CliRunner().invoke(app, ["dev", "ci", "-q", "-f", str(tmp_path / "Tiltfile")])
    assert bad.exit_code == 1
    assert "resource bad failed: cmd exited with code 2" in bad.stderr
    assert "boom" in bad.stderr


def test_ci_times_out_on_a_probe_that_never_passes(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "Tiltfile").write_text(
        f"local_resource('srv', serve_cmd='sleep 30', readiness_probe=probe("
        f"tcp_socket=tcp_socket_action({port})))\n")
    result = CliRunner().invoke(app, ["dev", "ci", "-q", "--timeout", "2", "-f",
                                      str(tmp_path / "Tiltfile")])
    assert result.exit_code == 1 and "timed out after 2s waiting for srv" in result.stderr


def test_up_waits_for_a_broken_tiltfile_to_be_fixed(tmp_path: Path) -> None:
    tf = tmp_path / "Tiltfile"
    tf.write_text("local_resource('a', 'echo a')\nlocal_resourc('b', 'echo b')\n")
    eng = Engine(EngineConfig(tiltfile=tf, debounce_ms=30))
    with pytest.raises(Exception, match=r"Tiltfile:2: unknown built-in or name `local_resourc`"):
        eng.load()
    assert eng.snapshot()[0]["status"] == "error"
    eng.start()
    try:
        time.sleep(0.3)
        tf.write_text("local_resource('a', 'echo a')\nlocal_resource('b', 'echo b')\n")
        wait_for(lambda: "b" in eng.states and status(eng, "b") == "ready")
        assert eng.tiltfile_state.status == "ready"
    finally:
        eng.stop()


def test_stop_ends_a_long_command_at_once(tmp_path: Path) -> None:
    (tmp_path / "Tiltfile").write_text("local_resource('slow', 'sleep 60')\n")
    eng = Engine(EngineConfig(tiltfile=tmp_path / "Tiltfile", watch=False))
    eng.load()
    eng.start()
    wait_for(lambda: status(eng, "slow") == "updating")
    start = time.monotonic()
    eng.stop()
    assert time.monotonic() - start < 5


def test_up_serves_the_ui_and_down_stops_it(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    (tmp_path / "Tiltfile").write_text("local_resource('hello', 'echo hello from up')\n")
    env = {**os.environ, "FLOTILLA_DEV_STATE": str(tmp_path / "state")}
    up = subprocess.Popen([sys.executable, "-m", "flotilla", "dev", "up", "-q", "--port",
                           str(port), "-f", str(tmp_path / "Tiltfile")], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/resources",
                                            timeout=1) as resp:
                    body = json.loads(resp.read())
            except OSError:
                return False
            return any(r["name"] == "hello" and r["status"] == "ready"
                       for r in body["resources"])
        wait_for(ready, timeout=30)
        down = subprocess.run([sys.executable, "-m", "flotilla", "dev", "down", "-f",
                               str(tmp_path / "Tiltfile")], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert down.returncode == 0, down.stderr
        assert "stopped the running `flotilla dev up`" in down.stdout
        assert up.wait(15) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        assert up.stderr is not None
        up.stderr.close()
