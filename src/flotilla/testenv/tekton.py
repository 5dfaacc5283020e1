"""Tekton Pipelines in the test cluster, built from its Go module the way ``ko resolve`` would.

The commands the release runs (controller, webhook, and the images TaskRun pods use:
entrypoint, nop, workingdirinit, sidecarlogresults) are built with ``go build`` inside the
module ``github.com/tektoncd/pipeline`` as the Go module proxy serves it (so its own ``go.mod``
with its ``replace`` lines applies), each put at ``/ko-app/<command>`` of an image of its own,
where ko puts it and where the controller expects the entrypoint binary. The manifests are the
module's own ``config/`` files with every ``ko://`` reference replaced by those images, and the
``-shell-image`` (chainguard's busybox, out of reach here) by ``flotilla.local/busybox``.
What ``fn pipeline`` runs comes along: kaniko's executor from its Go module and a git image.
Tekton Triggers (``github.com/tektoncd/triggers``) is built and installed the same way, into the
same namespace, so a git push can start a PipelineRun through an EventListener.

Two changes fit the test cluster: every Deployment and every TaskRun pod (through
``config-defaults``' ``default-pod-template``) gets a nodeSelector for the real nodes, since kwok
nodes only pretend to run pods; and what needs services that are not here is left out: the
remote resolvers (they fetch from hub.tekton.dev, git hosts, bundles), the events controller
and the webhook's HorizontalPodAutoscaler (no metrics server).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from flotilla.testenv.images import (
    BUSYBOX_IMAGE,
    ImageSpec,
    build_image,
    files_layer,
    images_cache_dir,
    write_image,
)
from flotilla.testenv.ko import (
    Release,
    build_release,
    config_documents,
    go_build,
    module_dir,
    pin_deployment,
    replace_refs,
)
from flotilla.testenv.realnode import REAL_NODE_LABEL

__all__ = ["module_dir"]  # re-exported for the lifecycle module

TEKTON_NAMESPACE = "tekton-pipelines"


PIPELINE = Release(
    "tekton",
    "pipeline",
    "github.com/tektoncd/pipeline",
    "v1.3.0",
    ("controller", "webhook", "entrypoint", "nop", "workingdirinit", "sidecarlogresults"),
    ("tekton-pipelines-controller", "tekton-pipelines-webhook"),
    # the remote resolvers, the events controller and the webhook's HPA (see the docstring)
    ("resolvers", "events.yaml", "webhook-hpa.yaml", "config-leader-election-events.yaml"),
)
TRIGGERS = Release(
    "tekton",
    "triggers",
    "github.com/tektoncd/triggers",
    "v0.30.0",
    ("controller", "webhook", "eventlistenersink", "interceptors"),
    ("tekton-triggers-controller", "tekton-triggers-webhook", "tekton-triggers-core-interceptors"),
)
RELEASES = (PIPELINE, TRIGGERS)
TEKTON_VERSION = PIPELINE.version

# The image builder of `fn pipeline`, from its Go module (kaniko's go.mod has no replaces).
KANIKO_MODULE = "github.com/GoogleContainerTools/kaniko"
KANIKO_VERSION = "v1.23.2"
KANIKO_IMAGE = f"flotilla.local/kaniko/executor:{KANIKO_VERSION}"
_KANIKO_ENV = (
    "PATH=/usr/local/bin:/kaniko",
    "HOME=/root",
    "USER=root",
    "SSL_CERT_DIR=/kaniko/ssl/certs",
    "DOCKER_CONFIG=/kaniko/.docker/",
)
# `fn pipeline`'s clone step: git from Debian (alpine/git is out of reach here).
GIT_IMAGE = "flotilla.local/git:latest"
GIT_SPEC = ImageSpec(GIT_IMAGE, "debootstrap", include=("git", "ca-certificates"), cmd=("git",))


def _kaniko_archive() -> Path:
    return PIPELINE.cache_dir / "kaniko-executor.oci.tar"


def _archives() -> dict[str, Path]:
    archives: dict[str, Path] = {}
    for release in RELEASES:
        archives.update(release.archives())
    archives[KANIKO_IMAGE] = _kaniko_archive()
    archives[GIT_SPEC.reference] = images_cache_dir() / GIT_SPEC.archive_name
    return archives


def is_built() -> bool:
    return all(path.is_file() for path in _archives().values())


def _kaniko_layer(executor: Path, scratch: Path) -> bytes:
    """The executor image as kaniko's own Dockerfile lays it out (``/kaniko``, an empty docker
    config, the CA bundle), without the cloud credential helpers."""
    docker_config = scratch / "config.json"
    docker_config.write_text("{}\n")
    nsswitch = scratch / "nsswitch.conf"
    nsswitch.write_text("hosts: files dns\n")
    files = {
        "kaniko/executor": executor,
        "kaniko/.docker/config.json": docker_config,
        "etc/nsswitch.conf": nsswitch,
    }
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        files["kaniko/ssl/certs/ca-certificates.crt"] = bundle
    return files_layer(files)


def build_tekton(report: Callable[[str], None] = lambda line: None) -> dict[str, Path]:
    """Build what is missing and return image reference -> archive; a no-op when cached."""
    archives = _archives()
    if all(path.is_file() for path in archives.values()):
        return archives
    for release in RELEASES:
        build_release(release, report)
    kaniko = _kaniko_archive()
    if not kaniko.is_file():
        bin_dir = PIPELINE.cache_dir / "bin"
        if not (bin_dir / "executor").is_file():
            report(f"go build executor of {KANIKO_MODULE}@{KANIKO_VERSION}")
            go_build(KANIKO_MODULE, KANIKO_VERSION, ["cmd/executor"], bin_dir)
        spec = ImageSpec(
            KANIKO_IMAGE, "binary", cmd=(), entrypoint=("/kaniko/executor",), env=_KANIKO_ENV
        )
        with tempfile.TemporaryDirectory(prefix="kaniko-", dir=PIPELINE.cache_dir) as scratch:
            layer = _kaniko_layer(bin_dir / "executor", Path(scratch))
            write_image(kaniko, (layer,), spec)
    report(f"debootstrap {GIT_SPEC.reference}")
    build_image(GIT_SPEC)
    return archives


def _pin_to_real_nodes(document: dict[str, Any]) -> None:
    pin_deployment(document)
    name = document.get("metadata", {}).get("name")
    if document.get("kind") == "ConfigMap" and name == "config-defaults":
        template = yaml.safe_dump({"nodeSelector": {REAL_NODE_LABEL: "true"}})
        data = document.setdefault("data", {})
        # TaskRun pods, and the affinity assistant that keeps a workspace's pods on one node.
        data["default-pod-template"] = template
        data["default-affinity-assistant-pod-template"] = template


def release_objects(release: Release, source: Path) -> Iterator[dict[str, Any]]:
    """The release's objects, resolved to our images and pinned to the real nodes."""
    others = {"cgr.dev/chainguard/busybox": BUSYBOX_IMAGE}  # Tekton's -shell-image
    for _path, document in config_documents(release, source):
        document = replace_refs(document, release.ko_images(), others)
        _pin_to_real_nodes(document)
        yield document
