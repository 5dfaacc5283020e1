"""`down` stops only what `up` started: a pid is trusted only while it still runs our binary."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.testenv.cluster import ControlPlane, EnvironmentState, ProcessRecord, is_running
from flotilla.testenv.components import Ports
from flotilla.testenv.errors import TestEnvError


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    record = ProcessRecord("probe", proc.pid, sys.executable, "")
    deadline = time.monotonic() + 5
    while not is_running(record) and time.monotonic() < deadline:  # exec() not done yet
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def _state(records: list[ProcessRecord]) -> EnvironmentState:
    return EnvironmentState(Ports(1, 2, 3), records, [], "1.34.10", 0.0, 0.0)


def test_down_stops_a_process_it_recorded(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    plane = ControlPlane(tmp_path)
    record = ProcessRecord("etcd", sleeper.pid, sys.executable, str(tmp_path / "x.log"))
    assert is_running(record)
    _state([record]).save(plane.layout.state_file)
    assert plane.down() == ["etcd"]
    sleeper.wait(timeout=5)
    assert not plane.layout.state_file.exists()


def test_down_leaves_a_reused_pid_alone(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    plane = ControlPlane(tmp_path)
    # Same pid, different binary: the pid was reused by someone else's process.
    record = ProcessRecord("etcd", sleeper.pid, "/opt/not/our/etcd", str(tmp_path / "x.log"))
    _state([record]).save(plane.layout.state_file)
    assert plane.down() == []
    assert sleeper.poll() is None, "a process we did not start was killed"


def test_down_without_state_does_nothing(tmp_path: Path) -> None:
    assert ControlPlane(tmp_path).down() == []
    assert ControlPlane(tmp_path).status()["running"] is False


def test_a_corrupt_state_file_is_reported(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path)
    plane.layout.state_file.write_text("{not json")
    with pytest.raises(TestEnvError, match="unreadable"):
        plane.state()


def test_up_without_binaries_says_how_to_build(tmp_path: Path) -> None:
    from flotilla.testenv.build import BuildSpec

    plane = ControlPlane(tmp_path / "state", BuildSpec(cache_root=tmp_path / "empty-cache"))
    with pytest.raises(TestEnvError, match="flotilla testenv build"):
        plane.up()


def test_a_crashed_environment_does_not_hold_the_real_node(tmp_path: Path) -> None:
    from flotilla.testenv import nodehost

    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "state.json").write_text(
        json.dumps(
            {
                "processes": [
                    {
                        "name": "kubelet-real-node",
                        "pid": 2**22 + 7,
                        "binary": "/nope/kubelet",
                        "log": "",
                    },
                ]
            }
        )
    )
    assert not nodehost._owner_alive(dead)
    assert not nodehost._owner_alive(tmp_path / "missing")
