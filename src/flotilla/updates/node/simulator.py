"""``flotilla updates simulate``: thousands of update_engine-shaped machines in one process.

Each machine is a small state machine driven by one asyncio task: it checks in on update_engine's
schedule (45 min ± 5, compressed by ``time_scale``), sends the same requests and events as the
real agent (:mod:`omaha_client`), pretends to download and install (taking ``download`` virtual
seconds, failing with ``failure_rate``), waits ``reboot_delay`` for its reboot and reports 3/2
with ``previousversion`` on the first check after it. Nothing is written to disk; the payload is
never fetched. Operators rehearse a policy with it; the benchmark uses it for load.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from flotilla.updates.node.agent import Schedule, next_delay
from flotilla.updates.node.omaha_client import (
    ERROR_PAYLOAD_HASH_MISMATCH,
    EVENT_DOWNLOAD_FINISHED,
    EVENT_DOWNLOAD_STARTED,
    EVENT_INSTALLED,
    EVENT_UPDATE_COMPLETE,
    RESULT_ERROR,
    RESULT_SUCCESS,
    ClientEvent,
    Identity,
    ResponseError,
    build_request,
    parse_response,
    update_check_event,
)


@dataclass(frozen=True)
class SimSettings:
    """A simulated fleet. Durations are virtual seconds; ``time_scale`` divides them."""

    server: str
    instances: int = 100
    track: str = "stable"
    version: str = "3510.2.0"
    time_scale: float = 1.0
    schedule: Schedule = field(default_factory=lambda: Schedule(initial_delay=0))
    spread_start: bool = True
    """First checks spread over one interval (a fleet already running), else all at once."""
    download: float = 120.0
    reboot_delay: float = 600.0
    """From "update staged" to the reboot (a reboot window, a FleetLock slot)."""
    failure_rate: float = 0.0
    """Chance that an install fails (reported as 3/0 with error 10, as a corrupt payload)."""
    concurrency: int = 16
    """HTTP requests in flight at most (connections to the server). httpx's pool costs more
    CPU per request as this grows; 8-16 keep a single server busy."""
    seed: int = 1
    board: str = "amd64-usr"


@dataclass
class Machine:
    """One simulated machine."""

    ident: Identity
    state: str = "idle"
    """idle, downloading, installed (waiting for reboot), failed, error (transport)."""
    report_previous: str | None = None
    failures: int = 0
    poll_interval: int | None = None


@dataclass
class Tally:
    """What the fleet did so far."""

    checkins: int = 0
    events: int = 0
    errors: int = 0
    updates: int = 0
    failures: int = 0


class Fleet:
    """N machines against one server."""

    def __init__(self, settings: SimSettings, client: httpx.AsyncClient | None = None) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.machines = [
            Machine(
                Identity(
                    machine_id=f"sim{settings.seed:04d}{i:025d}",
                    version=settings.version,
                    track=settings.track,
                    machine_alias=f"sim-{i}",
                    board=settings.board,
                    boot_id=f"sim-boot-{i}-0",
                )
            )
            for i in range(settings.instances)
        ]
        self.tally = Tally()
        self._client = client
        self._sem = asyncio.Semaphore(settings.concurrency)

    def versions(self) -> collections.Counter[str]:
        """How many machines run each version."""
        return collections.Counter(m.ident.version for m in self.machines)

    def states(self) -> collections.Counter[str]:
        """How many machines are in each state."""
        return collections.Counter(m.state for m in self.machines)

    async def _sleep(self, virtual: float, stop: asyncio.Event) -> None:
        # A plain sleep (no wait_for task per machine); run() cancels sleepers on stop.
        if not stop.is_set():
            await asyncio.sleep(virtual / self.s.time_scale)

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> bytes | None:
        async with self._sem:
            try:
                r = await client.post(
                    self.s.server, content=body, headers={"Content-Type": "text/xml"}
                )
            except httpx.HTTPError:
                self.tally.errors += 1
                return None
        if r.status_code != 200:
            self.tally.errors += 1
            return None
        return r.content

    async def _event(self, client: httpx.AsyncClient, m: Machine, ev: ClientEvent) -> None:
        self.tally.events += 1
        await self._post(client, build_request(m.ident, update_check=False, events=(ev,)))

    async def _round(self, client: httpx.AsyncClient, m: Machine, stop: asyncio.Event) -> bool:
        """One check (and the update it brings); False on a transport error."""
        # update_engine puts 3/2 (previousversion "" once reported) next to every updatecheck.
        events = (update_check_event(m.ident.version, m.report_previous),)
        body = await self._post(client, build_request(m.ident, events=events))
        self.tally.checkins += 1
        if body is None:
            return False
        m.report_previous = None
        try:
            answer = parse_response(body, m.ident.app_id)
        except ResponseError:
            self.tally.errors += 1
            return False
        m.poll_interval = answer.poll_interval
        if answer.update is None:
            return True
        target = answer.update.version
        m.state = "downloading"
        await self._event(client, m, ClientEvent(EVENT_DOWNLOAD_STARTED, RESULT_SUCCESS))
        await self._sleep(self.s.download, stop)
        if self.rng.random() < self.s.failure_rate:
            m.state = "failed"
            self.tally.failures += 1
            await self._event(
                client,
                m,
                ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_ERROR, ERROR_PAYLOAD_HASH_MISMATCH),
            )
            return True
        await self._event(client, m, ClientEvent(EVENT_DOWNLOAD_FINISHED, RESULT_SUCCESS))
        await self._event(client, m, ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_SUCCESS))
        await self._event(client, m, ClientEvent(EVENT_INSTALLED, RESULT_SUCCESS))
        m.state = "installed"
        await self._sleep(self.rng.uniform(0.5, 1.5) * self.s.reboot_delay, stop)
        if stop.is_set():
            return True
        # The reboot: a new boot id, the new version, 3/2 on the next (immediate) check.
        n = int(m.ident.boot_id.rsplit("-", 1)[1]) + 1
        m.report_previous = m.ident.version
        m.ident = Identity(
            **{
                **m.ident.__dict__,
                "version": target,
                "boot_id": m.ident.boot_id.rsplit("-", 1)[0] + f"-{n}",
            }
        )
        m.state = "idle"
        self.tally.updates += 1
        return await self._round(client, m, stop)

    async def _machine(self, client: httpx.AsyncClient, m: Machine, stop: asyncio.Event) -> None:
        sched = self.s.schedule
        first = self.rng.uniform(0, sched.interval) if self.s.spread_start else 0.0
        await self._sleep(first, stop)
        while not stop.is_set():
            ok = await self._round(client, m, stop)
            m.failures = 0 if ok else m.failures + 1
            await self._sleep(
                next_delay(sched, m.failures, m.poll_interval, self.rng.random()), stop
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Run every machine until ``stop`` is set."""
        limits = httpx.Limits(
            max_connections=self.s.concurrency, max_keepalive_connections=self.s.concurrency
        )
        own = self._client is None
        client = self._client or httpx.AsyncClient(timeout=60, limits=limits)
        try:
            tasks = [
                asyncio.create_task(self._machine(client, m, stop), name=f"sim-{i}")
                for i, m in enumerate(self.machines)
            ]
            await stop.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if own:
                await client.aclose()


def done(fleet: Fleet, target: str) -> bool:
    """Every machine runs ``target`` and has reported it (its 3/2 went out)."""
    return all(m.ident.version == target and m.report_previous is None for m in fleet.machines)


async def simulate(
    settings: SimSettings,
    *,
    target: str | None,
    timeout: float | None,
    on_tick: Callable[[Fleet, float], None] | None = None,
    tick: float = 0.5,
) -> bool:
    """Run until every machine is on ``target`` (True) or ``timeout`` real seconds (False).

    Without ``target``, run until the timeout and report True.
    """
    fleet = Fleet(settings)
    stop = asyncio.Event()
    runner = asyncio.create_task(fleet.run(stop), name="sim-fleet")
    start = time.monotonic()
    ok = target is None
    try:
        while True:
            await asyncio.sleep(tick)
            elapsed = time.monotonic() - start
            if on_tick is not None:
                on_tick(fleet, elapsed)
            if target is not None and done(fleet, target):
                ok = True
                break
            if timeout is not None and elapsed >= timeout:
                break
            if runner.done():
                runner.result()
                break
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
    if on_tick is not None:
        on_tick(fleet, time.monotonic() - start)
    return ok


def target_from_api(server: str, token: str, app_id: str, track: str) -> str | None:
    """The version machines on ``track`` should end on: the group's pin, else its channel's."""
    base = server.split("/v1/update", 1)[0].rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        groups = c.get(f"/api/v1/apps/{app_id}/groups")
        groups.raise_for_status()
        group = next((g for g in groups.json() if g["track"] == track), None)
        if group is None:
            return None
        pinned = (group.get("policy") or {}).get("pinned_version")
        if pinned:
            return str(pinned)
        channels = c.get(f"/api/v1/apps/{app_id}/channels")
        channels.raise_for_status()
        ch = next((x for x in channels.json() if x["name"] == group["channel"]), None)
        return str(ch["package"]) if ch and ch.get("package") else None
