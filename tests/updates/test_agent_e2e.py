"""End to end: a real server, 20 real agents (file, directory and loop-device slots), payloads
served over HTTP. A rollout limited to 5 per period goes through; a corrupt payload is refused by
every agent that gets it, reported as failures, and the failure brake halts the rollout."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flotilla.updates.models import FLATCAR_APP_ID
from flotilla.updates.node import slots
from flotilla.updates.node.agent import Agent, AgentSettings, Schedule
from flotilla.updates.node.omaha_client import ERROR_PAYLOAD_HASH_MISMATCH, Identity
from flotilla.updates.server import catalog
from flotilla.updates.server.schema import make_engine

from .conftest import Server, apply_doc
from .payloads import PayloadServer, payload_server

pytestmark = pytest.mark.slow

OLD, NEW, BAD = "3510.2.0", "3760.2.0", "3800.0.0"
N = 20


def _fleet(
    payloads: PayloadServer, good: bytes, channel: str, bad: bytes | None = None, period: str = "2s"
) -> dict[str, Any]:
    pkgs = [
        {"version": OLD, "url": payloads.url, "filename": "old.gz", "size": 10, "sha256": "a" * 64},
        {
            "version": NEW,
            "url": payloads.url,
            "filename": "new.gz",
            "size": len(good),
            "sha256": hashlib.sha256(good).hexdigest(),
        },
    ]
    if bad is not None:
        # The catalogue promises the good bytes' digest; the server hands out corrupted ones.
        pkgs.append(
            {
                "version": BAD,
                "url": payloads.url,
                "filename": "bad.gz",
                "size": len(bad),
                "sha256": hashlib.sha256(b"x" + bad[1:]).hexdigest(),
            }
        )
    return {
        "applications": [
            {
                "id": FLATCAR_APP_ID,
                "name": "Flatcar",
                "packages": pkgs,
                "channels": [{"name": "stable", "package": channel}],
                "groups": [
                    {
                        "name": "stable",
                        "track": "stable",
                        "channel": "stable",
                        "policy": {
                            "max_updates_per_period": 5,
                            "period_interval": period,
                            "max_failures": 2,
                        },
                    }
                ],
            }
        ]
    }


@pytest.fixture
def loop_devices(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Attach 1 MiB loop devices on demand; detach them afterwards."""
    attached: list[str] = []

    def make() -> Path:
        backing = tmp_path / f"loop{len(attached)}.img"
        backing.write_bytes(b"\0" * (1 << 20))
        dev = subprocess.run(
            ["losetup", "-f", "--show", str(backing)], check=True, capture_output=True, text=True
        ).stdout.strip()
        attached.append(dev)
        return Path(dev)

    yield make
    for dev in attached:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def _agents(tmp_path: Path, server: Server, loop: Callable[[], Path]) -> list[Agent]:
    agents = []
    for i in range(N):
        root = tmp_path / f"m{i:02d}"
        root.mkdir()
        (root / "boot_id").write_text(f"boot-{i}-0\n")
        if i < 4:  # loop devices
            a, b = loop(), loop()
        elif i < 12:  # directories
            a, b = root / "usr-a", root / "usr-b"
            a.mkdir()
            b.mkdir()
        else:  # files
            a, b = root / "usr-a.img", root / "usr-b.img"
        settings = AgentSettings(
            server=server.url + "/v1/update/",
            state_dir=root / "state",
            slot_a=a,
            slot_b=b,
            identity=Identity(
                machine_id=f"e2e{i:029d}", version=OLD, track="stable", machine_alias=f"m{i}"
            ),
            boot_id_file=root / "boot_id",
            schedule=Schedule(interval=0.2, fuzz=0.1, initial_delay=0),
        )
        agents.append(Agent(settings))
    return agents


def _reboot(agent: Agent) -> None:
    path = agent.settings.boot_id_file
    n = int(path.read_text().strip().rsplit("-", 1)[1]) + 1
    path.write_text(path.read_text().strip().rsplit("-", 1)[0] + f"-{n}\n")


async def _drive(
    agents: list[Agent], done: Callable[[], bool], timeout: float, *, run_out: bool = False
) -> None:
    """Each agent checks in a loop; a staged update is 'rebooted' into at once.

    Stops when ``done()``; fails at ``timeout`` unless ``run_out`` (then it just stops)."""
    stop = asyncio.Event()

    async def one(agent: Agent) -> None:
        while not stop.is_set():
            await agent.check()
            if agent.reboot_needed:
                _reboot(agent)
            await asyncio.sleep(agent.settings.schedule.interval)

    tasks = [asyncio.create_task(one(a), name=f"agent-{i}") for i, a in enumerate(agents)]
    deadline = time.monotonic() + timeout
    try:
        while not done():
            if time.monotonic() >= deadline:
                assert run_out, "rollout did not finish in time"
                break
            for t in tasks:
                if t.done():
                    t.result()
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_rollout_with_max_5_per_period(
    serve: Callable[..., Server],
    sqlite_url: str,
    tmp_path: Path,
    loop_devices: Callable[[], Path],
) -> None:
    good = os.urandom(300_000)
    with payload_server() as payloads:
        payloads.files["new.gz"] = good
        payloads.cut_after, payloads.max_cuts = 100_000, 3  # three downloads break off once
        apply_doc(sqlite_url, _fleet(payloads, good, NEW))
        server = serve(sqlite_url)
        agents = _agents(tmp_path, server, loop_devices)
        engine = make_engine(sqlite_url, pool_size=1)

        def finished() -> bool:
            rows = catalog.list_instances(engine, status="Complete")
            return len(rows) == N and all(not a.state.report_previous for a in agents)

        start = time.monotonic()
        asyncio.run(_drive(agents, finished, timeout=120))
        took = time.monotonic() - start
        grants = sorted(r["last_update_granted_at"] for r in catalog.list_instances(engine))
        engine.dispose()
    # 20 machines at 5 per 2 s period need at least three more periods after the first.
    assert took >= 6.0
    assert len(grants) == N
    # Downloads that broke off resumed with Range, not from zero.
    assert len(payloads.ranges) >= 3
    assert all(r.startswith("bytes=100000-") for r in payloads.ranges)
    for agent in agents:
        assert agent.state.version == NEW
        assert agent.state.active_slot == "B"
        assert slots.verify(agent.slot("B"), len(good), hashlib.sha256(good).hexdigest())
        seq = [(e.type, e.result) for e in agent.events_sent]
        # Every check carries 3/2 (update_engine's GetAppBody); the update itself in between.
        i = seq.index((13, 1))
        assert seq[i : i + 5] == [(13, 1), (14, 1), (3, 1), (800, 1), (3, 2)]
        assert set(seq[:i] + seq[i + 5 :]) == {(3, 2)}
        prevs = [e.previous_version for e in agent.events_sent if (e.type, e.result) == (3, 2)]
        assert prevs[0] == "0.0.0.0" and prevs.count(OLD) == 1
        assert agent.events_sent[i + 4].previous_version == OLD
        assert not (agent.settings.state_dir / "reboot-needed").exists()
    engine = make_engine(sqlite_url, pool_size=1)
    want = ["UpdateGranted", "Downloading", "Downloaded", "Installed", "Complete"]
    for agent in agents:
        inst = catalog.get_instance(engine, FLATCAR_APP_ID, agent.settings.identity.machine_id)
        statuses = [h["status"] for h in inst["history"] if h["status"] in want]
        assert statuses == want, statuses
        assert (inst["version"], inst["alias"]) == (NEW, agent.settings.identity.machine_alias)
    engine.dispose()


def test_corrupt_payload_is_refused_and_halts(
    serve: Callable[..., Server],
    sqlite_url: str,
    tmp_path: Path,
    loop_devices: Callable[[], Path],
) -> None:
    good = os.urandom(200_000)
    bad = os.urandom(200_000)
    with payload_server() as payloads:
        payloads.files["bad.gz"] = bad
        apply_doc(sqlite_url, _fleet(payloads, good, BAD, bad=bad, period="1h"))
        server = serve(sqlite_url)
        agents = _agents(tmp_path, server, loop_devices)
        before = {
            a.settings.identity.machine_id: (a.slot("A").kind(), a.state.active_slot)
            for a in agents
        }
        engine = make_engine(sqlite_url, pool_size=1)

        def halted() -> bool:
            g = catalog.get_group(engine, FLATCAR_APP_ID, "stable")
            return (
                bool(g.get("halted_version"))
                and sum(1 for a in agents if any(e.result == 0 for e in a.events_sent)) >= 3
            )

        asyncio.run(_drive(agents, halted, timeout=120))
        # Keep checking a while: a halted rollout grants nobody else.
        asyncio.run(_drive(agents, lambda: False, timeout=3, run_out=True))
        group = catalog.get_group(engine, FLATCAR_APP_ID, "stable")
        failed = catalog.list_instances(engine, status="Error")
        engine.dispose()
    assert group["halted_version"] == BAD
    got_it = [a for a in agents if any(e.type == 13 for e in a.events_sent)]
    assert 3 <= len(got_it) <= 5
    for agent in agents:
        assert agent.state.version == OLD
        assert agent.state.pending is None
        assert before[agent.settings.identity.machine_id][1] == agent.state.active_slot
        assert not (agent.settings.state_dir / "reboot-needed").exists()
    for agent in got_it:
        errors = [e for e in agent.events_sent if e.result == 0]
        assert errors
        assert errors[0].error_code == ERROR_PAYLOAD_HASH_MISMATCH
        assert not (agent.settings.state_dir / "download.partial").exists()
    assert {r["machine_id"] for r in failed} == {a.settings.identity.machine_id for a in got_it}
    assert {r["last_error_code"] for r in failed} == {ERROR_PAYLOAD_HASH_MISMATCH}
