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

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

TEKTON_NAMESPACE = "tekton-pipelines"
_KO_ENV = ("PATH=/ko-app", "KO_DATA_PATH=/var/run/ko")


@dataclass(frozen=True)
class Release:
    """One Tekton project as its release is made: commands built by ko, ``config/`` applied."""

    name: str
    module: str
    version: str
    commands: tuple[str, ...]
    deployments: tuple[str, ...]  # waited for after the apply
    left_out: tuple[str, ...] = ()  # config/ files or directories the test cluster cannot use

    def image(self, command: str) -> str:
        return f"flotilla.local/tekton-{self.name}/{command}:{self.version}"

    @property
    def cache_dir(self) -> Path:
        return images_cache_dir().parent / f"tekton-{self.name}-{self.version}"

    def archives(self) -> dict[str, Path]:
        return {self.image(c): self.cache_dir / f"{c}.oci.tar" for c in self.commands}


PIPELINE = Release(
    "pipeline",
    "github.com/tektoncd/pipeline",
    "v1.3.0",
    ("controller", "webhook", "entrypoint", "nop", "workingdirinit", "sidecarlogresults"),
    ("tekton-pipelines-controller", "tekton-pipelines-webhook"),
    # the remote resolvers, the events controller and the webhook's HPA (see the docstring)
    ("resolvers", "events.yaml", "webhook-hpa.yaml", "config-leader-election-events.yaml"),
)
TRIGGERS = Release(
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


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return env


def module_dir(module: str, version: str) -> Path:
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


def _build_release(release: Release, report: Callable[[str], None]) -> None:
    bin_dir = release.cache_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing = [c for c in release.commands if not (bin_dir / c).is_file()]
    if missing:
        report(f"go build {', '.join(missing)} of {release.module}@{release.version}")
        _go_build(release.module, release.version, missing, bin_dir)
    for command, archive in zip(release.commands, release.archives().values(), strict=True):
        if archive.is_file():
            continue
        # As ko builds it: the binary is the entrypoint, so a pod's ``args`` are its flags.
        spec = ImageSpec(
            release.image(command), "binary", cmd=(), entrypoint=(f"/ko-app/{command}",),
            env=_KO_ENV,
        )  # fmt: skip
        write_image(archive, (files_layer({f"ko-app/{command}": bin_dir / command}),), spec)


def build_tekton(report: Callable[[str], None] = lambda line: None) -> dict[str, Path]:
    """Build what is missing and return image reference -> archive; a no-op when cached."""
    archives = _archives()
    if all(path.is_file() for path in archives.values()):
        return archives
    for release in RELEASES:
        _build_release(release, report)
    kaniko = _kaniko_archive()
    if not kaniko.is_file():
        bin_dir = PIPELINE.cache_dir / "bin"
        if not (bin_dir / "executor").is_file():
            report(f"go build executor of {KANIKO_MODULE}@{KANIKO_VERSION}")
            _go_build(KANIKO_MODULE, KANIKO_VERSION, ["executor"], bin_dir)
        spec = ImageSpec(
            KANIKO_IMAGE, "binary", cmd=(), entrypoint=("/kaniko/executor",), env=_KANIKO_ENV
        )
        with tempfile.TemporaryDirectory(prefix="kaniko-", dir=PIPELINE.cache_dir) as scratch:
            layer = _kaniko_layer(bin_dir / "executor", Path(scratch))
            write_image(kaniko, (layer,), spec)
    report(f"debootstrap {GIT_SPEC.reference}")
    build_image(GIT_SPEC)
    return archives


def _config_files(release: Release, source: Path) -> list[Path]:
    """``config/`` in the order ``ko apply -f config/`` takes it (sorted, recursively)."""
    files = []
    for path in sorted((source / "config").rglob("*.yaml")):
        relative = path.relative_to(source / "config")
        if relative.parts[0] in release.left_out or relative.name in release.left_out:
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
            if node not in images:
                raise BuildError(f"Tekton's config names {node}, which is not built here")
            return images[node]
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


def release_objects(release: Release, source: Path) -> Iterator[dict[str, Any]]:
    """The release's objects, resolved to our images and pinned to the real nodes."""
    images = {f"ko://{release.module}/cmd/{c}": release.image(c) for c in release.commands}
    for path in _config_files(release, source):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or "kind" not in document:
                continue
            document = _replace_refs(document, images)
            _pin_to_real_nodes(document)
            yield document
