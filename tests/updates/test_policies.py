"""Pure policy decisions: no database, no HTTP, many generated cases."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flotilla.updates.models import Channel, Policy, RolloutStats, Version, Window
from flotilla.updates.policies import (
    Reason,
    brake_trips,
    bucket,
    choose_target,
    format_duration,
    format_window,
    in_office_hours,
    in_rollout,
    in_window,
    may_grant,
    needs_stats,
    parse_duration,
    parse_window,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
machine_ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
versions = st.tuples(st.integers(0, 5000), st.integers(0, 20), st.integers(0, 20)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}"
)


# --- percentage rollouts -------------------------------------------------------------------------


@given(machine_ids, st.floats(0, 100), st.floats(0, 100))
def test_raising_the_percentage_only_adds_machines(m: str, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    if in_rollout("group", m, lo):
        assert in_rollout("group", m, hi)


@given(machine_ids)
def test_bucket_is_stable_and_in_range(m: str) -> None:
    assert bucket("g", m) == bucket("g", m)
    assert 0 <= bucket("g", m) < 100


def test_bucket_spreads_evenly() -> None:
    ids = [f"{i:032x}" for i in range(20_000)]
    share = sum(in_rollout("g", m, 10) for m in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert not in_rollout("g", ids[0], 0)
    assert all(in_rollout("g", m, 100) for m in ids[:100])


# --- targets: channel, floors, blocks, pins ------------------------------------------------------


def ch(version: str | None, floors: tuple[str, ...] = (), blocked: tuple[str, ...] = ()) -> Channel:
    return Channel("app", "stable", version, blocked, floors)


def test_choose_target_basics() -> None:
    assert choose_target("1.0.0", ch("2.0.0")) == "2.0.0"
    assert choose_target("2.0.0", ch("2.0.0")) is None
    assert choose_target("3.0.0", ch("2.0.0")) is None  # no downgrade
    assert choose_target("1.0.0", ch(None)) is None


def test_floors_one_step_at_a_time() -> None:
    c = ch("4.0.0", floors=("3.0.0", "2.0.0", "0.5.0"))
    assert choose_target("1.0.0", c) == "2.0.0"
    assert choose_target("2.0.0", c) == "3.0.0"
    assert choose_target("3.0.0", c) == "4.0.0"


def test_blocked_versions() -> None:
    assert choose_target("1.0.0", ch("2.0.0", blocked=("2.0.0",))) is None
    assert choose_target("1.0.0", ch("3.0.0", floors=("2.0.0",), blocked=("2.0.0",))) is None


def test_pinning() -> None:
    assert choose_target("1.0.0", ch("3.0.0"), pinned="2.0.0") == "2.0.0"
    assert choose_target("2.0.0", ch("3.0.0"), pinned="2.0.0") is None
    assert choose_target("1.0.0", ch(None), pinned="2.0.0") == "2.0.0"
    assert choose_target("2.5.0", ch("3.0.0"), pinned="2.0.0") is None


@given(versions, versions, st.lists(versions, max_size=4))
def test_target_is_always_newer_and_never_past_the_channel(
    cur: str, final: str, floors: list[str]
) -> None:
    t = choose_target(cur, ch(final, floors=tuple(floors)))
    if t is not None:
        assert Version.parse(cur) < Version.parse(t) <= Version.parse(final)


def test_semver_ordering() -> None:
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0"]
    parsed = [Version.parse(v) for v in order]
    assert parsed == sorted(parsed)
    for bad in ["1.0", "01.0.0", "1.0.0.0", "v1.0.0", "", "1.0.0-", "a.b.c"]:
        with pytest.raises(ValueError, match="semantic"):
            Version.parse(bad)


# --- may_grant -----------------------------------------------------------------------------------


def grant(policy: Policy, stats: RolloutStats | None = None, **kw: object) -> Reason:
    return may_grant(kw.pop("now", NOW), "m1", "g", policy, stats or RolloutStats(), **kw).reason  # type: ignore[arg-type]


def test_updates_disabled() -> None:
    assert grant(Policy(updates_enabled=False)) == Reason.UPDATES_DISABLED
    assert grant(Policy()) == Reason.GRANTED


def test_halted() -> None:
    assert grant(Policy(), halted=True) == Reason.ROLLOUT_HALTED


def test_office_hours() -> None:
    p = Policy(office_hours=True, timezone="Europe/Berlin")
    assert grant(p, now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC)) == Reason.GRANTED  # 11:00 Wed
    assert grant(p, now=datetime(2026, 11, 25, 16, 0, tzinfo=UTC)) == Reason.OUTSIDE_OFFICE_HOURS
    assert grant(p, now=datetime(2026, 11, 28, 10, 0, tzinfo=UTC)) == Reason.OUTSIDE_OFFICE_HOURS
    assert not in_office_hours(NOW, "Not/AZone")


def test_maintenance_windows() -> None:
    sat = parse_window("Sat 02:00-06:00")
    night = parse_window("Mon-Fri 22:00-01:00")
    p = Policy(maintenance_windows=(sat, night), timezone="UTC")
    assert grant(p) == Reason.OUTSIDE_MAINTENANCE_WINDOW  # Wed 12:00
    assert grant(p, now=datetime(2026, 11, 28, 3, 0, tzinfo=UTC)) == Reason.GRANTED  # Sat 03:00
    assert grant(p, now=datetime(2026, 11, 25, 23, 0, tzinfo=UTC)) == Reason.GRANTED  # Wed 23:00
    # Fri 22:00-01:00 reaches into Saturday morning; Sun 00:30 is not covered (Sat not listed).
    assert in_window(datetime(2026, 11, 28, 0, 30, tzinfo=UTC), night, "UTC")
    assert not in_window(datetime(2026, 11, 29, 0, 30, tzinfo=UTC), night, "UTC")
    # Windows are in the group's timezone.
    assert in_window(datetime(2026, 11, 28, 1, 30, tzinfo=UTC), sat, "Europe/Berlin")


def test_rollout_percent() -> None:
    assert grant(Policy(rollout_percent=0)) == Reason.NOT_IN_ROLLOUT_PERCENT
    assert grant(Policy(rollout_percent=100)) == Reason.GRANTED


def test_rate_limits() -> None:
    p = Policy(max_updates_per_period=2)
    assert needs_stats(p)
    assert not needs_stats(Policy())
    assert grant(p, RolloutStats(granted_in_period=1)) == Reason.GRANTED
    assert grant(p, RolloutStats(granted_in_period=2)) == Reason.MAX_UPDATES_PER_PERIOD
    assert grant(p, RolloutStats(in_progress=2)) == Reason.MAX_CONCURRENT
    # Timed-out grants do not block outside safe mode (Nebraska after d292bb26).
    assert grant(p, RolloutStats(timed_out=5)) == Reason.GRANTED


def test_safe_mode() -> None:
    p = Policy(safe_mode=True, max_updates_per_period=10)
    assert grant(p, RolloutStats()) == Reason.GRANTED
    # One at a time until the first attempt finished.
    assert (
        grant(p, RolloutStats(granted_in_period=1, in_progress=1)) == Reason.MAX_UPDATES_PER_PERIOD
    )
    assert grant(p, RolloutStats(granted_in_period=1, attempted=1)) == Reason.GRANTED
    d = may_grant(NOW, "m", "g", p, RolloutStats(timed_out=1))
    assert d.reason == Reason.MAX_TIMED_OUT and d.halt and not d.grant


def test_failure_brake() -> None:
    assert not brake_trips(Policy(), 100)
    assert not brake_trips(Policy(max_failures=2), 2)
    assert brake_trips(Policy(max_failures=2), 3)
    assert brake_trips(Policy(safe_mode=True), 1)
    assert not brake_trips(Policy(safe_mode=True, max_failures=1), 1)


@settings(max_examples=300)
@given(
    st.integers(0, 5),
    st.integers(0, 10),
    st.integers(0, 10),
    st.booleans(),
    st.integers(0, 3),
)
def test_limits_are_never_exceeded(
    limit: int, granted: int, in_progress: int, safe: bool, attempted: int
) -> None:
    p = Policy(max_updates_per_period=limit, safe_mode=safe)
    d = may_grant(NOW, "m", "g", p, RolloutStats(granted, in_progress, 0, attempted))
    if d.grant:
        eff = 1 if safe and attempted == 0 else limit
        assert granted < eff and in_progress < eff


def test_needs_stats_without_stats_is_an_error() -> None:
    with pytest.raises(ValueError, match="stats"):
        may_grant(NOW, "m", "g", Policy(max_updates_per_period=1), None)


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("45m", timedelta(minutes=45)),
        ("1h30m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("120", timedelta(seconds=120)),
        (60, timedelta(seconds=60)),
        ("1h 30 m", timedelta(minutes=90)),
        (" 1H30M ", timedelta(minutes=90)),
        ("0", timedelta()),
        ("2d1s", timedelta(days=2, seconds=1)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    "bad",
    # whole units only: the core parser's ms, fractions and floats stay refused here
    [
        "",
        "1x",
        "h",
        "1h 2",
        "-5m",
        "1h30",
        -5,
        "500ms",
        "1.5h",
        "1.5",
        1.5,
        90.0,
        True,
        "999999999d",
        "1w",
    ],
)
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration_drops_what_parse_duration_cannot_read() -> None:
    assert format_duration(timedelta(seconds=90.7)) == "1m30s"
    assert format_duration(timedelta(seconds=-5)) == "0s"


def test_windows_round_trip() -> None:
    for text in ["Sat 02:00-06:00", "Mon-Fri 22:00-01:00", "Fri-Mon 00:00-24:00"]:
        w = parse_window(text)
        assert parse_window(format_window(w)) == w
    assert parse_window("Fri-Mon 00:00-24:00").days == frozenset({4, 5, 6, 0})
    assert parse_window("Mon-Sun 01:00-02:00").days == frozenset(range(7))
    assert parse_window(format_window(parse_window("Mon-Sun 01:00-02:00"))).days == frozenset(
        range(7)
    )
    with pytest.raises(ValueError, match="contiguous"):
        format_window(Window(frozenset({0, 2}), time(1), time(2)))
    assert parse_window("Sat 02:00-06:00") == Window(frozenset({5}), time(2), time(6))
    for bad in ["Sat", "Sat 25:00-26:00", "Xyz 01:00-02:00", "Sat 1-2"]:
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)
