"""Tekton Pipelines in the test cluster, built from its Go module the way ``ko resolve`` would.

The commands the release runs (controller, webhook, and the images TaskRun pods use:
entrypoint, nop, workingdirinit, sidecarlogresults) are built with ``go build`` inside the
module ``github.com/tektoncd/pipeline`` as the Go module proxy serves it (so its own ``go.mod``
with its ``replace`` lines applies), each put at ``/ko-app/<command>`` of an image of its own,
where ko puts it and where the controller expects the entrypoint binary. The manifests are the
module's own ``config/`` files with every ``ko://`` reference replaced by those images, and the
``-shell-image`` (chainguard's busybox, out of reach here) by ``flotilla.local/busybox``.
What ``fn pipeline`` runs comes along: kaniko's executor from its Go module and a git image.

Two changes fit the test cluster: every Deployment and every TaskRun pod (through
``config-defaults``' ``default-pod-template``) gets a nodeSelector for the real nodes, since kwok
nodes only pretend to run pods; and what needs services that are not here is left out: the
remote resolvers (they fetch from hub.tekton.dev, git hosts, bundles), the events controller
and the webhook's HorizontalPodAutoscaler (no metrics server).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from flotilla.testenv.errors import BuildError
from flotilla.testenv.images import (
    BUSYBOX_IMAGE,
    ImageSpec,
    build_image,
    files_layer,
    images_cache_dir,
    write_image,
)
from flotilla.testenv.realnode import REAL_NODE_LABEL

TEKTON_MODULE = "github.com/tektoncd/pipeline"
TEKTON_VERSION = "v1.3.0"
TEKTON_NAMESPACE = "tekton-pipelines"
TEKTON_COMMANDS = (
    "controller",
    "webhook",
    "entrypoint",
    "nop",
    "workingdirinit",
    "sidecarlogresults",
)
TEKTON_DEPLOYMENTS = ("tekton-pipelines-controller", "tekton-pipelines-webhook")
# config/ files that need what the test cluster lacks (see the module docstring).
_LEFT_OUT = ("events.yaml", "webhook-hpa.yaml", "config-leader-election-events.yaml")
_LEFT_OUT_DIRS = ("resolvers",)
_KO_ENV = ("PATH=/ko-app", "KO_DATA_PATH=/var/run/ko")
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


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return env


def module_dir(module: str = TEKTON_MODULE, version: str = TEKTON_VERSION) -> Path:
    """The module's source as the proxy serves it (``go mod download``), read-only in GOMODCACHE."""
    cmd = ["go", "mod", "download", "-json", f"{module}@{version}"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=_go_env(), timeout=900, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError(f"cannot build {module}: no `go` on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"`{' '.join(cmd)}` took over 15 minutes") from exc
    try:
        directory = Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError, TypeError):
        raise BuildError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        ) from None
    return directory


def tekton_cache_dir(version: str = TEKTON_VERSION) -> Path:
    return images_cache_dir().parent / f"tekton-{version}"


def image_reference(command: str, version: str = TEKTON_VERSION) -> str:
    return f"flotilla.local/tekton/{command}:{version}"


def _archives(version: str) -> dict[str, Path]:
    directory = tekton_cache_dir(version)
    archives = {image_reference(c, version): directory / f"{c}.oci.tar" for c in TEKTON_COMMANDS}
    archives[KANIKO_IMAGE] = directory / "kaniko-executor.oci.tar"
    archives[GIT_SPEC.reference] = images_cache_dir() / GIT_SPEC.archive_name
    return archives


def is_built(version: str = TEKTON_VERSION) -> bool:
    return all(path.is_file() for path in _archives(version).values())


def _go_build(module: str, version: str, commands: list[str], bin_dir: Path) -> None:
    """``go build`` of ``./cmd/<command>`` inside the module, so its own go.mod applies."""
    source = module_dir(module, version)
    partial = bin_dir / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    cmd = ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{partial}/",
           *(f"./cmd/{c}" for c in commands)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=source, capture_output=True, text=True, env=_go_env(), check=False
    )
    if proc.returncode != 0:
        raise BuildError(
            f"`{' '.join(cmd)}` in {source} failed (exit {proc.returncode}):\n"
            f"{proc.stderr.strip()[-3000:]}"
        )
    for command in commands:
        (partial / command).replace(bin_dir / command)


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


def build_tekton(
    version: str = TEKTON_VERSION, report: Callable[[str], None] = lambda line: None
) -> dict[str, Path]:
    """Build what is missing and return image reference -> archive; a no-op when cached."""
    archives = _archives(version)
    if all(path.is_file() for path in archives.values()):
        return archives
    directory = tekton_cache_dir(version)
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing = [c for c in TEKTON_COMMANDS if not (bin_dir / c).is_file()]
    if missing:
        report(f"go build {', '.join(missing)} of {TEKTON_MODULE}@{version}")
        _go_build(TEKTON_MODULE, version, missing, bin_dir)
    for command in TEKTON_COMMANDS:
        reference = image_reference(command, version)
        # As ko builds it: the binary is the entrypoint, so a pod's ``args`` are its flags.
        spec = ImageSpec(
            reference, "binary", cmd=(), entrypoint=(f"/ko-app/{command}",), env=_KO_ENV
        )
        layer = files_layer({f"ko-app/{command}": bin_dir / command})
        write_image(archives[reference], (layer,), spec)
    if not (bin_dir / "executor").is_file():
        report(f"go build executor of {KANIKO_MODULE}@{KANIKO_VERSION}")
        _go_build(KANIKO_MODULE, KANIKO_VERSION, ["executor"], bin_dir)
    spec = ImageSpec(
        KANIKO_IMAGE, "binary", cmd=(), entrypoint=("/kaniko/executor",), env=_KANIKO_ENV
    )
    with tempfile.TemporaryDirectory(prefix="kaniko-", dir=directory) as scratch:
        write_image(
            archives[KANIKO_IMAGE], (_kaniko_layer(bin_dir / "executor", Path(scratch)),), spec
        )
    report(f"debootstrap {GIT_SPEC.reference}")
    build_image(GIT_SPEC)
    return archives


def _config_files(source: Path) -> list[Path]:
    """``config/`` in the order ``ko apply -f config/`` takes it (sorted, recursively)."""
    files = []
    for path in sorted((source / "config").rglob("*.yaml")):
        relative = path.relative_to(source / "config")
        if relative.parts[0] in _LEFT_OUT_DIRS or relative.name in _LEFT_OUT:
            continue
        files.append(path)
    return files


def _replace_refs(node: Any, images: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _replace_refs(value, images) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_refs(value, images) for value in node]
    if isinstance(node, str):
        if node.startswith("ko://"):
            command = node.rsplit("/", 1)[-1]
            if command not in images:
                raise BuildError(f"Tekton's config names {node}, which is not built here")
            return images[command]
        if node.startswith("cgr.dev/chainguard/busybox"):
            return BUSYBOX_IMAGE
    return node


def _pin_to_real_nodes(document: dict[str, Any]) -> None:
    selector = {REAL_NODE_LABEL: "true"}
    kind, name = document.get("kind"), document.get("metadata", {}).get("name")
    if kind == "Deployment":
        pod = document["spec"]["template"]["spec"]
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), **selector}
    elif kind == "ConfigMap" and name == "config-defaults":
        template = yaml.safe_dump({"nodeSelector": selector})
        data = document.setdefault("data", {})
        # TaskRun pods, and the affinity assistant that keeps a workspace's pods on one node.
        data["default-pod-template"] = template
        data["default-affinity-assistant-pod-template"] = template


def tekton_objects(source: Path, version: str = TEKTON_VERSION) -> Iterator[dict[str, Any]]:
    """The release's objects, resolved to our images and pinned to the real nodes."""
    images = {command: image_reference(command, version) for command in TEKTON_COMMANDS}
    for path in _config_files(source):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or "kind" not in document:
                continue
            document = _replace_refs(document, images)
            _pin_to_real_nodes(document)
            yield document
