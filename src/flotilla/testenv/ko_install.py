"""Installing a release built by ``ko`` on an environment's real nodes: images into each node's
containerd, manifests applied server-side, Deployments and webhooks waited for."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.resources.apps_v1 import Deployment

from flotilla.core.kube import KubeError, apply_raw, get_raw, kube_errors, wait_until
from flotilla.testenv.components import Layout
from flotilla.testenv.nodehost import Ctr, require_tools
from flotilla.testenv.realnode import RealNodeLayout

FIELD_MANAGER = "flotilla-testenv"
READY_TIMEOUT_SECONDS = 240


def load_images(layout: Layout, real_nodes: list[str], archives: dict[str, Path]) -> None:
    """Import every archive into every real node; push each once to the environment's registry
    (the node's containerd pulls ``flotilla.local`` from it when a pod asks to)."""
    tools = require_tools()
    for index, name in enumerate(real_nodes):
        ctr = Ctr(RealNodeLayout(layout.state_dir, name), tools["ctr"])
        for reference, archive in archives.items():
            ctr.import_image(archive)  # always: a rebuilt image keeps its tag
            if index == 0:
                ctr.push(reference)


def _custom_kind(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith("k8s.io")


def apply_documents(client: Client, documents: Iterable[dict[str, Any]]) -> None:
    """Server-side apply; a release's own kinds by their CRD's plural (``Image`` -> ``images``),
    each CRD waited for until it is Established, so objects of its kind can follow."""
    for document in documents:
        custom: dict[str, Any] = {}
        if _custom_kind(str(document["apiVersion"])):
            custom = {
                "plural": str(document["kind"]).lower() + "s",
                "namespaced": "namespace" in document["metadata"],
            }
        _apply_once_webhooks_answer(client, document, custom)
        if document["kind"] == "CustomResourceDefinition":
            name = document["metadata"]["name"]
            wait_until(
                lambda name=name: _established(client, name),  # type: ignore[misc]
                timeout=60,
                what=f"CRD {name} to be established",
            )


def _apply_once_webhooks_answer(
    client: Client, document: dict[str, Any], custom: dict[str, Any]
) -> None:
    """Apply, retrying only while an admission webhook this release just installed is not yet
    serving (e.g. Triggers' ConfigMaps in ``tekton-pipelines`` meet Pipelines' config webhook
    before its pod is up); any other refusal, or one that outlasts the wait, fails as it is."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            apply_raw(client, document, field_manager=FIELD_MANAGER, **custom)
            return
        except KubeError as exc:
            if "failed calling webhook" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(1.0)


def _established(client: Client, name: str) -> bool | None:
    stored = get_raw(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    conditions = (stored or {}).get("status", {}).get("conditions", [])
    ok = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
    return True if ok else None


def wait_available(client: Client, namespace: str, names: Iterable[str]) -> None:
    for name in names:
        wait_until(
            lambda name=name: _available(client, namespace, name),  # type: ignore[misc]
            timeout=READY_TIMEOUT_SECONDS,
            what=f"{namespace}/{name} to be available",
        )


def _available(client: Client, namespace: str, name: str) -> bool | None:
    with kube_errors(f"get deployment {namespace}/{name}"):
        deployment = client.get(Deployment, name, namespace=namespace)
    status = deployment.status
    return True if status is not None and status.availableReplicas else None


def wait_admits(client: Client, what: str, probe: Any) -> None:
    """The webhooks have their certificate and answer: a dry-run object is defaulted and
    validated (the caBundle alone does not say the Service routes yet)."""

    def admits() -> bool:
        with kube_errors(f"dry-run create of a {what}"):  # wait_until retries, keeps the error
            client.create(probe, dry_run=True)
        return True

    wait_until(admits, timeout=READY_TIMEOUT_SECONDS, interval=1.0, what=f"webhook to admit {what}")
