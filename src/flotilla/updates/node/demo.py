"""A few dozen scripted Flatcar machines for ``make demo``, speaking real Omaha over HTTP.

``flotilla updates simulate`` (the node agent's simulator) brings the crowd; this module plays
the scenarios the demo must show every time - a rate limit holding machines back, a percentage
rollout, two failed downloads tripping the brake - deterministically, in a few seconds.

Each machine walks update_engine's event sequence (check, 13/1 download started, 14/1 downloaded,
3/1 applied, then after a "reboot" 3/2 with ``previousversion`` next to its next check), with the
timing compressed into rounds. Some machines of the ``experimental`` group fail their download,
so the failure brake trips. Run: ``python -m flotilla.updates.node.demo --server URL``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from flotilla.updates.models import FLATCAR_APP_ID

START_VERSION = "3760.2.0"
GROUPS = {"canary": 6, "stable": 16, "half": 8, "experimental": 8}
"""Machines per track (the tracks of examples/updates/fleet.yaml)."""
FAILING = {"experimental": 2}
"""How many machines of a track fail their download (the first ones to check in)."""
DOWNLOAD_FAILED = 2004
"""The error code reported: 2000 + HTTP 4 (update_engine's code for a failed HTTP download)."""

_UPDATE = re.compile(r'<updatecheck status="ok">.*?<manifest version="([^"]+)"', re.S)


@dataclass
class Machine:
    """One simulated node: what it runs and where it is in update_engine's sequence."""

    machine_id: str
    alias: str
    track: str
    version: str = START_VERSION
    phase: str = "idle"
    """idle, granted, downloading, downloaded, installed (waiting for its reboot), failed."""
    target: str = ""
    previous: str = ""
    fails: bool = False


def fleet(groups: dict[str, int] | None = None) -> list[Machine]:
    """The demo's machines, with stable ids so reruns look the same."""
    out = []
    for track, n in (groups or GROUPS).items():
        for i in range(n):
            mid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{track}-{i}.demo.flotilla").hex
            out.append(Machine(mid, f"{track}-{i + 1:02d}", track, fails=i < FAILING.get(track, 0)))
    return out


def request_xml(m: Machine, *, check: bool, event: str = "") -> bytes:
    """A request shaped like update_engine's (see omaha_request_action.cc)."""
    body = '<ping active="1"></ping>' + ("<updatecheck></updatecheck>" if check else "") + event
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<request protocol="3.0" version="update_engine-0.4.10" '
        'updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">'
        f'<os version="Chateau" platform="CoreOS" sp="{m.version}_x86_64"></os>'
        f'<app appid="{{{FLATCAR_APP_ID}}}" version="{m.version}" track="{m.track}" '
        f'bootid="{{{uuid.uuid4()}}}" oem="qemu" oemversion="0.1.0" '
        f'alephversion="{START_VERSION}" machineid="{m.machine_id}" machinealias="{m.alias}" '
        'lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false">'
        f"{body}</app></request>"
    ).encode()


def _event(kind: int, result: int, extra: str = "") -> str:
    return f'<event eventtype="{kind}" eventresult="{result}"{extra}></event>'


def step(client: httpx.Client, m: Machine) -> None:
    """One move of one machine: the next request update_engine would send."""
    if m.phase in ("idle", "failed"):
        answer = _post(client, m, check=True)
        found = _UPDATE.search(answer)
        if found and m.phase == "idle":
            m.phase, m.target = "granted", found.group(1)
    elif m.phase == "granted":
        _post(client, m, check=False, event=_event(13, 1))
        m.phase = "downloading"
    elif m.phase == "downloading":
        if m.fails:
            _post(client, m, check=False, event=_event(3, 0, f' errorcode="{DOWNLOAD_FAILED}"'))
            m.phase = "failed"
        else:
            _post(client, m, check=False, event=_event(14, 1))
            m.phase = "downloaded"
    elif m.phase == "downloaded":
        _post(client, m, check=False, event=_event(3, 1))
        m.phase = "installed"
    elif m.phase == "installed":  # rebooted into the new version: 3/2 rides with the next check
        m.previous, m.version = m.version, m.target
        _post(client, m, check=True, event=_event(3, 2, f' previousversion="{m.previous}"'))
        m.phase = "idle"


def _post(client: httpx.Client, m: Machine, *, check: bool, event: str = "") -> str:
    r = client.post(
        "/v1/update/",
        content=request_xml(m, check=check, event=event),
        headers={"Content-Type": "text/xml"},
    )
    r.raise_for_status()
    return r.text


def summary(machines: list[Machine]) -> str:
    """``complete 6 · updating 4 · failed 2 · waiting 26`` for one status line."""
    c = Counter(
        "complete" if m.version != START_VERSION
        else "failed" if m.phase == "failed"
        else "updating" if m.phase != "idle"
        else "waiting"
        for m in machines
    )  # fmt: skip
    return " · ".join(f"{k} {c[k]}" for k in ("complete", "updating", "failed", "waiting"))


def load(state: Path | None) -> list[Machine]:
    """The machines as a previous run left them (so a second run does not "downgrade" them)."""
    if state is not None and state.exists():
        return [Machine(**m) for m in json.loads(state.read_text())]
    return fleet()


def save(state: Path | None, machines: list[Machine]) -> None:
    """Write the machines' state for the next run."""
    if state is not None:
        state.write_text(json.dumps([dataclasses.asdict(m) for m in machines]))


def run(
    server: str,
    rounds: int,
    interval: float,
    forever: bool,
    quiet: bool,
    state: Path | None = None,
) -> None:
    """Play ``rounds`` rounds (or until stopped with ``forever``), one step per machine each."""
    machines = load(state)
    try:
        with httpx.Client(base_url=server, timeout=30) as client:
            n = 0
            while forever or n < rounds:
                n += 1
                for m in machines:
                    step(client, m)
                if not quiet:
                    print(f"round {n}: {summary(machines)}", flush=True)
                time.sleep(interval)
    finally:
        save(state, machines)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m flotilla.updates.node.demo``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--server", required=True, help="base URL of flotilla updates serve")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--interval", type=float, default=0.3, help="seconds between rounds")
    p.add_argument("--forever", action="store_true", help="keep checking in until stopped")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--state", type=Path, help="JSON file keeping the machines between runs")
    args = p.parse_args(argv)
    try:
        run(
            args.server.rstrip("/"),
            args.rounds,
            args.interval,
            args.forever,
            args.quiet,
            args.state,
        )
    except KeyboardInterrupt:
        return 0
    except httpx.HTTPError as e:
        print(f"demo fleet: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
