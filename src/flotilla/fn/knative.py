"""Knative Serving's side of ``fn deploy`` and ``fn invoke``: readiness of a Knative Service and
the way to call it through the cluster's KIngress implementation.

Knative gives every Service a Kubernetes Service of the same name of type ExternalName, pointing
at the ingress's cluster-local Service (``traefik-private.traefik.svc.cluster.local``,
``kourier-internal.kourier-system.svc.cluster.local``, ...). ``fn invoke --cluster`` calls that
Service through the API server's proxy with the Knative Service's own host in ``Host``, which is
how the ingress picks the route; the API server passes ``Host`` through unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lightkube import Client

from flotilla.core.kube import get_raw, list_raw, wait_until

from .pod_status import pod_problems

KSVC_API = "serving.knative.dev/v1"


@dataclass(frozen=True)
class KnativeReady:
    seconds: float
    url: str
    revision: str


@dataclass(frozen=True)
class KnativeRoute:
    """Where ``fn invoke --cluster`` sends a request for a Knative Service."""

    namespace: str
    service: str
    host: str


def ksvc_ready(ksvc: dict[str, Any] | None) -> bool:
    """The newest generation is observed and Ready. Pure."""
    if not ksvc:
        return False
    status = ksvc.get("status", {})
    generation = int(ksvc.get("metadata", {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def not_ready_reasons(ksvc: dict[str, Any] | None) -> list[str]:
    """Knative's own words for what is wrong (conditions that are not True). Pure."""
    out = []
    for cond in (ksvc or {}).get("status", {}).get("conditions", []):
        if cond.get("status") != "True" and (cond.get("reason") or cond.get("message")):
            text = f"{cond.get('type')}: {cond.get('reason', '')}: {cond.get('message', '')}"
            out.append(text.rstrip(": "))
    return out


def get_ksvc(client: Client, namespace: str, name: str) -> dict[str, Any] | None:
    return get_raw(
        client, KSVC_API, "Service", name, namespace=namespace, plural="services", namespaced=True
    )


def wait_knative_ready(
    client: Client, namespace: str, name: str, *, timeout: float = 120.0
) -> KnativeReady:
    """Wait until the Knative Service's newest Revision is Ready and routed; on timeout, name
    Knative's reasons and the pods' problems (image pulls, crashes)."""
    started = time.monotonic()
    try:
        ksvc = wait_until(
            lambda: (lambda k: k if ksvc_ready(k) else None)(get_ksvc(client, namespace, name)),
            timeout=timeout,
            interval=0.5,
            what=f"Knative Service {namespace}/{name}",
        )
    except TimeoutError as exc:
        reasons = not_ready_reasons(get_ksvc(client, namespace, name))
        pods = list_raw(
            client, "v1", "Pod", namespace=namespace, labels={"serving.knative.dev/service": name}
        )
        problems = reasons + pod_problems(pods)
        raise TimeoutError(f"{exc}" + (": " + "; ".join(problems) if problems else "")) from None
    status = ksvc.get("status", {})
    return KnativeReady(
        time.monotonic() - started,
        str(status.get("url", "")),
        str(status.get("latestReadyRevisionName", "")),
    )


def route_of(service: dict[str, Any] | None, ksvc: dict[str, Any] | None) -> KnativeRoute | None:
    """The ingress Service and Host for a Knative Service, from the ExternalName Service that
    Knative made and the Knative Service's cluster-local address. Pure; None if not Knative's."""
    spec = (service or {}).get("spec", {})
    if spec.get("type") != "ExternalName" or not ksvc:
        return None
    parts = str(spec.get("externalName", "")).split(".")
    if len(parts) < 3 or parts[2] != "svc":
        return None
    status = ksvc.get("status", {})
    address = str(status.get("address", {}).get("url") or status.get("url") or "")
    host = urlsplit(address).hostname
    return KnativeRoute(parts[1], parts[0], host) if host else None
