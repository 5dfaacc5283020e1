"""Rollout policy: "which version should this instance move to, and may it get it now?"

Plain functions over the dataclasses in :mod:`flotilla.updates.models`; the store calls them while
it holds the group's lock, and the tests call them directly with many generated inputs.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flotilla.core import units
from flotilla.updates.models import Channel, Policy, RolloutStats, Version, Window

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
