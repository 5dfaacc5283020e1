"""Why a function's pods are not ready, in the words of their container states. Pure."""

from __future__ import annotations

from typing import Any


def pod_problems(pods: list[dict[str, Any]]) -> list[str]:
    """Why pods are not ready, from container states (image pulls, crashes). Pure."""
    out = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        for cs in pod.get("status", {}).get("containerStatuses", []) or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
                out.append(
                    f"{name}: {waiting.get('reason')}: {waiting.get('message', '')}".rstrip(": ")
                )
        for cond in pod.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                out.append(f"{name}: unschedulable: {cond.get('message', '')}")
    return out
