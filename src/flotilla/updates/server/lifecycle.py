"""The instance status machine: how update_engine's events move an instance along.

Pure functions. They tolerate duplicated and out-of-order events, because update_engine sends the
post-reboot 3/2 together with the next updatecheck and retries on network errors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from flotilla.updates.models import (
    IN_PROGRESS,
    Activity,
    ActivityKind,
    Event,
    InstanceState,
    InstanceStatus,
    Severity,
)

EVENT_UPDATE_COMPLETE = 3
EVENT_DOWNLOAD_STARTED = 13
EVENT_DOWNLOAD_FINISHED = 14
EVENT_INSTALLED = 800  # CoreRoller/Nebraska convention for custom updaters; never update_engine

RESULT_ERROR = 0
RESULT_SUCCESS = 1
RESULT_SUCCESS_REBOOT = 2
RESULT_DEFERRED = 9

ERROR_ROLLBACK = 44

_NO_PREVIOUS = {"", "0.0.0.0", "0.0.0"}


@dataclass(frozen=True)
class Outcome:
    """What processing one event did: the new state and what to record about it."""

    state: InstanceState
    changed: bool
    activity: Activity | None = None
    failed: bool = False
    """The instance failed an update (counts towards the failure brake)."""
    completed: bool = False
    """The instance finished an update (may finish the rollout)."""


def _to(state: InstanceState, status: InstanceStatus, **kw: object) -> InstanceState:
    in_progress = status in IN_PROGRESS
    return replace(state, status=status, update_in_progress=in_progress, **kw)  # type: ignore[arg-type]


def apply_event(state: InstanceState, event: Event, reported_version: str) -> Outcome:
    """Apply one event to an instance that now reports ``reported_version``.

    Unknown event types are recorded by the caller but change nothing here.
    """
    t, r = event.type, event.result
    if r == RESULT_ERROR:
        new = _to(state, InstanceStatus.ERROR, last_error_code=event.error_code)
        code = event.error_code if event.error_code is not None else "unknown"
        what = "rolled back" if event.error_code == ERROR_ROLLBACK else "failed"
        target = state.last_update_version
        act = Activity(
            ActivityKind.INSTANCE_UPDATE_FAILED,
            Severity.ERROR,
            f"update to {target or '?'} {what} (event {t}, error code {code})",
            target,
        )
        return Outcome(new, new != state, act, failed=state.status != InstanceStatus.ERROR)
    if r == RESULT_DEFERRED:
        return Outcome(state, False)  # update_engine backs off on its own; the grant stands
    if t == EVENT_DOWNLOAD_STARTED and r == RESULT_SUCCESS:
        new = _to(state, InstanceStatus.DOWNLOADING)
        return Outcome(new, new != state)
    if t == EVENT_DOWNLOAD_FINISHED and r == RESULT_SUCCESS:
        new = _to(state, InstanceStatus.DOWNLOADED)
        return Outcome(new, new != state)
    if (t == EVENT_UPDATE_COMPLETE and r == RESULT_SUCCESS) or (
        t == EVENT_INSTALLED and r == RESULT_SUCCESS
    ):
        # Applied to the other partition; waiting for the reboot.
        if state.status == InstanceStatus.COMPLETE:
            return Outcome(state, False)
        new = _to(state, InstanceStatus.INSTALLED)
        return Outcome(new, new != state)
    if t == EVENT_UPDATE_COMPLETE and r == RESULT_SUCCESS_REBOOT:
        prev = (event.previous_version or "").strip()
        if prev in _NO_PREVIOUS:
            # update_engine sends this with every check ("" once reported, 0.0.0.0 when it never
            # updated). Like Nebraska, it resets only an update in progress (PR #309); an Error
            # or a finished update stays as it is.
            if state.status == InstanceStatus.COMPLETE or not state.update_in_progress:
                return Outcome(state, False)
            new = _to(state, InstanceStatus.UNDEFINED)
            return Outcome(new, new != state)
        if state.last_update_version and reported_version != state.last_update_version:
            # Came back on another version than the one granted: not a completion of our grant.
            if prev == reported_version:
                new = _to(state, InstanceStatus.ERROR, last_error_code=ERROR_ROLLBACK)
                act = Activity(
                    ActivityKind.INSTANCE_UPDATE_FAILED,
                    Severity.ERROR,
                    f"came back on {reported_version} instead of {state.last_update_version}",
                    state.last_update_version,
                )
                return Outcome(new, True, act, failed=state.status != InstanceStatus.ERROR)
            new = _to(state, InstanceStatus.UNDEFINED)
            return Outcome(new, new != state)
        if state.status == InstanceStatus.COMPLETE:
            return Outcome(state, False)
        new = _to(state, InstanceStatus.COMPLETE, version=reported_version)
        return Outcome(new, True, completed=True)
    return Outcome(state, False)


def grant(state: InstanceState, target: str, now: datetime) -> InstanceState:
    """The state after an update to ``target`` is granted."""
    return _to(
        state,
        InstanceStatus.UPDATE_GRANTED,
        last_update_version=target,
        last_update_granted_at=now,
    )


def hold(state: InstanceState) -> InstanceState:
    """The state after a rate limit refused an update (visible as OnHold in listings)."""
    if state.status in IN_PROGRESS:
        return state
    return _to(state, InstanceStatus.ON_HOLD)


def regrant_target(state: InstanceState, reported_version: str) -> str | None:
    """The version to serve again without a new policy check, if a grant is still open.

    update_engine asks again after a failed or interrupted download; an open grant for a version
    newer than what runs is honoured rather than counted twice against the limits.
    """
    if (
        state.update_in_progress
        and state.last_update_version
        and state.last_update_version != reported_version
        and state.status in (InstanceStatus.UPDATE_GRANTED, InstanceStatus.DOWNLOADING)
    ):
        return state.last_update_version
    return None
