"""Kubernetes objects for a function: Deployment + Service, or a Knative Service. Pure."""

from __future__ import annotations

from typing import Any

from .model import FunctionSpec
from .sources import pod_parts

__all__ = [
    "HEALTH_LIVENESS",
    "HEALTH_READINESS",
    "knative_service",
    "kubernetes_objects",
    "manifests_for",
    "runtime_env",
    "selector_labels",
]

HEALTH_LIVENESS = "/health/liveness"
HEALTH_READINESS = "/health/readiness"
MANAGED_BY = {"app.kubernetes.io/managed-by": "flotilla"}


def selector_labels(spec: FunctionSpec) -> dict[str, str]:
    return {"flotilla.dev/function": spec.name}


def _labels(spec: FunctionSpec) -> dict[str, str]:
    return {
        **spec.deploy.labels,
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": "function",
        **MANAGED_BY,
        **selector_labels(spec),
        "flotilla.dev/runtime": spec.runtime.value,
    }


def runtime_env(spec: FunctionSpec, version: str) -> list[dict[str, str]]:
    """The container's environment: the user's ``env`` plus what names this instance."""
    env = [
        {"name": "FLOTILLA_FN_NAME", "value": spec.name},
        {"name": "FLOTILLA_FN_VERSION", "value": version},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    return env + limit_env(spec)


def _add_sources(spec: FunctionSpec, container: dict[str, Any], pod: dict[str, Any]) -> None:
    """Env from Secrets/ConfigMaps, ``envFrom`` and volumes, the same for both targets."""
    container_parts, pod_parts_ = pod_parts(spec.sources)
    container["env"] = [*container["env"], *container_parts.pop("env", [])]
    container.update(container_parts)
    pod.update(pod_parts_)


def limit_env(spec: FunctionSpec) -> list[dict[str, str]]:
    """``timeout`` and ``concurrency`` as the runtime reads them (only when set)."""
    out = []
    if spec.timeout:
        out.append({"name": "FLOTILLA_FN_TIMEOUT", "value": str(spec.timeout)})
    if spec.concurrency:
        out.append({"name": "FLOTILLA_FN_CONCURRENCY", "value": str(spec.concurrency)})
    return out


def _version_of(image: str) -> str:
    """The tag or digest of ``image``, the function's version in metrics and spans."""
    if "@" in image:
        return image.rsplit("@", 1)[1][:19]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def _probe(path: str, port: int | None, *, period: int, failures: int) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path}
    if port is not None:
        get["port"] = "http"
    return {
        "httpGet": get,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _resources(spec: FunctionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.deploy.requests:
        out["requests"] = dict(spec.deploy.requests)
    if spec.deploy.limits:
        out["limits"] = dict(spec.deploy.limits)
    return out


def _scrape_annotations(port: int) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


def kubernetes_objects(spec: FunctionSpec, image: str, namespace: str) -> list[dict[str, Any]]:
    """A Deployment with probes on the health endpoints, and a ClusterIP Service on port 80."""
    port = spec.deploy.port
    labels = _labels(spec)
    container: dict[str, Any] = {
        "name": "function",
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(port)}, *runtime_env(spec, _version_of(image))],
        "readinessProbe": _probe(HEALTH_READINESS, port, period=2, failures=2),
        "livenessProbe": _probe(HEALTH_LIVENESS, port, period=10, failures=3),
        "startupProbe": _probe(HEALTH_LIVENESS, port, period=1, failures=30),
        "resources": _resources(spec),
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        # Service links put one variable per Service into every pod: slower start, no use here.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 15,
    }
    if spec.deploy.node_selector:
        pod_spec["nodeSelector"] = dict(spec.deploy.node_selector)
    _add_sources(spec, container, pod_spec)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(spec.deploy.annotations),
        },
        "spec": {
            "replicas": max(1, spec.scale.min),
            "selector": {"matchLabels": selector_labels(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": _scrape_annotations(port)},
                "spec": pod_spec,
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": selector_labels(spec),
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def knative_service(spec: FunctionSpec, image: str, namespace: str) -> dict[str, Any]:
    """A ``serving.knative.dev/v1`` Service with autoscaling annotations from ``scale``."""
    scale = spec.scale
    hpa = scale.metric in ("cpu", "memory")
    annotations = {
        "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"
        if hpa
        else "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/metric": scale.metric,
        "autoscaling.knative.dev/min-scale": str(scale.min),
        "autoscaling.knative.dev/max-scale": str(scale.max),
        "autoscaling.knative.dev/target": str(scale.target),
        "autoscaling.knative.dev/target-utilization-percentage": str(scale.utilization),
        **_scrape_annotations(spec.deploy.port),
    }
    container: dict[str, Any] = {
        "name": "function",
        "image": image,
        "ports": [{"name": "http1", "containerPort": spec.deploy.port}],
        # Knative sets PORT itself from containerPort, and K_SERVICE/K_REVISION for identity.
        "env": [
            e for e in runtime_env(spec, _version_of(image)) if e["name"] != "FLOTILLA_FN_VERSION"
        ],
        "readinessProbe": _probe(HEALTH_READINESS, None, period=2, failures=2),
        "livenessProbe": _probe(HEALTH_LIVENESS, None, period=10, failures=3),
        "resources": _resources(spec),
    }
    pod_spec: dict[str, Any] = {"containers": [container], "enableServiceLinks": False}
    if spec.deploy.node_selector:
        pod_spec["nodeSelector"] = dict(spec.deploy.node_selector)
    _add_sources(spec, container, pod_spec)
    if spec.concurrency:
        pod_spec["containerConcurrency"] = spec.concurrency  # the queue-proxy enforces it too
    if spec.timeout:
        pod_spec["timeoutSeconds"] = spec.timeout
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": _labels(spec),
            "annotations": dict(spec.deploy.annotations),
        },
        "spec": {
            "template": {
                "metadata": {"labels": _labels(spec), "annotations": annotations},
                "spec": pod_spec,
            }
        },
    }


def manifests_for(
    spec: FunctionSpec, image: str, namespace: str | None = None, target: str | None = None
) -> list[dict[str, Any]]:
    """The objects ``fn deploy`` applies for ``spec`` (target and namespace may be overridden)."""
    ns = namespace or spec.deploy.namespace
    if (target or spec.deploy.target.value) == "knative":
        return [knative_service(spec, image, ns)]
    return kubernetes_objects(spec, image, ns)
