"""Install Tekton Pipelines and Triggers on an environment's real nodes (``up --tekton``)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta

from flotilla.core.kube import client_from_kubeconfig
from flotilla.testenv.components import Layout
from flotilla.testenv.errors import StartError
from flotilla.testenv.ko_install import apply_documents, load_images, wait_admits, wait_available
from flotilla.testenv.tekton import (
    RELEASES,
    TEKTON_NAMESPACE,
    build_tekton,
    is_built,
    module_dir,
    release_objects,
)

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
    load_images(layout, real_nodes, build_tekton())  # cached: only reads the archive paths
    with client_from_kubeconfig(layout.kubeconfig) as client:
        for release in RELEASES:  # Pipelines first: Triggers' roles name its resources
            source = module_dir(release.module, release.version)
            apply_documents(client, release_objects(release, source))
        for release in RELEASES:
            wait_available(client, TEKTON_NAMESPACE, release.deployments)
        for kind, probe in _probes().items():
            wait_admits(client, kind, probe)


def _probes() -> dict[str, Any]:
    meta = ObjectMeta(name="flotilla-probe", namespace="default")
    step = {"name": "probe", "image": "flotilla.local/busybox", "script": "true"}
    binding = {"params": [{"name": "revision", "value": "$(body.after)"}]}
    return {
        "Task": Task(metadata=meta, spec={"steps": [step]}),
        "TriggerBinding": TriggerBinding(metadata=meta, spec=binding),
    }
