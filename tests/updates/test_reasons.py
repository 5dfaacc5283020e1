"""Why a machine waits: the sentences, and that they never disagree with the decision itself."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from typer.testing import CliRunner

from flotilla.updates import error_codes
from flotilla.updates.cli import app as cli
from flotilla.updates.models import Channel, InstanceState, InstanceStatus, Policy, RolloutStats
from flotilla.updates.policies import (
    GroupFacts,
    Reason,
    WaitKind,
    bucket,
    eta,
    group_why,
    may_grant,
    next_open,
    next_slot,
    parse_window,
    why,
)
from flotilla.updates.server import rollout_status
from flotilla.updates.server.api import create_app
from flotilla.updates.server.fleetspec import group_id
from flotilla.updates.server.settings import ServerSettings
from tests.updates.conftest import ADMIN, NEW, OLD, READER, apply_doc, fleet, ue_request
from tests.updates.test_dashboard import APP, login

NOW = datetime(2026, 3, 4, 12, 1, 30, tzinfo=UTC)  # a Wednesday
SATURDAY = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
CHANNEL = Channel("app", "stable", "3760.2.0")
BEHIND = InstanceState(version="3510.2.0")


def facts(policy: Policy | None = None, **kw: object) -> GroupFacts:
    return GroupFacts("g", policy or Policy(), CHANNEL, **kw)  # type: ignore[arg-type]


def machine_outside(percent: float) -> str:
    return next(m for m in (f"m{i}" for i in range(1000)) if bucket("g", m) >= percent)


def machine_inside(percent: float) -> str:
    return next(m for m in (f"m{i}" for i in range(1000)) if bucket("g", m) < percent)


def test_rate_limit_names_the_limit_and_the_next_slot() -> None:
    p = Policy(max_updates_per_period=4, period_interval=timedelta(minutes=1))
    grants = [NOW - timedelta(seconds=s) for s in (50, 40, 20, 5)]
    slot = next_slot(sorted(grants), 4, p.period_interval)
    assert slot == NOW - timedelta(seconds=50) + timedelta(minutes=1)
    f = facts(p, stats=RolloutStats(granted_in_period=4), next_slot=slot)
    w = why(NOW, "m1", BEHIND, f)
    assert w is not None
    assert w.kind == Reason.MAX_UPDATES_PER_PERIOD.value
    assert w.text == "rate limit 4/1m, next slot 12:01 UTC"


def test_next_slot_is_the_grant_that_must_leave_the_period() -> None:
    period = timedelta(hours=1)
    times = [NOW - timedelta(minutes=m) for m in (50, 30, 10)]
    assert next_slot(times, 3, period) == times[0] + period
    assert next_slot(times, 2, period) == times[1] + period  # two must leave, the 2nd is later
    assert next_slot(times, 4, period) is None  # room left


def test_outside_the_rollout_percent() -> None:
    f = facts(Policy(rollout_percent=50))
    w = why(NOW, machine_outside(50), BEHIND, f)
    assert w is not None and w.text == "outside rollout 50%"
    inside = why(NOW, machine_inside(50), BEHIND, f)
    assert inside is not None and inside.kind == WaitKind.OFFERED.value


def test_office_hours_say_when_they_open() -> None:
    f = facts(Policy(office_hours=True, timezone="Europe/Berlin"))
    w = why(SATURDAY, "m1", BEHIND, f)
    assert w is not None and w.kind == Reason.OUTSIDE_OFFICE_HOURS.value
    assert w.text == "office hours, opens Mon 09:00 Europe/Berlin"
    assert next_open(SATURDAY, f.policy) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_maintenance_window_says_when_it_opens() -> None:
    p = Policy(maintenance_windows=(parse_window("Sat 02:00-06:00"),))
    w = why(NOW, "m1", BEHIND, facts(p))
    assert w is not None
    assert w.text == "maintenance window Sat 02:00-06:00, opens Sat 02:00 UTC"


def test_halted_and_paused() -> None:
    halted = facts(halted_version="3760.2.0", halted_reason="2 failed updates")
    w = why(NOW, "m1", BEHIND, halted)
    assert w is not None and w.text == "group halted: 2 failures"
    # A brake on an older target does not hold the current one.
    assert why(NOW, "m1", BEHIND, facts(halted_version="3602.2.0")).kind == WaitKind.OFFERED  # type: ignore[union-attr]
    paused = facts(Policy(updates_enabled=False), paused_by="alice")
    assert why(NOW, "m1", BEHIND, paused).text == "paused by alice"  # type: ignore[union-attr]
    assert group_why(NOW, paused).text == "paused by alice"  # type: ignore[union-attr]
    nobody = facts(Policy(updates_enabled=False))
    assert why(NOW, "m1", BEHIND, nobody).text == "paused (updates disabled)"  # type: ignore[union-attr]


def test_failures_in_progress_and_up_to_date() -> None:
    failed = InstanceState(
        "3510.2.0", InstanceStatus.ERROR, last_update_version="3760.2.0", last_error_code=10
    )
    assert why(NOW, "m", failed, facts()).text == (  # type: ignore[union-attr]
        "update to 3760.2.0 failed: payload hash mismatch (10)"
    )
    granted = InstanceState(
        "3510.2.0", InstanceStatus.DOWNLOADING, "3760.2.0", NOW - timedelta(minutes=5), True
    )
    assert why(NOW, "m", granted, facts()).text == "downloading 3760.2.0"  # type: ignore[union-attr]
    stuck = InstanceState(
        "3510.2.0", InstanceStatus.UPDATE_GRANTED, "3760.2.0", NOW - timedelta(hours=2), True
    )
    assert why(NOW, "m", stuck, facts()).kind == WaitKind.TIMED_OUT  # type: ignore[union-attr]
    assert why(NOW, "m", InstanceState("3760.2.0", InstanceStatus.COMPLETE), facts()) is None
    assert why(NOW, "m", BEHIND, facts(), has_package=False).kind == WaitKind.NO_PACKAGE  # type: ignore[union-attr]
    blocked = GroupFacts("g", Policy(), Channel("app", "stable", "3760.2.0", ("3760.2.0",)))
    assert "blocked" in why(NOW, "m", BEHIND, blocked).text  # type: ignore[union-attr]


def test_error_codes_read_as_text() -> None:
    assert error_codes.describe(44) == "rolled back to the previous version after the reboot (44)"
    assert error_codes.describe(2404) == "HTTP 404 from the update server (2404)"
    # Nebraska issue #371's code: test-Omaha-URL flag on "invalid update server response".
    assert error_codes.describe(268435490) == (
        "invalid update server response (34) [test Omaha URL]"
    )
    assert error_codes.describe(999) == "unknown error (999)"


def test_eta() -> None:
    hourly = Policy(max_updates_per_period=10, period_interval=timedelta(hours=1))
    assert eta(0, 5.0, hourly) == "done"
    assert eta(20, 0.0, hourly) == "~2h at 10/h"  # nothing observed yet: the limit's pace
    assert eta(20, 40.0, hourly) == "~2h at 10/h"  # never faster than the limit
    assert eta(20, 5.0, hourly) == "~4h at 5/h"
    assert eta(20, 0.0, Policy()).startswith("unknown")
    assert eta(20, 5.0, hourly, stopped=True) == "stopped"


@settings(max_examples=300, deadline=None)
@given(
    enabled=st.booleans(),
    office=st.booleans(),
    percent=st.sampled_from([0.0, 10.0, 50.0, 100.0]),
    limit=st.integers(1, 5),
    granted=st.integers(0, 6),
    in_progress=st.integers(0, 6),
    safe=st.booleans(),
    attempted=st.integers(0, 2),
    halted=st.booleans(),
    hours=st.integers(0, 24 * 7),
    machine=st.text("0123456789abcdef", min_size=1, max_size=8),
)
def test_the_reason_is_the_decision(
    enabled: bool,
    office: bool,
    percent: float,
    limit: int,
    granted: int,
    in_progress: int,
    safe: bool,
    attempted: int,
    halted: bool,
    hours: int,
    machine: str,
) -> None:
    """Whatever the inputs, "offered" exactly when the check-in would grant, else its refusal."""
    now = NOW + timedelta(hours=hours)
    p = Policy(
        updates_enabled=enabled, office_hours=office, rollout_percent=percent,
        max_updates_per_period=limit, safe_mode=safe,
    )  # fmt: skip
    stats = RolloutStats(granted, in_progress, 0, attempted)
    f = facts(p, stats=stats, halted_version="3760.2.0" if halted else None)
    d = may_grant(now, machine, "g", p, stats, halted)
    w = why(now, machine, BEHIND, f)
    assert w is not None
    assert w.kind == (WaitKind.OFFERED.value if d.grant else d.reason.value)
    assert w.text  # always a sentence


# --- through the server: API, CLI, dashboard pages ------------------------------------------------

SCENARIO_GROUPS = (
    {
        "name": "production", "track": "production", "channel": "stable",
        "policy": {"max_updates_per_period": 4, "period_interval": "1m"},
    },
    {"name": "half", "track": "half", "channel": "stable", "policy": {"rollout_percent": 50}},
    {"name": "frozen", "track": "frozen", "channel": "stable",
     "policy": {"updates_enabled": False}},
    {"name": "canary", "track": "canary", "channel": "stable", "policy": {"max_failures": 1}},
)  # fmt: skip
"""Four groups that each hold machines back for a different reason."""


def machine(group: str, i: int) -> str:
    return f"{group[:4].encode().hex()}{i:024x}"


def run_scenario(post: Callable[[bytes], Any]) -> None:
    """Six machines per group check in; the first two canaries fail (code 10), which halts the
    canary group before the other four ask."""
    for g in ("production", "half", "frozen"):
        for i in range(6):
            post(ue_request(machine(g, i), track=g))
    for i in (0, 1):
        post(ue_request(machine("canary", i), track="canary"))
        post(ue_request(machine("canary", i), track="canary", check=False, event=(3, 0),
                        errorcode=10))  # fmt: skip
    for i in range(2, 6):
        post(ue_request(machine("canary", i), track="canary"))


@pytest.fixture
def scenario(sqlite_url: str) -> Iterator[TestClient]:
    apply_doc(sqlite_url, fleet(*SCENARIO_GROUPS))
    settings_ = ServerSettings(
        db_url=sqlite_url, admin_tokens=(ADMIN,), read_tokens=(READER,), sample_interval=0,
        config_ttl=0,
        new_machine_grants=0,  # 24 new machines from one test client: not an attack here
    )  # fmt: skip
    with TestClient(create_app(settings_)) as c:

        def post(body: bytes) -> None:
            r = c.post("/v1/update/", content=body, headers={"Content-Type": "text/xml"})
            assert r.status_code == 200, r.text

        # The half group has no machine outside 50% among the first six? Make sure it has.
        assert any(bucket(group_id(APP, "half"), machine("half", i)) >= 50 for i in range(6))
        run_scenario(post)
        yield c


def reasons_by_group(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["group"], set()).add(r["reason"] or "")
    return out


def test_api_and_cli_say_why(scenario: TestClient, sqlite_url: str) -> None:
    auth = {"Authorization": f"Bearer {READER}"}
    rows = scenario.get(f"/api/v1/apps/{APP}/instances?limit=1000", headers=auth).json()
    seen = reasons_by_group(rows)
    assert {r for r in seen["production"] if r.startswith("rate limit 4/1m, next slot ")}
    assert "granted 3760.2.0" in seen["production"]
    assert "outside rollout 50%" in seen["half"]
    assert seen["frozen"] == {"paused (updates disabled)"}
    assert "group halted: 2 failures" in seen["canary"]
    assert "update to 3760.2.0 failed: payload hash mismatch (10)" in seen["canary"]
    failed = next(r for r in rows if r["machine_id"] == machine("canary", 0))
    assert failed["error"] == "payload hash mismatch (10)" and failed["reason_kind"] == "failed"
    one = scenario.get(f"/api/v1/apps/{APP}/instances/{machine('frozen', 0)}", headers=auth)
    assert one.json()["reason"] == "paused (updates disabled)"

    r = CliRunner().invoke(cli, ["instances", "--db", sqlite_url, "-o", "json"])
    assert r.exit_code == 0, r.output
    assert reasons_by_group(json.loads(r.output)) == seen
    r = CliRunner().invoke(cli, ["instances", "--db", sqlite_url, "--group", "half"])
    assert "outside rollout 50%" in r.output and "REASON" in r.output


def test_dashboard_pages_say_why(scenario: TestClient) -> None:
    csrf = login(scenario, ADMIN)
    canary = f"/ui/apps/{APP}/groups/{group_id(APP, 'canary')}"
    page = scenario.get(canary).text
    assert "The rollout of 3760.2.0 is halted: 2 failures." in page
    assert 'href="#resume"' in page  # the banner points at the button
    breakdown = re.search(r'<table class="grid compact" id="reason-breakdown">(.*?)</table>', page,
                          re.S)  # fmt: skip
    assert breakdown is not None
    rows = dict(re.findall(r'data-kind="([^"]+)"><td>[^<]*</td><td class="num"><a[^>]*>(\d+)<',
                           breakdown.group(1)))  # fmt: skip
    assert rows == {"rolloutHalted": "4", "failed": "2"}
    listing = scenario.get(canary + "/instances").text
    assert "group halted: 2 failures" in listing and "payload hash mismatch (10)" in listing
    inst = scenario.get(f"/ui/apps/{APP}/instances/{machine('canary', 1)}").text
    assert "payload hash mismatch (10)" in inst
    # The feed's RolloutFailed entry points at the button, not at the API.
    feed = scenario.get("/ui/activity").text
    assert "press Resume updates on the group page" in feed
    assert machine("canary", 0) in feed  # full machine ids, not 12 characters

    # Pausing in the dashboard says who paused (the token's name here) and when.
    frozen_half = f"/ui/apps/{APP}/groups/{group_id(APP, 'half')}"
    scenario.post(frozen_half + "/pause", data={"csrf": csrf})
    assert "paused by admin token at " in scenario.get(frozen_half).text

    app_page = scenario.get(f"/ui/apps/{APP}").text
    glance = re.search(r'<table class="grid" id="glance">(.*?)</table>', app_page, re.S)
    assert glance is not None
    prod = re.search(r'data-group="' + group_id(APP, "production") + r'">(.*?)</tr>',
                     glance.group(1), re.S)  # fmt: skip
    assert prod is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", prod.group(1), re.S)
    assert cells[1] == "3760.2.0"
    assert cells[2].startswith("0.0% <small>(0/6)")
    # Four grants in a rollout minutes old: measured over ten minutes, six machines to go.
    assert cells[3] == "24.0/h"
    assert cells[4] == "~15m at 24/h"
    assert cells[5].startswith("rate limit 4/1m, next slot ")


def test_versions_over_time_walks_back_from_now(scenario: TestClient) -> None:
    engine = scenario.app.state.services.engine  # type: ignore[attr-defined]
    before = datetime.now(UTC)
    time.sleep(0.05)
    # Two production machines finish their update (the first check after the reboot).
    for i in (0, 1):
        m = machine("production", i)
        for ev in ((13, 1), (14, 1), (3, 1)):
            scenario.post("/v1/update/", content=ue_request(m, track="production", check=False,
                          event=ev), headers={"Content-Type": "text/xml"})  # fmt: skip
        scenario.post("/v1/update/", content=ue_request(m, NEW, track="production", event=(3, 2),
                      previous=OLD), headers={"Content-Type": "text/xml"})  # fmt: skip
    gid = group_id(APP, "production")
    with engine.connect() as conn:
        from flotilla.updates.server.dashboard.queries import group_numbers

        now = datetime.now(UTC)
        current = group_numbers(conn, gid)["versions"]
        assert dict(current) == {OLD: 4, NEW: 2}
        series = rollout_status.versions_over_time(conn, gid, APP, current, [before, now])
    assert series == {OLD: [6, 4], NEW: [0, 2]}
