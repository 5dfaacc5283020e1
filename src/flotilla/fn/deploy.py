"""The Kubernetes adapter of ``fn deploy`` and ``fn invoke``: apply, wait, call. Thin on purpose.

Everything goes through :mod:`flotilla.core.kube`; what to apply is decided in ``manifests``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lightkube import Client

from flotilla.core.kube import (
    KubeError,
    apply_raw,
    delete_raw,
    get_raw,
    list_raw,
    service_proxy,
    wait_until,
)

from .knative import get_ksvc, route_of
from .pod_status import pod_problems

__all__ = [
    "DeployResult",
    "FunctionRow",
    "apply_objects",
    "delete_function",
    "deployment_ready",
    "function_logs",
    "invoke_service",
    "list_functions",
    "pod_problems",
    "wait_ready",
    "wait_revision_serving",
]

KNATIVE = {"plural": "services", "namespaced": True}
TEKTON_PLURALS = {
    "Task": "tasks",
    "Pipeline": "pipelines",
    "TriggerBinding": "triggerbindings",
    "TriggerTemplate": "triggertemplates",
    "EventListener": "eventlisteners",
}


@dataclass(frozen=True)
class DeployResult:
    applied: list[str]
    ready_seconds: float | None = None


def _custom(obj: dict[str, Any]) -> dict[str, Any]:
    api = str(obj["apiVersion"])
    if api.startswith("serving.knative.dev/"):
        return KNATIVE
    if api.startswith(("tekton.dev/", "triggers.tekton.dev/")):
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
    """Call the function's Service through the API server (no Ingress or kube-proxy needed); a
    Knative Service through its ingress, with its host in ``Host`` (see ``knative``)."""
    service = get_raw(client, "v1", "Service", name, namespace=namespace)
    if (service or {}).get("spec", {}).get("type") == "ExternalName":
        route = route_of(service, get_ksvc(client, namespace, name))
        if route is not None:
            return service_proxy(
                client, route.namespace, route.service, path, port="80", method=method,
                content=body, headers={**(headers or {}), "Host": route.host}, timeout=timeout,
            )  # fmt: skip
    return service_proxy(
        client, namespace, name, path, method=method, content=body, headers=headers, timeout=timeout
    )


def wait_revision_serving(
    client: Client, namespace: str, name: str, revision: str, *, timeout: float
) -> None:
    """Wait until the ingress answers from ``revision``: three answers in a row from its pods.

    Why: a KIngress implementation may report Ready before its proxy has the new route (Traefik
    does: in CI a request right after the second deploy's Ready reached the first Revision).
    Every runtime labels its metrics with ``faas_instance``, the pod's name, and a Knative pod is
    named ``<revision>-deployment-...``, so ``/metrics`` through the ingress tells who answered.
    """
    marker = f'faas_instance="{revision}-deployment-'
    streak = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, body = invoke_service(client, namespace, name, "/metrics", timeout=10)
            streak = streak + 1 if status == 200 and marker in body.decode(errors="replace") else 0
        except KubeError:
            streak = 0
        if streak >= 3:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Knative Service {namespace}/{name} is Ready, but its ingress did not answer "
                f"from revision {revision} within {timeout:.0f}s"
            )
        time.sleep(0.2)


# --- delete / list / logs -----------------------------------------------------------------------

_FUNCTION_LABELS = {
    "app.kubernetes.io/component": "function",
    "app.kubernetes.io/managed-by": "flotilla",
}
_KSVC = "serving.knative.dev/v1"


@dataclass(frozen=True)
class FunctionRow:
    name: str
    namespace: str
    target: str
    ready: bool
    image: str


def _owned(obj: dict[str, Any] | None, name: str) -> bool:
    labels = (obj or {}).get("metadata", {}).get("labels", {})
    return obj is not None and labels.get("flotilla.dev/function") == name


def _image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0].get("image", ""))


def delete_function(client: Client, name: str, namespace: str) -> list[str]:
    """Delete what ``fn deploy`` made for ``name`` on either target; returns ``Kind/name``."""
    gone = []
    for api, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
        if _owned(get_raw(client, api, kind, name, namespace=namespace), name):
            delete_raw(client, api, kind, name, namespace=namespace)
            gone.append(f"{kind}/{name}")
    # get_raw answers None where Knative Serving is not installed (404) as well
    ksvc = get_raw(
        client, _KSVC, "Service", name, namespace=namespace, plural="services", namespaced=True
    )
    if _owned(ksvc, name):
        delete_raw(
            client, _KSVC, "Service", name, namespace=namespace, plural="services", namespaced=True
        )
        gone.append(f"Service.serving.knative.dev/{name}")
    return gone


def list_functions(client: Client, namespace: str | None) -> list[FunctionRow]:
    """Functions deployed by flotilla (Deployments and Knative Services), sorted."""
    rows = [
        FunctionRow(
            d["metadata"]["name"],
            d["metadata"]["namespace"],
            "kubernetes",
            deployment_ready(d),
            _image(d),
        )
        for d in list_raw(
            client, "apps/v1", "Deployment", namespace=namespace, labels=_FUNCTION_LABELS
        )
    ]
    try:
        ksvcs = list_raw(
            client,
            _KSVC,
            "Service",
            namespace=namespace,
            labels=_FUNCTION_LABELS,
            plural="services",
            namespaced=True,
        )
    except KubeError as exc:
        if exc.status != 404:  # 404: Knative Serving is not installed
            raise
        ksvcs = []
    for obj in ksvcs:
        conditions = obj.get("status", {}).get("conditions", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        meta = obj["metadata"]
        rows.append(FunctionRow(meta["name"], meta["namespace"], "knative", ready, _image(obj)))
    return sorted(rows, key=lambda r: (r.namespace, r.name))


def function_logs(client: Client, name: str, namespace: str, tail: int) -> list[tuple[str, str]]:
    """The last ``tail`` lines of every pod of the function, as ``(pod, line)``."""
    labels = {"flotilla.dev/function": name}
    pods = list_raw(client, "v1", "Pod", namespace=namespace, labels=labels)
    out = []
    api: Any = client
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        pod_name = str(pod["metadata"]["name"])
        try:
            lines = api.log(pod_name, namespace=namespace, container="function", tail_lines=tail)
            out += [(pod_name, str(line).rstrip("\n")) for line in lines]
        except Exception as exc:  # a pod that has not started has no log yet
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            out.append((pod_name, f"(no log: {reason})"))
    return out
