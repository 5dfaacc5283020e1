"""``flotilla updates agent``: an Omaha update client that behaves like update_engine.

The pure parts (when to check next, how long to back off, what a reboot changes in the state,
what update.conf says) are plain functions; :class:`Agent` is the adapter that talks HTTP and
writes slots. One check, in update_engine's order (``update_attempter.cc: BuildUpdateActions``):
updatecheck + 3/2 (``previousversion``: the version before the reboot, ``""`` afterwards,
``"0.0.0.0"`` on a fresh machine; 3/0 error 44 instead after a rollback) → 13/1 → download
(resumable, HTTP Range) → size + sha256 → 14/1 → write the inactive slot → read it back → mark it
for the next boot and "reboot needed" (postinstall) → 3/1 → 800/1. 800/1 is not update_engine's:
it is the CoreRoller/Nebraska "installed" event, without which Nebraska leaves the machine at
Downloaded. Until the reboot only pings go out. Any failure is 3/0 with update_engine's error
code; a payload that fails verification is deleted and never marked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from flotilla.updates.node import slots
from flotilla.updates.node.omaha_client import (
    ERROR_DOWNLOAD_TRANSFER,
    ERROR_DOWNLOAD_WRITE,
    ERROR_HTTP_BASE,
    ERROR_PAYLOAD_HASH_MISMATCH,
    ERROR_PAYLOAD_SIZE_MISMATCH,
    EVENT_DOWNLOAD_FINISHED,
    EVENT_DOWNLOAD_STARTED,
    EVENT_INSTALLED,
    EVENT_UPDATE_COMPLETE,
    PREVIOUS_INITIAL,
    RESULT_ERROR,
    RESULT_SUCCESS,
    Answer,
    ClientEvent,
    Identity,
    ResponseError,
    Update,
    build_request,
    parse_response,
    update_check_event,
)

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
REBOOT_MARKER = "reboot-needed"
PARTIAL = "download.partial"
PARTIAL_META = "download.json"

# --- pure: configuration and scheduling ----------------------------------------------------------


def parse_update_conf(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as in /etc/flatcar/update.conf; comments, blanks and quotes handled."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def merge_confs(*texts: str) -> dict[str, str]:
    """update_engine's order: /etc/flatcar/update.conf wins over /usr/share/flatcar/update.conf,
    which wins over the release file. Pass them most important first."""
    merged: dict[str, str] = {}
    for text in reversed(texts):
        merged.update(parse_update_conf(text))
    return merged


@dataclass(frozen=True)
class Schedule:
    """When to check, in seconds: update_engine's defaults (update_check_scheduler.cc)."""

    interval: float = 45 * 60
    """Between checks."""
    fuzz: float = 10 * 60
    """Total spread around each delay: 45 min ± 5 min."""
    initial_delay: float = 7 * 60
    """The first check after start."""
    max_backoff: float = 4 * 3600
    """Ceiling of the exponential back-off after 5xx or connection errors."""


def fuzzed(seconds: float, fuzz: float, u: float) -> float:
    """``seconds ± fuzz/2``, with ``u`` uniform in [0, 1); never negative."""
    return max(0.0, seconds - fuzz / 2 + u * fuzz)


def next_delay(schedule: Schedule, failures: int, poll_interval: int | None, u: float) -> float:
    """Seconds until the next check.

    After ``failures`` consecutive 5xx/connection errors the interval doubles per failure up to
    ``max_backoff`` (no fuzz past the ceiling); a server's ``PollInterval`` replaces the interval.
    """
    base = float(poll_interval) if poll_interval else schedule.interval
    if failures > 0:
        backed = base * (2 ** min(failures, 30))
        if backed >= schedule.max_backoff:
            return schedule.max_backoff
        return fuzzed(backed, schedule.fuzz, u)
    return fuzzed(base, schedule.fuzz, u)


@dataclass(frozen=True)
class Pending:
    """An update written and verified in a slot, waiting for the reboot that activates it."""

    version: str
    slot: str
    staged_boot_id: str
    previous_version: str


@dataclass(frozen=True)
class AgentState:
    """What survives restarts and reboots (``state.json``): small on purpose."""

    version: str
    active_slot: str = "A"
    boot_id: str = ""
    pending: Pending | None = None
    report_previous: str | None = None
    """update_engine's previous-version pref: the next check's 3/2 carries it (the version before
    the reboot, or ``"0.0.0.0"`` on a fresh machine); None once sent (``previousversion=""``)."""
    lock_held: bool = False
    """A FleetLock slot taken before rebooting; given back on the first round after it."""

    def to_json(self) -> str:
        """Stable JSON for the state file."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AgentState:
        """Read a state file; unknown keys are ignored so older agents can read newer files."""
        raw = json.loads(text)
        pending = raw.get("pending")
        return cls(
            version=str(raw["version"]),
            active_slot="B" if raw.get("active_slot") == "B" else "A",
            boot_id=str(raw.get("boot_id", "")),
            pending=Pending(**pending) if isinstance(pending, dict) else None,
            report_previous=raw.get("report_previous"),
            lock_held=bool(raw.get("lock_held", False)),
        )


def after_boot(state: AgentState, boot_id: str) -> AgentState:
    """What a (possibly new) boot id means: a reboot with a staged slot switches to it.

    A reboot without a staged update changes only the recorded boot id.
    """
    if boot_id == state.boot_id:
        return state
    p = state.pending
    if p is not None and boot_id != p.staged_boot_id:
        return AgentState(
            version=p.version,
            active_slot=p.slot,
            boot_id=boot_id,
            pending=None,
            report_previous=p.previous_version,
            lock_held=state.lock_held,
        )
    return replace(state, boot_id=boot_id)


# --- the adapter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent needs; read from update.conf and flags at the entry point."""

    server: str
    """Omaha endpoint (``SERVER``), e.g. ``http://updates:8000/v1/update/``."""
    state_dir: Path
    slot_a: Path
    slot_b: Path
    identity: Identity
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    """Read before each check: a changed value means the machine rebooted."""
    schedule: Schedule = field(default_factory=Schedule)
    timeout: float = 60.0
    """Seconds per HTTP request (downloads: per read)."""
    tries_per_url: int = 3
    """Download attempts per payload URL, each resuming where the last broke off."""
    reboot_strategy: str = "off"
    """``off`` (someone else reboots: FLUO-style coordinator, a human), ``reboot`` (at once) or
    ``fleetlock`` (take a FleetLock slot first, give it back after the reboot)."""
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    fleetlock_url: str = ""
    """Base URL of a FleetLock server, e.g. ``http://updates:8000/``."""
    fleetlock_group: str = "default"


class TransientError(Exception):
    """5xx or no connection: back off and retry (update_engine's behaviour)."""


class _PayloadError(Exception):
    def __init__(self, message: str, code: int, keep_partial: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.keep_partial = keep_partial


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(slots.CHUNK):
            yield chunk


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    for chunk in _read_chunks(path):
        h.update(chunk)
    return h.hexdigest()


class Agent:
    """One machine's update agent. ``check()`` is one round; ``run()`` loops like update_engine."""

    def __init__(
        self,
        settings: AgentSettings,
        client: httpx.AsyncClient | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._client = client
        self._own_client = client is None
        self._rng = rng
        self.failures = 0
        self.poll_interval: int | None = None
        self.events_sent: list[ClientEvent] = []
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = self._load()

    # --- state ---

    @property
    def state_path(self) -> Path:
        return self.settings.state_dir / STATE_FILE

    @property
    def reboot_marker(self) -> Path:
        return self.settings.state_dir / REBOOT_MARKER

    def _load(self) -> AgentState:
        try:
            return AgentState.from_json(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = AgentState(
                version=self.settings.identity.version,
                boot_id=self._boot_id(),
                report_previous=PREVIOUS_INITIAL,
            )
            self._save(state)
            return state
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"corrupt agent state {self.state_path}: {e}") from None

    def _save(self, state: AgentState) -> None:
        self.state = state
        _atomic_write(self.state_path, state.to_json())

    def _boot_id(self) -> str:
        try:
            return self.settings.boot_id_file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def slot(self, name: str) -> slots.Slot:
        """Slot ``A`` or ``B``."""
        return slots.Slot(name, self.settings.slot_a if name == "A" else self.settings.slot_b)

    def identity(self) -> Identity:
        """This machine as the next request presents it (the version is the running one)."""
        return replace(self.settings.identity, version=self.state.version, boot_id=self._boot_id())

    @property
    def reboot_needed(self) -> bool:
        """A verified update waits in the inactive slot."""
        return self.state.pending is not None

    # --- HTTP ---

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        async with httpx.AsyncClient(timeout=self.settings.timeout) as c:
            yield c

    async def _post(self, client: httpx.AsyncClient, body: bytes) -> bytes:
        try:
            r = await client.post(
                self.settings.server, content=body, headers={"Content-Type": "text/xml"}
            )
        except httpx.HTTPError as e:
            raise TransientError(f"{self.settings.server}: {e!r}") from e
        if r.status_code >= 500:
            raise TransientError(f"{self.settings.server}: HTTP {r.status_code}")
        if r.status_code != 200:
            raise ResponseError(f"HTTP {r.status_code}: {r.text[:200]}")
        return r.content

    async def _event(self, client: httpx.AsyncClient, ev: ClientEvent) -> None:
        """Send one event on its own, as update_engine does; a lost event is logged, not fatal."""
        self.events_sent.append(ev)
        try:
            await self._post(
                client, build_request(self.identity(), update_check=False, events=(ev,))
            )
        except (TransientError, ResponseError) as e:
            logger.warning("event %d/%d not delivered: %s", ev.type, ev.result, e)

    # --- one round ---

    async def check(self, interactive: bool = False) -> Answer | None:
        """One round; returns the parsed answer (None for a ping-only round while a reboot waits).

        Raises :class:`TransientError` on 5xx/connection errors, :class:`ResponseError` on an
        answer update_engine would refuse.
        """
        state = after_boot(self.state, self._boot_id())
        if state != self.state:
            self._save(state)
            if self.reboot_marker.exists() and state.pending is None:
                self.reboot_marker.unlink()
        async with self._http() as client:
            if self.state.lock_held and self.state.pending is None:
                await self._fleetlock(client, "steady-state")
            if self.state.pending is not None:
                # UPDATED_NEED_REBOOT: only ping, every interval, until the reboot.
                await self._post(client, build_request(self.identity(), update_check=False))
                await self._maybe_reboot(client)
                return None
            events = (update_check_event(self.state.version, self.state.report_previous),)
            body = await self._post(
                client, build_request(self.identity(), events=events, interactive=interactive)
            )
            self.events_sent.extend(events)
            if self.state.report_previous is not None:
                self._save(replace(self.state, report_previous=None))
            answer = parse_response(body, self.settings.identity.app_id)
            self.poll_interval = answer.poll_interval
            if answer.update is not None:
                await self._apply(client, answer.update)
            return answer

    async def _apply(self, client: httpx.AsyncClient, update: Update) -> None:
        await self._event(client, ClientEvent(EVENT_DOWNLOAD_STARTED, RESULT_SUCCESS))
        partial = self.settings.state_dir / PARTIAL
        try:
            await self._download(client, update, partial)
            await self._event(client, ClientEvent(EVENT_DOWNLOAD_FINISHED, RESULT_SUCCESS))
            target = self.slot(slots.inactive(self.state.active_slot))
            await asyncio.to_thread(self._install, target, partial, update)
        except _PayloadError as e:
            logger.error("update to %s failed: %s (error %d)", update.version, e, e.code)
            if not e.keep_partial:
                self._discard(partial)
            await self._event(client, ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_ERROR, e.code))
            return
        self._discard(partial)
        self._save(
            replace(
                self.state,
                pending=Pending(
                    update.version, target.name, self.state.boot_id, self.state.version
                ),
            )
        )
        _atomic_write(self.reboot_marker, update.version + "\n")
        logger.info("update %s staged in slot %s; reboot needed", update.version, target.name)
        await self._event(client, ClientEvent(EVENT_UPDATE_COMPLETE, RESULT_SUCCESS))
        await self._event(client, ClientEvent(EVENT_INSTALLED, RESULT_SUCCESS))

    async def _fleetlock(self, client: httpx.AsyncClient, op: str) -> bool:
        """``pre-reboot`` / ``steady-state``; True on 200 (the state records the slot)."""
        url = self.settings.fleetlock_url.rstrip("/") + f"/v1/{op}"
        body = {
            "client_params": {
                "id": self.settings.identity.machine_id,
                "group": self.settings.fleetlock_group,
            }
        }
        try:
            r = await client.post(url, json=body, headers={"fleet-lock-protocol": "true"})
        except httpx.HTTPError as e:
            logger.warning("fleetlock %s failed: %r", op, e)
            return False
        if r.status_code != 200:
            logger.info("fleetlock %s refused (%d): %s", op, r.status_code, r.text[:200])
            return False
        self._save(replace(self.state, lock_held=op == "pre-reboot"))
        return True

    async def _maybe_reboot(self, client: httpx.AsyncClient) -> None:
        """Reboot per the strategy: never without a slot when the strategy is fleetlock."""
        strategy = self.settings.reboot_strategy
        if strategy == "off":
            return
        if (
            strategy == "fleetlock"
            and not self.state.lock_held
            and not await self._fleetlock(client, "pre-reboot")
        ):
            return
        logger.info(
            "rebooting into %s: %s",
            self.state.pending.version if self.state.pending else "?",
            " ".join(self.settings.reboot_command),
        )
        proc = await asyncio.create_subprocess_exec(*self.settings.reboot_command)
        if await proc.wait() != 0:
            logger.error("reboot command exited with %d", proc.returncode)

    def _discard(self, partial: Path) -> None:
        for p in (partial, self.settings.state_dir / PARTIAL_META):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _install(self, target: slots.Slot, partial: Path, update: Update) -> None:
        """Write the verified download into the inactive slot and read it back."""
        try:
            slots.write(target, _read_chunks(partial), update.size)
        except OSError as e:  # SlotError included
            raise _PayloadError(str(e), ERROR_DOWNLOAD_WRITE) from e
        if not slots.verify(target, update.size, update.sha256_hex):
            raise _PayloadError(
                f"slot {target.name} does not read back the payload", ERROR_PAYLOAD_HASH_MISMATCH
            )

    async def _download(self, client: httpx.AsyncClient, update: Update, partial: Path) -> None:
        """Fetch into ``partial``, resuming a previous attempt at the same payload with Range."""
        meta_path = self.settings.state_dir / PARTIAL_META
        meta = {"version": update.version, "sha256": update.sha256_hex, "size": update.size}
        try:
            same = json.loads(meta_path.read_text(encoding="utf-8")) == meta
        except (OSError, ValueError):
            same = False
        if not same:
            self._discard(partial)
            _atomic_write(meta_path, json.dumps(meta))
        have = partial.stat().st_size if partial.exists() else 0
        if have > update.size:
            self._discard(partial)
            _atomic_write(meta_path, json.dumps(meta))
            have = 0
        last: Exception | None = None
        done = False
        for url in update.payload_urls():
            # update_engine retries each URL (MaxFailureCountPerUrl) before giving up on it.
            for attempt in range(self.settings.tries_per_url):
                try:
                    await self._fetch(client, url, partial, have, update.size)
                    done = True
                    break
                except (httpx.HTTPError, _PayloadError) as e:
                    last = e
                    have = partial.stat().st_size if partial.exists() else 0
                    logger.info(
                        "download of %s broke off at %d bytes (try %d): %s",
                        url,
                        have,
                        attempt + 1,
                        e,
                    )
                    if isinstance(e, _PayloadError) and e.code == ERROR_PAYLOAD_SIZE_MISMATCH:
                        raise
                    await asyncio.sleep(min(2.0**attempt * 0.1, 5.0))
            if done:
                break
        if not done:
            code = last.code if isinstance(last, _PayloadError) else ERROR_DOWNLOAD_TRANSFER
            raise _PayloadError(f"download failed: {last!r}", code, keep_partial=True)
        size = partial.stat().st_size
        if size != update.size:
            raise _PayloadError(
                f"payload is {size} bytes, expected {update.size}", ERROR_PAYLOAD_SIZE_MISMATCH
            )
        got = await asyncio.to_thread(_file_sha256, partial)
        if got != update.sha256_hex:
            raise _PayloadError(
                f"payload sha256 {got} != {update.sha256_hex}", ERROR_PAYLOAD_HASH_MISMATCH
            )

    async def _fetch(
        self, client: httpx.AsyncClient, url: str, partial: Path, have: int, size: int
    ) -> None:
        if have == size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        async with client.stream("GET", url, headers=headers) as r:
            if r.status_code == 200:
                mode = "wb"  # the server ignored Range: start over
            elif r.status_code == 206 and have:
                mode = "ab"
            else:
                code = ERROR_HTTP_BASE + r.status_code
                raise _PayloadError(f"GET {url}: HTTP {r.status_code}", code, keep_partial=True)
            with open(partial, mode) as f:
                written = 0 if mode == "wb" else have
                async for chunk in r.aiter_raw():  # bytes as stored, never decoded
                    written += len(chunk)
                    if written > size:
                        raise _PayloadError(
                            f"{url} is longer than {size} bytes", ERROR_PAYLOAD_SIZE_MISMATCH
                        )
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())

    # --- the loop ---

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        """Check now (``once``) or on update_engine's schedule until ``stop`` is set."""
        delay = (
            0.0
            if once
            else fuzzed(
                self.settings.schedule.initial_delay, self.settings.schedule.fuzz, self._rng()
            )
        )
        while True:
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            try:
                await self.check()
                self.failures = 0
            except TransientError as e:
                self.failures += 1
                logger.warning("update check failed (%d in a row): %s", self.failures, e)
            except ResponseError as e:
                logger.error("invalid answer from the server: %s", e)
            except OSError as e:  # a full disk, a vanished slot: log, keep the daemon alive
                logger.error("update check failed locally: %s", e)
            if once:
                return
            delay = next_delay(
                self.settings.schedule, self.failures, self.poll_interval, self._rng()
            )
            logger.info("next update check in %.0f s", delay)


def status(settings: AgentSettings) -> dict[str, Any]:
    """The agent's state as a dict, for ``--status`` and for node annotations."""
    path = settings.state_dir / STATE_FILE
    if not path.exists():
        return {"version": settings.identity.version, "reboot_needed": False}
    state = AgentState.from_json(path.read_text(encoding="utf-8"))
    out = asdict(state)
    out["reboot_needed"] = state.pending is not None
    return out
