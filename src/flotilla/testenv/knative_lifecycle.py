"""Install Knative Serving and Traefik, its ingress, on an environment's real nodes
(``up --knative``)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta

from flotilla.core.kube import client_from_kubeconfig
from flotilla.testenv.components import Layout
from flotilla.testenv.errors import StartError
from flotilla.testenv.knative import (
    KNATIVE_NAMESPACE,
    SERVING,
    TRAEFIK,
    TRAEFIK_NAMESPACE,
    archives,
    is_built,
    serving_objects,
    traefik_objects,
)
from flotilla.testenv.ko_install import apply_documents, load_images, wait_admits, wait_available
from flotilla.testenv.realnode import REAL_NODE_LABEL

KnativeService = create_namespaced_resource("serving.knative.dev", "v1", "Service", "services")


def install_knative(layout: Layout, real_nodes: list[str]) -> None:
    """Load the images, apply Traefik and Serving, wait until the webhook admits a Service."""
    if not real_nodes:
        raise StartError("Knative needs a real node to run its pods; add --real-node")
    if not is_built():
        raise StartError("Knative is not built; run `flotilla testenv build --knative` first")
    load_images(layout, real_nodes, archives())
    with client_from_kubeconfig(layout.kubeconfig) as client:
        apply_documents(client, traefik_objects())
        apply_documents(client, serving_objects())
        wait_available(client, TRAEFIK_NAMESPACE, TRAEFIK.deployments)
        wait_available(client, KNATIVE_NAMESPACE, SERVING.deployments)
        wait_admits(client, "Knative Service", _probe())


def _probe() -> Any:
    container = {"image": "flotilla.local/busybox:latest"}
    pod = {"containers": [container], "nodeSelector": {REAL_NODE_LABEL: "true"}}
    return KnativeService(
        metadata=ObjectMeta(name="flotilla-probe", namespace="default"),
        spec={"template": {"spec": pod}},
    )
