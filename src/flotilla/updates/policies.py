"""Rollout policy: "which version should this instance move to, and may it get it now?"

Plain functions over the dataclasses in :mod:`flotilla.updates.models`; the store calls them while
it holds the group's lock, and the tests call them directly with many generated inputs.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flotilla.core import units
from flotilla.updates import error_codes
from flotilla.updates.models import (
    IN_PROGRESS,
    Channel,
    InstanceState,
    InstanceStatus,
    InvalidVersionError,
    Policy,
    RolloutStats,
    Version,
    Window,
)

UNLIMITED = 900_000
"""Like Nebraska: a per-period maximum this high means "no rate limit", so no stats are needed."""


class Reason(enum.StrEnum):
    """Why a decision came out the way it did (logged, counted, never sent to clients)."""

    GRANTED = "granted"
    UPDATES_DISABLED = "updatesDisabled"
    OUTSIDE_OFFICE_HOURS = "outsideOfficeHours"
    OUTSIDE_MAINTENANCE_WINDOW = "outsideMaintenanceWindow"
    NOT_IN_ROLLOUT_PERCENT = "notInRolloutPercent"
    ROLLOUT_HALTED = "rolloutHalted"
    MAX_UPDATES_PER_PERIOD = "maxUpdatesPerPeriodLimitReached"
    MAX_CONCURRENT = "maxConcurrentUpdatesLimitReached"
    MAX_TIMED_OUT = "maxTimedOutUpdatesLimitReached"


@dataclass(frozen=True)
class Decision:
    """The answer for one instance: grant or not, why, and whether to trip the brake."""

    grant: bool
    reason: Reason
    halt: bool = False
    """True when this decision trips the rollout brake (the store records it on the group)."""


def bucket(salt: str, machine_id: str) -> float:
    """Map a machine to a stable point in [0, 100): raising a percentage only ever adds machines.

    The salt is the group id, so each group picks its own canaries but keeps them release after
    release.
    """
    digest = hashlib.sha256(f"{salt}\0{machine_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100.0 / 2**64


def in_rollout(salt: str, machine_id: str, percent: float) -> bool:
    """Whether the machine falls inside the first ``percent`` of the bucket space."""
    if percent >= 100.0:
        return True
    if percent <= 0.0:
        return False
    return bucket(salt, machine_id) < percent


def zone(name: str) -> ZoneInfo | None:
    """The named timezone, or None when unknown (callers then treat every window as closed)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def in_office_hours(now: datetime, timezone: str) -> bool:
    """Nebraska's office hours: Monday-Friday 09:00-16:59 local time; unknown zone = closed."""
    tz = zone(timezone)
    if tz is None:
        return False
    local = now.astimezone(tz)
    return local.weekday() < 5 and 9 <= local.hour < 17


def in_window(now: datetime, window: Window, timezone: str) -> bool:
    """Whether ``now`` falls inside the weekly window (which may cross midnight)."""
    tz = zone(timezone)
    if tz is None:
        return False
    local = now.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    day = local.weekday()
    if window.start < window.end:
        return day in window.days and window.start <= t < window.end
    if window.start == window.end:  # a whole day
        return day in window.days
    # Crosses midnight: the evening part on a listed day, the morning part on the day after one.
    return (day in window.days and t >= window.start) or (
        (day - 1) % 7 in window.days and t < window.end
    )


def in_any_window(now: datetime, windows: Iterable[Window], timezone: str) -> bool:
    """No windows means always open; otherwise any one window open is enough."""
    windows = tuple(windows)
    return not windows or any(in_window(now, w, timezone) for w in windows)


def choose_target(current: str, channel: Channel, pinned: str | None = None) -> str | None:
    """The version this instance should move to next, or None to answer ``noupdate``.

    A pinned version replaces the channel's; floors between the current and the final target are
    served one step at a time, lowest first; blocked versions are never served; nothing older
    than what runs is offered (no downgrades).
    """
    final_text = pinned or channel.version
    if final_text is None:
        return None
    cur = Version.parse(current)
    final = Version.parse(final_text)
    if final <= cur:
        return None
    blocked = set(channel.blocked_versions)
    floors = sorted(
        (Version.parse(f) for f in channel.floors if cur < Version.parse(f) < final),
    )
    for floor in floors:
        if floor.text in blocked:
            return None  # a blocked required step stops the path rather than skipping it
        return floor.text
    if final.text in blocked:
        return None
    return final.text


def may_grant(
    now: datetime,
    machine_id: str,
    salt: str,
    policy: Policy,
    stats: RolloutStats | None,
    halted: bool = False,
) -> Decision:
    """Decide whether an instance may be granted the target now.

    ``stats`` may be None only when :func:`needs_stats` is False. Checks run cheapest first; the
    order of the rate checks follows Nebraska so the same policy behaves the same.
    """
    early = early_refusal(now, machine_id, salt, policy, halted)
    if early is not None:
        return Decision(False, early)
    if not needs_stats(policy):
        return Decision(True, Reason.GRANTED)
    if stats is None:
        raise ValueError("this policy has rate limits: stats are required")
    eff_max = policy.max_updates_per_period
    if policy.safe_mode and stats.attempted == 0:
        eff_max = 1
    if stats.granted_in_period >= eff_max:
        return Decision(False, Reason.MAX_UPDATES_PER_PERIOD)
    if stats.in_progress >= eff_max:
        return Decision(False, Reason.MAX_CONCURRENT)
    if policy.safe_mode and stats.timed_out >= eff_max:
        return Decision(False, Reason.MAX_TIMED_OUT, halt=True)
    return Decision(True, Reason.GRANTED)


def early_refusal(
    now: datetime, machine_id: str, salt: str, policy: Policy, halted: bool = False
) -> Reason | None:
    """The refusals that need no counting: switches, the brake, the clock and the percentage.

    The store uses this to answer such check-ins without a write transaction.
    """
    if not policy.updates_enabled:
        return Reason.UPDATES_DISABLED
    if halted:
        return Reason.ROLLOUT_HALTED
    if policy.office_hours and not in_office_hours(now, policy.timezone):
        return Reason.OUTSIDE_OFFICE_HOURS
    if not in_any_window(now, policy.maintenance_windows, policy.timezone):
        return Reason.OUTSIDE_MAINTENANCE_WINDOW
    if not in_rollout(salt, machine_id, policy.rollout_percent):
        return Reason.NOT_IN_ROLLOUT_PERCENT
    return None


def needs_stats(policy: Policy) -> bool:
    """Whether a grant must count the group's grants (and so take the group lock)."""
    return policy.safe_mode or policy.max_updates_per_period < UNLIMITED


def failure_threshold(policy: Policy) -> int | None:
    """How many failures on one target a rollout tolerates; safe mode tolerates none."""
    if policy.max_failures is not None:
        return policy.max_failures
    return 0 if policy.safe_mode else None


def brake_trips(policy: Policy, failures: int) -> bool:
    """The failure brake: halt once failures on the current target exceed the threshold."""
    threshold = failure_threshold(policy)
    return threshold is not None and failures > threshold


# --- why a machine waits: the same checks as the decision, put into words ----------------------


class WaitKind(enum.StrEnum):
    """Categories of "why is this machine not on the target", for counting per group."""

    FAILED = "failed"
    IN_PROGRESS = "inProgress"
    TIMED_OUT = "timedOut"
    WAITING_REBOOT = "waitingForReboot"
    NO_TARGET = "noTarget"
    NO_PACKAGE = "noPackage"
    OFFERED = "offeredAtNextCheckin"


@dataclass(frozen=True)
class GroupFacts:
    """What the reasons need about a group beyond its policy (read from the store)."""

    salt: str
    """The group id: the salt of :func:`bucket`, as in the check-in."""
    policy: Policy
    channel: Channel | None
    halted_version: str | None = None
    halted_reason: str | None = None
    paused_by: str | None = None
    """Who switched updates off and when, if the activity feed knows (else None)."""
    stats: RolloutStats | None = None
    """The group's counts for the rate limits; required when :func:`needs_stats` is True."""
    next_slot: datetime | None = None
    """When the rate limit frees its next slot (see :func:`next_slot`)."""

    @property
    def final_target(self) -> str | None:
        """The version the group is heading to: the pin, else the channel's version."""
        return self.policy.pinned_version or (self.channel.version if self.channel else None)

    @property
    def halted(self) -> bool:
        """Whether the brake holds the current target (the check-in's ``halted`` argument)."""
        return self.halted_version is not None and self.halted_version == self.final_target


@dataclass(frozen=True)
class Why:
    """Why a machine (or a whole group) is not moving: a category to count and a sentence."""

    kind: str
    """A :class:`Reason` value for policy refusals, else a :class:`WaitKind` value."""
    text: str


def next_slot(grants_in_period: list[datetime], limit: int, period: timedelta) -> datetime | None:
    """When a full rate limit frees a slot: the grant that must leave the period, plus the period.

    ``grants_in_period`` are the grant times inside the current period, oldest first.
    """
    excess = len(grants_in_period) - limit
    if limit < 1 or excess < 0:
        return None
    return grants_in_period[excess] + period


def next_open(now: datetime, policy: Policy) -> datetime | None:
    """The next moment office hours and the maintenance windows are all open (within 8 days).

    Opening moments are midnights, 09:00 and window starts in the group's zone, so only those
    are tried, with the same predicates the decision uses.
    """
    tz = zone(policy.timezone)
    if tz is None:
        return None
    starts = {time(0, 0), *(w.start for w in policy.maintenance_windows)}
    if policy.office_hours:
        starts.add(time(9, 0))
    local = now.astimezone(tz)
    candidates = sorted(
        datetime.combine(local.date() + timedelta(days=d), t, tzinfo=tz)
        for d in range(9)
        for t in starts
    )
    for at in candidates:
        if at <= now:
            continue
        if policy.office_hours and not in_office_hours(at, policy.timezone):
            continue
        if in_any_window(at, policy.maintenance_windows, policy.timezone):
            return at
    return None


def _when(at: datetime | None, now: datetime, tz: ZoneInfo | None = None) -> str:
    """``12:04`` today, ``Sat 02:00`` later (in ``tz``, else UTC)."""
    if at is None:
        return "unknown"
    zone_ = tz or ZoneInfo("UTC")
    local, today = at.astimezone(zone_), now.astimezone(zone_)
    text = f"{local:%H:%M}" if local.date() == today.date() else f"{local:%a %H:%M}"
    return f"{text} {zone_.key}"


_FAILED_UPDATES = re.compile(r"^(\d+) failed updates?$")


def refusal_text(reason: Reason, now: datetime, facts: GroupFacts) -> str:
    """The sentence for one refusal of :func:`may_grant`, with the numbers that caused it."""
    p, stats = facts.policy, facts.stats or RolloutStats()
    eff_max = 1 if p.safe_mode and stats.attempted == 0 else p.max_updates_per_period
    if reason is Reason.UPDATES_DISABLED:
        return f"paused by {facts.paused_by}" if facts.paused_by else "paused (updates disabled)"
    if reason is Reason.ROLLOUT_HALTED:
        raw = facts.halted_reason or "brake tripped"
        m = _FAILED_UPDATES.match(raw)
        if m:
            raw = f"{m.group(1)} failure" + ("" if m.group(1) == "1" else "s")
        elif raw == Reason.MAX_TIMED_OUT.value:
            raw = "updates timed out"
        return f"group halted: {raw}"
    if reason in (Reason.OUTSIDE_OFFICE_HOURS, Reason.OUTSIDE_MAINTENANCE_WINDOW):
        what = (
            "office hours"
            if reason is Reason.OUTSIDE_OFFICE_HOURS
            else "maintenance window " + ", ".join(format_window(w) for w in p.maintenance_windows)
        )
        if zone(p.timezone) is None:
            return f"{what}: unknown timezone {p.timezone!r}"
        return f"{what}, opens {_when(next_open(now, p), now, zone(p.timezone))}"
    if reason is Reason.NOT_IN_ROLLOUT_PERCENT:
        return f"outside rollout {p.rollout_percent:g}%"
    if reason is Reason.MAX_UPDATES_PER_PERIOD:
        if p.safe_mode and stats.attempted == 0:
            return "safe mode: waiting for the first update to finish"
        limit = f"{eff_max}/{format_duration(p.period_interval)}"
        return f"rate limit {limit}, next slot {_when(facts.next_slot, now)}"
    if reason is Reason.MAX_CONCURRENT:
        return f"{stats.in_progress} updates in progress (limit {eff_max})"
    if reason is Reason.MAX_TIMED_OUT:
        return f"safe mode: {stats.timed_out} updates timed out"
    return reason.value


def group_why(now: datetime, facts: GroupFacts) -> Why | None:
    """Why the group grants nothing right now (None: it grants), whatever the machine.

    The decision itself, with the percentage left out (that one depends on the machine).
    """
    whole = replace(facts, policy=replace(facts.policy, rollout_percent=100.0))
    if needs_stats(whole.policy) and whole.stats is None:
        whole = replace(whole, stats=RolloutStats())
    d = may_grant(now, "", whole.salt, whole.policy, whole.stats, whole.halted)
    return None if d.grant else Why(d.reason.value, refusal_text(d.reason, now, facts))


@functools.lru_cache(maxsize=1024)
def _target_of(current: str, channel: Channel, pinned: str | None) -> str | None:
    """:func:`choose_target`, remembered: a group's machines share a handful of versions."""
    return choose_target(current, channel, pinned)


@functools.lru_cache(maxsize=1024)
def _at_or_after(current: str, final: str) -> bool:
    return Version.parse(current) >= Version.parse(final)


def why(
    now: datetime,
    machine_id: str,
    state: InstanceState,
    facts: GroupFacts,
    has_package: bool = True,
) -> Why | None:
    """Why this machine is not on the group's target now; None when there is nothing to say.

    Follows the check-in's order: an open grant, the target (:func:`choose_target`), the package,
    then :func:`may_grant`, whose refusal is put into words by :func:`refusal_text`.
    """
    pending = state.last_update_version or "the update"
    if state.status is InstanceStatus.ERROR:
        code = state.last_error_code
        detail = f": {error_codes.describe(code)}" if code is not None else ""
        return Why(WaitKind.FAILED.value, f"update to {pending} failed{detail}")
    if state.status is InstanceStatus.INSTALLED:
        return Why(WaitKind.WAITING_REBOOT.value, f"installed {pending}, waiting for a reboot")
    if state.update_in_progress or state.status in IN_PROGRESS:
        granted = state.last_update_granted_at
        if granted is not None and granted <= now - facts.policy.update_timeout:
            return Why(
                WaitKind.TIMED_OUT.value,
                f"update to {pending} timed out (granted {_when(granted, now)})",
            )
        verb = {
            InstanceStatus.DOWNLOADING: "downloading",
            InstanceStatus.DOWNLOADED: "downloaded, installing",
        }.get(state.status, "granted")
        return Why(WaitKind.IN_PROGRESS.value, f"{verb} {pending}")
    final = facts.final_target
    channel = facts.channel or Channel("", "")
    try:
        target = _target_of(state.version, channel, facts.policy.pinned_version)
        ahead = final is not None and _at_or_after(state.version, final)
    except InvalidVersionError:
        return Why(WaitKind.NO_TARGET.value, f"reports an unreadable version {state.version!r}")
    if target is None:
        if final is None:
            text = "the group follows no channel" if facts.channel is None else "no version set"
            return Why(WaitKind.NO_TARGET.value, f"nothing to offer: {text}")
        if ahead:
            return None
        return Why(WaitKind.NO_TARGET.value, f"nothing to offer: {final} or a floor is blocked")
    if not has_package:
        return Why(WaitKind.NO_PACKAGE.value, f"no package of {target} for this architecture")
    stats = facts.stats or RolloutStats()
    d = may_grant(now, machine_id, facts.salt, facts.policy, stats, facts.halted)
    if d.grant:
        return Why(WaitKind.OFFERED.value, f"{target} is offered at its next check-in")
    return Why(d.reason.value, refusal_text(d.reason, now, facts))


def eta(remaining: int, per_hour: float, policy: Policy, stopped: bool = False) -> str:
    """How long the rest of the rollout takes at the observed rate, capped by the rate limit.

    ``stopped`` means paused or halted: nothing moves until someone acts.
    """
    if remaining <= 0:
        return "done"
    if stopped:
        return "stopped"
    cap = None
    if needs_stats(policy) and policy.period_interval.total_seconds() > 0:
        limit = 1 if policy.safe_mode else policy.max_updates_per_period
        cap = limit * 3600.0 / policy.period_interval.total_seconds()
    rate = min(per_hour, cap) if per_hour > 0 and cap is not None else (per_hour or cap)
    if not rate:
        return "unknown: no update granted in the last hour"
    minutes = max(1, round(remaining / rate * 60))
    return "~" + format_duration(timedelta(minutes=minutes)) + f" at {rate:g}/h"


# --- parsing of the human forms used in fleet files and the API --------------------------------

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_WINDOW = re.compile(
    r"^\s*([A-Za-z]{3})(?:\s*-\s*([A-Za-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$"
)


FLEET_DURATIONS = units.DurationGrammar(units=frozenset("dhms"), fractions=False)
"""Fleet files, the API and settings take whole numbers of days, hours, minutes and seconds
(``90s``, ``45m``, ``1h 30m``, ``7d``, a bare number of seconds): no ``ms``, no ``1.5h``."""


def parse_duration(text: str | int) -> timedelta:
    """``90s``, ``45m``, ``1h``, ``1h30m``, ``7d``; a bare number is seconds (see
    :data:`FLEET_DURATIONS`)."""
    return units.parse_duration(text, FLEET_DURATIONS)


def format_duration(td: timedelta) -> str:
    """The inverse of :func:`parse_duration`, for listing and for storing policies; whole
    seconds, so the text always reads back."""
    return units.format_duration(timedelta(seconds=max(0, int(td.total_seconds()))))


def parse_window(text: str) -> Window:
    """``"Sat 02:00-06:00"`` or ``"Mon-Fri 22:00-01:00"`` (crossing midnight)."""
    m = _WINDOW.match(text)
    if m is None:
        raise ValueError(
            f"not a window (use e.g. 'Sat 02:00-06:00', 'Mon-Fri 22:00-23:30'): {text!r}"
        )
    first, last = m.group(1).lower(), (m.group(2) or m.group(1)).lower()
    if first not in _DAYS or last not in _DAYS:
        raise ValueError(f"unknown day in window {text!r}")
    a, b = _DAYS[first], _DAYS[last]
    days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    h1, m1, h2, m2 = (int(m.group(i)) for i in (3, 4, 5, 6))
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"bad time in window {text!r}")
    end = time(0, 0) if h2 == 24 else time(h2, m2)
    return Window(days, time(h1, m1), end)


def format_window(w: Window) -> str:
    """The inverse of :func:`parse_window`, whose day ranges are always one contiguous run."""
    names = [k.capitalize() for k, v in sorted(_DAYS.items(), key=lambda kv: kv[1])]
    days = sorted(w.days)
    # The run may wrap around Sunday (Fri-Mon): start where the previous day is not included.
    start = next((d for d in days if (d - 1) % 7 not in w.days), days[0])
    if {(start + i) % 7 for i in range(len(days))} != set(days):
        raise ValueError("window days must be one contiguous run, like Mon-Fri")
    end = (start + len(days) - 1) % 7
    span = names[start] if start == end else f"{names[start]}-{names[end]}"
    return f"{span} {w.start:%H:%M}-{w.end:%H:%M}"
