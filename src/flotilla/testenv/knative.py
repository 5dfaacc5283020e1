"""Knative Serving in the test cluster, built from its Go modules the way ``ko resolve`` would.

Serving's commands (controller, webhook, autoscaler, activator, and the queue-proxy sidecar) are
built inside ``knative.dev/serving`` as the Go proxy serves it (see ``ko``). Its ``config/core``
is applied with every ``ko://`` replaced; the files its repository links in from other modules
(the module zip drops symlinks) are read from those modules at the versions serving's go.mod pins:
the networking CRDs and ``config-network`` from ``knative.dev/networking``, the ``Image`` CRD
from ``knative.dev/caching``.

Networking: none of Knative's own layers can be had here (net-kourier, net-istio, net-contour
and net-gateway-api are refused by the Go proxy, and they need Envoy). Traefik v3 implements
Knative's KIngress itself (its ``knative`` provider, which Traefik runs Knative's ingress
conformance suite against), so Traefik is built from ``github.com/traefik/traefik/v3`` v3.6.5
(v3.7.13 needs DNS-provider SDKs of lego/v5 and a go-http-auth fork that the proxy refuses) and
deployed with that provider: a public entry point on port 80 of the Service
``traefik/traefik`` and a cluster-local one on port 80 of ``traefik/traefik-private``.

Changes that fit the test cluster, each a setting Knative documents: Deployments pinned to the
real nodes; the HPAs left out (no metrics server); ``config-network`` names Traefik's ingress
class; the domain is ``example.com`` (RFC 2606; nothing resolves it, callers send the Host);
tags of ``flotilla.local`` images are not resolved to digests (the controller cannot reach the
node's registry mirror); the nodeSelector and PVC pod-spec features are enabled, since functions
must be pinned to real nodes here and ``function.yaml`` may mount claims; and each Deployment
requests 25m of CPU (the release asks 100m-300m each, 600m of the test machine's two cores,
which the other tests' pods need; the limits stay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from flotilla.testenv.ko import (
    Release,
    build_release,
    config_documents,
    module_dir,
    pin_deployment,
    replace_refs,
)
from flotilla.testenv.realnode import REAL_NODE_LABEL

KNATIVE_NAMESPACE = "knative-serving"
TRAEFIK_NAMESPACE = "traefik"
INGRESS_CLASS = "traefik.ingress.networking.knative.dev"
DOMAIN = "example.com"
SERVING = Release(
    "knative",
    "serving",
    "knative.dev/serving",
    "v0.42.2",
    ("controller", "webhook", "autoscaler", "activator", "queue"),
    ("controller", "webhook", "autoscaler", "activator"),
    ("activator-hpa.yaml", "webhook-hpa.yaml"),
    user="65532",  # its pods say runAsNonRoot
)
# Pinned by serving v0.42.2's go.mod; their config/ holds what serving's repository links in.
NETWORKING = ("knative.dev/networking", "v0.0.0-20240716111826-bab7f2a3e556")
CACHING = ("knative.dev/caching", "v0.0.0-20240716132144-989f54c83776")
TRAEFIK = Release(
    "traefik", "proxy", "github.com/traefik/traefik/v3", "v3.6.5", ("traefik",), ("traefik",)
)
RELEASES = (SERVING, TRAEFIK)
CPU_REQUEST = "25m"
KNATIVE_VERSION = SERVING.version

CONFIG: dict[str, dict[str, str]] = {
    "config-network": {"ingress-class": INGRESS_CLASS},
    "config-domain": {DOMAIN: ""},
    "config-deployment": {
        "registries-skipping-tag-resolving": "kind.local,ko.local,dev.local,flotilla.local"
    },
    "config-features": {
        "kubernetes.podspec-nodeselector": "enabled",
        "kubernetes.podspec-persistent-volume-claim": "enabled",
        "kubernetes.podspec-persistent-volume-write": "enabled",
    },
}


def archives() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for release in RELEASES:
        found.update(release.archives())
    return found


def is_built() -> bool:
    return all(path.is_file() for path in archives().values())


def build_knative(report: Callable[[str], None] = lambda line: None) -> dict[str, Path]:
    """Build what is missing and return image reference -> archive; a no-op when cached."""
    for release in RELEASES:
        build_release(release, report)
    for module, version in (NETWORKING, CACHING):
        module_dir(module, version)  # their manifests are read at install time
    return archives()


def _configure(document: dict[str, Any]) -> dict[str, Any]:
    pin_deployment(document)
    if document.get("kind") == "Deployment":  # 600m of 2 cores otherwise, for idle controllers
        for container in document["spec"]["template"]["spec"]["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            if "cpu" in requests:
                requests["cpu"] = CPU_REQUEST
    name = document.get("metadata", {}).get("name", "")
    if document.get("kind") == "ConfigMap" and name in CONFIG:
        document.setdefault("data", {}).update(CONFIG[name])
    return document


def serving_objects() -> Iterator[dict[str, Any]]:
    """Serving's release (CRDs first, as serving-crds.yaml comes before serving-core.yaml)."""
    serving = module_dir(SERVING.module, SERVING.version)
    linked = [
        *(
            d
            for _, d in config_documents(SERVING, module_dir(*NETWORKING))
            if d["kind"] in ("CustomResourceDefinition", "ConfigMap")
        ),
        *(d for _, d in config_documents(SERVING, module_dir(*CACHING))),
    ]
    core = [d for _, d in config_documents(SERVING, serving, "config/core")]
    documents = [d for d in core if d["kind"] == "Namespace"]
    documents += [d for d in linked + core if d["kind"] == "CustomResourceDefinition"]
    documents += [
        d for d in linked + core if d["kind"] not in ("Namespace", "CustomResourceDefinition")
    ]
    for document in documents:
        yield _configure(replace_refs(document, SERVING.ko_images(), {}))


def _traefik_rules() -> list[dict[str, Any]]:
    """The RBAC rules Traefik documents for its Knative provider, read from its module."""
    source = module_dir(TRAEFIK.module, TRAEFIK.version)
    path = source / "docs/content/reference/dynamic-configuration/kubernetes-knative-rbac.yml"
    for document in yaml.safe_load_all(path.read_text()):
        if isinstance(document, dict) and document.get("kind") == "ClusterRole":
            return list(document["rules"])
    raise ValueError(f"no ClusterRole in {path}")


def traefik_objects() -> list[dict[str, Any]]:
    """Traefik with its Knative provider: public and cluster-local entry points, and the two
    Services whose names it reports in each KIngress's status."""
    meta = {"namespace": TRAEFIK_NAMESPACE, "labels": {"app": "traefik"}}
    ports = {"web": 8080, "websecure": 8443, "private": 8081, "traefik": 9000}
    args = [
        f"--entrypoints.web.address=:{ports['web']}",
        f"--entrypoints.websecure.address=:{ports['websecure']}",
        f"--entrypoints.private.address=:{ports['private']}",
        f"--entrypoints.traefik.address=:{ports['traefik']}",
        "--ping",  # /ping on the traefik entry point, for the probes
        # The provider marks a KIngress ready when it has read it; a throttled reload could
        # still be on its way, answering 404 to the first requests that follow.
        "--providers.providersThrottleDuration=0s",
        "--experimental.knative",
        "--providers.knative.publicEntrypoints=web,websecure",
        f"--providers.knative.publicService.namespace={TRAEFIK_NAMESPACE}",
        "--providers.knative.publicService.name=traefik",
        "--providers.knative.privateEntrypoints=private",
        f"--providers.knative.privateService.namespace={TRAEFIK_NAMESPACE}",
        "--providers.knative.privateService.name=traefik-private",
    ]
    probe = {"httpGet": {"path": "/ping", "port": "traefik"}, "periodSeconds": 2}
    container = {
        "name": "traefik",
        "image": TRAEFIK.image("traefik"),
        "args": args,
        "ports": [{"name": n, "containerPort": p} for n, p in ports.items()],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 10},
        "securityContext": {"runAsUser": 65532, "allowPrivilegeEscalation": False},
    }
    pod = {
        "serviceAccountName": "traefik",
        "containers": [container],
        "nodeSelector": {REAL_NODE_LABEL: "true"},
    }

    def service(name: str, target: str, kind: str, tls: bool) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, **meta},
            "spec": {
                "type": kind,
                "selector": {"app": "traefik"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": target},
                    *([{"name": "https", "port": 443, "targetPort": "websecure"}] if tls else []),
                ],
            },
        }

    role_name = "flotilla-traefik-knative"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TRAEFIK_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "traefik", **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name},
            "rules": _traefik_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role_name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role_name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "traefik", "namespace": TRAEFIK_NAMESPACE}
            ],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "traefik", **meta},
            "spec": {
                "selector": {"matchLabels": {"app": "traefik"}},
                "template": {"metadata": {"labels": {"app": "traefik"}}, "spec": pod},
            },
        },
        # A NodePort, on the real nodes' addresses only: how callers outside the cluster (and
        # Knative's conformance suite, with --ingressendpoint) reach the public entry point.
        service("traefik", "web", "NodePort", tls=True),
        service("traefik-private", "private", "ClusterIP", tls=False),
    ]
