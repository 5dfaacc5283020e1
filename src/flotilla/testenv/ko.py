"""Releases built from their Go modules the way ``ko resolve`` would, for Tekton and Knative.

Each command of a release is built with ``go build`` inside the module as the Go module proxy
serves it (so the module's own ``go.mod`` with its ``replace`` lines applies) and put at
``/ko-app/<command>`` of an image of its own, where ko puts it: the binary is the entrypoint, so a
pod's ``args`` are its flags. The release's ``config/`` manifests are applied with every
``ko://<module>/cmd/<command>`` replaced by those images.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.testenv.errors import BuildError
from flotilla.testenv.images import ImageSpec, files_layer, images_cache_dir, write_image
from flotilla.testenv.realnode import REAL_NODE_LABEL

_KO_ENV = ("PATH=/ko-app", "KO_DATA_PATH=/var/run/ko")


@dataclass(frozen=True)
class Release:
    """One project as its release is made: commands built by ko, ``config/`` applied."""

    project: str  # "tekton", "knative"
    name: str
    module: str
    version: str
    commands: tuple[str, ...]
    deployments: tuple[str, ...]  # waited for after the apply
    left_out: tuple[str, ...] = ()  # config/ files or directories the test cluster cannot use
    user: str = ""  # ko's default base runs as 65532 (nonroot); Tekton's pods set their own

    def image(self, command: str) -> str:
        return f"flotilla.local/{self.project}-{self.name}/{command}:{self.version}"

    @property
    def cache_dir(self) -> Path:
        return images_cache_dir().parent / f"{self.project}-{self.name}-{self.version}"

    def archives(self) -> dict[str, Path]:
        return {self.image(c): self.cache_dir / f"{c}.oci.tar" for c in self.commands}

    def ko_images(self) -> dict[str, str]:
        """``ko://`` reference -> our image, for every command."""
        return {f"ko://{self.module}/cmd/{c}": self.image(c) for c in self.commands}


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return env


def module_dir(module: str, version: str) -> Path:
    """The module's source as the proxy serves it (``go mod download``), read-only in GOMODCACHE."""
    cmd = ["go", "mod", "download", "-json", f"{module}@{version}"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=go_env(), timeout=900, check=False
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


def go_build(module: str, version: str, packages: list[str], bin_dir: Path) -> None:
    """``go build`` of ``./<package>`` paths inside the module, so its own go.mod applies; each
    binary lands in ``bin_dir`` under its package's last element only once it is whole."""
    source = module_dir(module, version)
    partial = bin_dir / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    cmd = ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", f"{partial}/",
           *(f"./{p}" for p in packages)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=source, capture_output=True, text=True, env=go_env(), check=False
    )
    if proc.returncode != 0:
        raise BuildError(
            f"`{' '.join(cmd)}` in {source} failed (exit {proc.returncode}):\n"
            f"{proc.stderr.strip()[-3000:]}"
        )
    for package in packages:
        binary = package.rsplit("/", 1)[-1]
        (partial / binary).replace(bin_dir / binary)


def build_release(release: Release, report: Callable[[str], None]) -> None:
    """Build the commands that are missing, then an image for each (a no-op when cached)."""
    bin_dir = release.cache_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing = [c for c in release.commands if not (bin_dir / c).is_file()]
    if missing:
        report(f"go build {', '.join(missing)} of {release.module}@{release.version}")
        go_build(release.module, release.version, [f"cmd/{c}" for c in missing], bin_dir)
    for command, archive in zip(release.commands, release.archives().values(), strict=True):
        if archive.is_file():
            continue
        spec = ImageSpec(
            release.image(command), "binary", cmd=(), entrypoint=(f"/ko-app/{command}",),
            env=_KO_ENV, user=release.user,
        )  # fmt: skip
        write_image(archive, (files_layer({f"ko-app/{command}": bin_dir / command}),), spec)


def config_documents(
    release: Release, source: Path, directory: str = "config"
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``config/`` in the order ``ko apply -f config/`` takes it (sorted, recursively), without
    what the release leaves out; each YAML document with its file."""
    root = source / directory
    for path in sorted(root.rglob("*.yaml")):
        relative = path.relative_to(root)
        if relative.parts[0] in release.left_out or relative.name in release.left_out:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and "kind" in document:
                yield path, document


def replace_refs(node: Any, images: dict[str, str], others: dict[str, str]) -> Any:
    """Every ``ko://`` reference replaced by its image; strings starting with a key of
    ``others`` (an image out of reach here) replaced by its value."""
    if isinstance(node, dict):
        return {key: replace_refs(value, images, others) for key, value in node.items()}
    if isinstance(node, list):
        return [replace_refs(value, images, others) for value in node]
    if isinstance(node, str):
        if node.startswith("ko://"):
            if node not in images:
                raise BuildError(f"the release's config names {node}, which is not built here")
            return images[node]
        for prefix, image in others.items():
            if node.startswith(prefix):
                return image
    return node


def pin_deployment(document: dict[str, Any]) -> None:
    """Put a Deployment's pods on the real nodes (kwok nodes only pretend to run pods)."""
    if document.get("kind") == "Deployment":
        pod = document["spec"]["template"]["spec"]
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), REAL_NODE_LABEL: "true"}
