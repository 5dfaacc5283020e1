"""Install Tekton Pipelines and Triggers on an environment's real nodes (``up --tekton``)."""

from __future__ import annotations

from typing import Any

from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment

from flotilla.core.kube import apply_raw, client_from_kubeconfig, kube_errors, wait_until
from flotilla.testenv.components import Layout
from flotilla.testenv.errors import StartError
from flotilla.testenv.nodehost import Ctr, require_tools
from flotilla.testenv.realnode import RealNodeLayout
from flotilla.testenv.tekton import (
    RELEASES,
    TEKTON_NAMESPACE,
    build_tekton,
    is_built,
    module_dir,
    release_objects,
)

READY_TIMEOUT_SECONDS = 240
FIELD_MANAGER = "flotilla-testenv"
Task = create_namespaced_resource("tekton.dev", "v1", "Task", "tasks")
TriggerBinding = create_namespaced_resource(
    "triggers.tekton.dev", "v1beta1", "TriggerBinding", "triggerbindings"
)


def install_tekton(layout: Layout, real_nodes: list[str]) -> None:
    """Load the images into every real node, apply the release, wait until it admits a Task."""
    if not real_nodes:
        raise StartError("Tekton needs a real node to run its pods; add --real-node")
    if not is_built():
        raise StartError("Tekton is not built; run `flotilla testenv build --tekton` first")
    archives = build_tekton()  # cached: only reads the archive paths
    tools = require_tools()
    for index, name in enumerate(real_nodes):
        ctr = Ctr(RealNodeLayout(layout.state_dir, name), tools["ctr"])
        for reference, archive in archives.items():
            ctr.import_image(archive)  # always: a rebuilt image keeps its tag
            if index == 0:  # ":latest" is pulled (imagePullPolicy Always): from our registry
                ctr.push(reference)
    with client_from_kubeconfig(layout.kubeconfig) as client:
        for release in RELEASES:  # Pipelines first: Triggers' roles name its resources
            for document in release_objects(release, module_dir(release.module, release.version)):
                _apply(client, document)
        for release in RELEASES:
            for deployment in release.deployments:
                wait_until(
                    lambda name=deployment: _available(client, name),  # type: ignore[misc]
                    timeout=READY_TIMEOUT_SECONDS,
                    what=f"{TEKTON_NAMESPACE}/{deployment} to be available",
                )
        for kind, probe in _probes().items():
            wait_until(
                lambda probe=probe: _admits(client, probe),  # type: ignore[misc]
                timeout=READY_TIMEOUT_SECONDS,
                interval=1.0,
                what=f"Tekton's webhook to admit a {kind}",
            )


def _apply(client: Client, document: dict[str, Any]) -> None:
    """Server-side apply; Tekton's own kinds (ClusterInterceptor, ...) by their CRD's plural."""
    meta = document["metadata"]
    custom: dict[str, Any] = {}
    if str(document["apiVersion"]).split("/")[0].endswith("tekton.dev"):
        custom = {"plural": str(document["kind"]).lower() + "s", "namespaced": "namespace" in meta}
    apply_raw(client, document, field_manager=FIELD_MANAGER, **custom)


def _available(client: Client, name: str) -> bool | None:
    with kube_errors(f"get deployment {name}"):
        deployment = client.get(Deployment, name, namespace=TEKTON_NAMESPACE)
    status = deployment.status
    return True if status is not None and status.availableReplicas else None


def _probes() -> dict[str, Any]:
    meta = ObjectMeta(name="flotilla-probe", namespace="default")
    step = {"name": "probe", "image": "flotilla.local/busybox", "script": "true"}
    binding = {"params": [{"name": "revision", "value": "$(body.after)"}]}
    return {
        "Task": Task(metadata=meta, spec={"steps": [step]}),
        "TriggerBinding": TriggerBinding(metadata=meta, spec=binding),
    }


def _admits(client: Client, probe: Any) -> bool | None:
    """The webhooks have their certificate and answer: a dry-run object is defaulted and
    validated (the caBundle alone does not say the Service routes yet)."""
    with kube_errors(f"dry-run create of a {probe.kind}"):  # wait_until retries, keeps the error
        client.create(probe, dry_run=True)
    return True
