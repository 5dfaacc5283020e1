"""The Kubernetes adapter of ``fn deploy`` and ``fn invoke``: apply, wait, call. Thin on purpose.

Everything goes through :mod:`flotilla.core.kube`; what to apply is decided in ``manifests``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lightkube import Client

from flotilla.core.kube import apply_raw, get_raw, list_raw, service_proxy, wait_until

__all__ = [
    "DeployResult",
    "apply_objects",
    "deployment_ready",
    "invoke_service",
    "pod_problems",
    "wait_ready",
]

KNATIVE = {"plural": "services", "namespaced": True}
TEKTON_PLURALS = {"Task": "tasks", "Pipeline": "pipelines"}


@dataclass(frozen=True)
class DeployResult:
    applied: list[str]
    ready_seconds: float | None = None


def _custom(obj: dict[str, Any]) -> dict[str, Any]:
    api = str(obj["apiVersion"])
    if api.startswith("serving.knative.dev/"):
        return KNATIVE
    if api.startswith("tekton.dev/"):
        return {"plural": TEKTON_PLURALS[str(obj["kind"])], "namespaced": True}
    return {}


def apply_objects(client: Client, objects: list[dict[str, Any]]) -> list[str]:
    """Server-side apply each object (flotilla owns these fields); returns ``Kind/name`` list."""
    done = []
    for obj in objects:
        apply_raw(client, obj, field_manager="flotilla-fn", **_custom(obj))
        done.append(f"{obj['kind']}/{obj['metadata']['name']}")
    return done


def deployment_ready(deployment: dict[str, Any] | None) -> bool:
    """All replicas of the newest generation are updated and available. Pure."""
    if not deployment:
        return False
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    want = int(spec.get("replicas", 1))
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    return (
        int(status.get("observedGeneration", 0)) >= generation
        and int(status.get("updatedReplicas", 0)) >= want
        and int(status.get("availableReplicas", 0)) >= want
        and int(status.get("replicas", 0)) <= want
    )


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


def wait_ready(client: Client, namespace: str, name: str, *, timeout: float = 120.0) -> float:
    """Wait for the Deployment to be available; seconds taken. Names pod problems on timeout."""
    started = time.monotonic()

    def check() -> bool | None:
        dep = get_raw(client, "apps/v1", "Deployment", name, namespace=namespace)
        return True if deployment_ready(dep) else None

    try:
        wait_until(check, timeout=timeout, interval=0.5, what=f"deployment {namespace}/{name}")
    except TimeoutError as exc:
        pods = list_raw(
            client, "v1", "Pod", namespace=namespace, labels={"flotilla.dev/function": name}
        )
        problems = pod_problems(pods)
        raise TimeoutError(f"{exc}" + (": " + "; ".join(problems) if problems else "")) from None
    return time.monotonic() - started


def invoke_service(
    client: Client,
    namespace: str,
    name: str,
    path: str = "/",
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """Call the function's Service through the API server (no Ingress or kube-proxy needed)."""
    return service_proxy(
        client, namespace, name, path, method=method, content=body, headers=headers, timeout=timeout
    )
