"""``fn pipeline --run``: apply the Pipeline, start a PipelineRun, follow it to the end."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Secret

from flotilla.core.kube import create_raw, get_raw, list_raw

from .deploy import apply_objects

LOG_TAIL_LINES = 20
PipelineRun = create_namespaced_resource("tekton.dev", "v1", "PipelineRun", "pipelineruns")


@dataclass(frozen=True)
class RunOutcome:
    """How a PipelineRun ended: Tekton's reason and message, and each task's."""

    name: str
    succeeded: bool | None  # None: still running when the wait ended
    reason: str
    message: str
    tasks: dict[str, str]  # pipeline task name -> its TaskRun's reason
    failures: tuple[str, ...] = ()  # "task: message" of each failed TaskRun


def start_run(client: Client, objects: list[dict[str, Any]], run: dict[str, Any]) -> str:
    """Apply the Tasks, Pipeline and deployer RBAC, then create the run; returns its name."""
    apply_objects(client, objects)
    created = create_raw(client, PipelineRun, run)
    return str(created["metadata"]["name"])


def ensure_webhook_secret(client: Client, name: str, namespace: str, key: str) -> bool:
    """Create the Secret that signs pushes, with a random value, unless it exists; True when
    made. The value never leaves the cluster through us (read it with kubectl)."""
    existing = get_raw(client, "v1", "Secret", name, namespace=namespace)
    if existing is not None:
        return False
    value = secrets.token_urlsafe(32)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {key: value},
    }
    create_raw(client, Secret, body)
    return True


def _condition(obj: dict[str, Any] | None) -> dict[str, Any]:
    for condition in (obj or {}).get("status", {}).get("conditions", []):
        if condition.get("type") == "Succeeded":
            return dict(condition)
    return {}


def run_outcome(client: Client, name: str, namespace: str) -> RunOutcome:
    run = get_raw(client, "tekton.dev/v1", "PipelineRun", name, namespace=namespace,
                  plural="pipelineruns", namespaced=True)  # fmt: skip
    condition = _condition(run)
    status = condition.get("status", "Unknown")
    task_runs = list_raw(
        client, "tekton.dev/v1", "TaskRun", namespace=namespace, plural="taskruns",
        namespaced=True, labels={"tekton.dev/pipelineRun": name},
    )  # fmt: skip
    tasks = {
        tr["metadata"].get("labels", {}).get("tekton.dev/pipelineTask", tr["metadata"]["name"]): (
            _condition(tr).get("reason", "Pending")
        )
        for tr in task_runs
    }
    failures = tuple(
        f"{tr['metadata'].get('labels', {}).get('tekton.dev/pipelineTask', '?')}: "
        f"{_condition(tr).get('message', '')}{_failed_step_log(client, tr, namespace)}"
        for tr in task_runs
        if _condition(tr).get("status") == "False"
    )
    return RunOutcome(
        failures=failures,
        name=name,
        succeeded=None if status == "Unknown" else status == "True",
        reason=str(condition.get("reason", "Pending")),
        message=str(condition.get("message", "")),
        tasks=tasks,
    )


def _failed_step_log(client: Client, task_run: dict[str, Any], namespace: str) -> str:
    """The last lines a failed step printed: what a user needs to see first."""
    status = task_run.get("status", {})
    pod = status.get("podName")
    for step in status.get("steps", []):
        if pod and step.get("terminated", {}).get("exitCode", 0) != 0:
            try:
                lines = list(client.log(pod, namespace=namespace, container=step["container"],
                                        tail_lines=LOG_TAIL_LINES))  # fmt: skip
            except (ApiError, httpx.HTTPError):
                return ""
            return "\n  " + "  ".join(lines).rstrip() if lines else ""
    return ""


def wait_for_run(
    client: Client,
    name: str,
    namespace: str,
    *,
    timeout: float,
    on_change: Callable[[RunOutcome], None] = lambda outcome: None,
    interval: float = 2.0,
) -> RunOutcome:
    """Poll until the run ends or ``timeout`` passes; ``on_change`` sees each new state."""
    deadline = time.monotonic() + timeout
    seen: RunOutcome | None = None
    while True:
        outcome = run_outcome(client, name, namespace)
        if outcome != seen:
            on_change(outcome)
            seen = outcome
        if outcome.succeeded is not None or time.monotonic() >= deadline:
            return outcome
        time.sleep(interval)
