"""Live update falls back to a full update when the sync fails, not when a run step fails."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.core.kube import KubeError
from flotilla.dev.plan.decide import Action, ActionKind, Copy
from flotilla.dev.plan.model import Resource, ResourceKind, Run
from flotilla.dev.runtime import k8supdate
from flotilla.dev.runtime.kubedeploy import (
    SYNC_FAILED_EXIT,
    Container,
    LiveUpdateSyncError,
    live_update_script,
)
from flotilla.dev.runtime.state import ResourceState


def test_the_script_marks_sync_failures_apart_from_run_steps() -> None:
    action = Action(ActionKind.LIVE_UPDATE, "x", deletes=["/app/old"], runs=[Run("make")])
    script = live_update_script(action, True).splitlines()
    assert script[1] == f"tar -xf - -C / || exit {SYNC_FAILED_EXIT}"
    assert script[2] == f"rm -rf -- /app/old || exit {SYNC_FAILED_EXIT}"
    assert script[3] == "( make )"


class FakeKube:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def containers(self, applied: list[Any], ref: str) -> list[Container]:
        return [Container("pod-1", "ns", "main", "app")]

    def live_update(self, c: Container, action: Action, copies: list[Any]) -> str:
        raise self.error


class FakeSession:
    def __init__(self, error: Exception) -> None:
        self.kube = FakeKube(error)
        self.lines: list[str] = []

    def log_to(self, st: ResourceState, line: str) -> None:
        self.lines.append(line)


def run(monkeypatch: pytest.MonkeyPatch, error: Exception) -> tuple[list[str], FakeSession]:
    full: list[str] = []
    monkeypatch.setattr(k8supdate, "full_update", lambda s, st: full.append(st.resource.name))
    session = FakeSession(error)
    st = ResourceState(Resource("web", ResourceKind.K8S, images=["app"]))
    action = Action(
        ActionKind.LIVE_UPDATE, "x", images=["app"], copies=[Copy("/src/a.py", "/app/a.py")]
    )
    k8supdate.live_update(session, st, action)  # type: ignore[arg-type]
    return full, session


def test_an_unreachable_container_or_failed_sync_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    full, session = run(monkeypatch, LiveUpdateSyncError("cannot reach pod-1/main: reset"))
    assert full == ["web"]
    assert session.lines[-1] == "cannot reach pod-1/main: reset: full update instead"


def test_a_failing_run_step_does_not_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KubeError, match="exit 2"):
        run(monkeypatch, KubeError("live update in pod-1/main failed (exit 2): boom"))


def test_pod_summary_shows_crash_loops_and_restarts() -> None:
    from flotilla.dev.runtime.kubedeploy import pod_summary

    pod = {
        "metadata": {"name": "web-1"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
                {"name": "side", "ready": True, "restartCount": 1, "state": {"running": {}}},
            ],
        },
    }
    assert pod_summary(pod) == {
        "name": "web-1",
        "phase": "Running",
        "ready": False,
        "restarts": 5,
        "reason": "CrashLoopBackOff",
    }
    ok = {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
        {"ready": True, "restartCount": 0, "state": {"running": {}}}]}}  # fmt: skip
    assert pod_summary(ok)["ready"] is True and pod_summary(ok)["reason"] == ""
