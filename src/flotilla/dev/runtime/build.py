"""Image builds through dockerd (docker SDK): content-derived tags, push to the dev registry.

An adapter: decisions (what goes in the context, the tag, the registry name) come from
``context.py``; this module only talks to dockerd and runs ``custom_build`` commands.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

from flotilla.dev.plan.context import (
    GENERATED_DOCKERFILE,
    Matcher,
    build_context,
    dockerfile_text,
    registry_ref,
)
from flotilla.dev.plan.model import ImageTarget

logger = logging.getLogger(__name__)
LogFn = Callable[[str], None]


class BuildError(RuntimeError):
    """A build or push failed; the message carries the builder's own error text."""


_BUILDKIT_ONLY = re.compile(r"^\s*(RUN\s+--mount|#\s*syntax\s*=)", re.IGNORECASE | re.MULTILINE)


def needs_buildkit(dockerfile: str) -> bool:
    """Does the Dockerfile use what only BuildKit understands (``RUN --mount``, ``# syntax=``)?"""
    return bool(_BUILDKIT_ONLY.search(dockerfile))


def buildkit_argv(
    image: ImageTarget, ref: str, buildx: tuple[str, ...] = ("docker", "buildx")
) -> list[str]:
    """``docker buildx build`` of a tar context read from stdin, loaded into dockerd as ``ref``."""
    argv = [*buildx, "build", "--load", "-t", ref, "-f", GENERATED_DOCKERFILE]
    for key, value in sorted(image.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    if image.target:
        argv += ["--target", image.target]
    if image.network:
        argv += ["--network", image.network]
    if image.pull:
        argv.append("--pull")
    return [*argv, "-"]


def find_buildx() -> tuple[str, ...] | None:
    """How to run buildx (how BuildKit is driven; the SDK has no BuildKit): the standalone
    ``docker-buildx`` on PATH, else the docker CLI's plugin, else None."""
    standalone = shutil.which("docker-buildx")
    candidates: list[tuple[str, ...]] = [(standalone,)] if standalone else []
    if shutil.which("docker") is not None:
        candidates.append(("docker", "buildx"))
    for command in candidates:
        try:
            proc = subprocess.run(
                [*command, "version"], capture_output=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return command
    return None


@dataclass(frozen=True)
class Registry:
    """Where built images go: pushed to ``host``, pulled by the cluster as ``from_cluster``."""

    host: str = ""
    from_cluster: str = ""
    single_name: str = ""

    def push_ref(self, ref: str) -> str:
        return registry_ref(ref, self.host, self.single_name)

    def cluster_ref(self, ref: str) -> str:
        return registry_ref(ref, self.from_cluster or self.host, self.single_name)


@dataclass(frozen=True)
class Built:
    """A finished build: the ref manifests should use, and whether it was already there."""

    declared: str
    local_ref: str
    cluster_ref: str
    cached: bool
    seconds: float


class Builder:
    """Builds ``ImageTarget``s with one docker client; close it when done."""

    def __init__(
        self,
        docker_host: str | None,
        registry: Registry,
        tiltignore: tuple[tuple[str, Matcher], ...] = (),
    ) -> None:
        self.registry = registry
        self.tiltignore = tiltignore
        self._docker_host = docker_host or os.environ.get("DOCKER_HOST") or None
        self._client: docker.DockerClient | None = None
        self._pushed: set[str] = set()
        self._buildx: tuple[str, ...] | None = None  # looked for on the first BuildKit Dockerfile
        self._buildx_looked = False

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(
                    base_url=self._docker_host or "unix:///var/run/docker.sock", timeout=300
                )
            except docker.errors.DockerException as exc:
                raise BuildError(f"cannot reach dockerd at {self._docker_host}: {exc}") from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def build(
        self, image: ImageTarget, log: LogFn, images: Mapping[str, ImageTarget] | None = None
    ) -> Built:
        """Build ``image`` (after the declared images it is built from, found in ``images``)."""
        start = time.monotonic()
        if image.kind == "custom":
            return self._custom(image, log, start)
        bases = {
            dep: self.build(images[dep], log, images).local_ref
            for dep in image.image_deps
            if images is not None and dep in images
        }
        tar, tag = build_context(image, self.tiltignore, bases)
        local_ref = f"{self.registry.push_ref(image.ref)}:{tag}"
        cached = self._exists(local_ref)
        if cached:
            log(f"{image.ref}: image {local_ref} is up to date (content unchanged)")
        else:
            log(f"{image.ref}: building {local_ref} ({len(tar) // 1024} KiB context)")
            self._docker_build(image, tar, local_ref, log)
        self._push(local_ref, log)
        return Built(
            image.ref,
            local_ref,
            f"{self.registry.cluster_ref(image.ref)}:{tag}",
            cached,
            time.monotonic() - start,
        )

    def _exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise BuildError(f"dockerd: {exc}") from exc
        return True

    def _docker_build(self, image: ImageTarget, tar: bytes, ref: str, log: LogFn) -> None:
        if needs_buildkit(dockerfile_text(image)):
            if not self._buildx_looked:
                self._buildx, self._buildx_looked = find_buildx(), True
            if self._buildx is not None:
                self._buildkit_build(image, tar, ref, log, self._buildx)
                return
            log(f"{image.ref}: the Dockerfile needs BuildKit (RUN --mount); docker buildx is "
                "not installed, so the legacy builder runs it")  # fmt: skip
        self._legacy_build(image, tar, ref, log)

    def _buildkit_build(
        self, image: ImageTarget, tar: bytes, ref: str, log: LogFn, buildx: tuple[str, ...]
    ) -> None:
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if self._docker_host:
            env["DOCKER_HOST"] = self._docker_host
        proc = subprocess.run(
            buildkit_argv(image, ref, buildx), input=tar, capture_output=True, env=env, check=False
        )
        for line in proc.stderr.decode(errors="replace").splitlines():
            log(line)
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip()[-800:]
            raise BuildError(f"docker buildx build {image.ref} failed: {tail}")

    def _legacy_build(self, image: ImageTarget, tar: bytes, ref: str, log: LogFn) -> None:
        kwargs: dict[str, Any] = {
            "fileobj": io.BytesIO(tar),
            "custom_context": True,
            "dockerfile": GENERATED_DOCKERFILE,
            "tag": ref,
            "buildargs": dict(image.build_args) or None,
            "rm": True,
            "decode": True,
            "pull": image.pull,
            "forcerm": True,
        }
        if image.target:
            kwargs["target"] = image.target
        if image.network:
            kwargs["network_mode"] = image.network
        try:
            for chunk in self.client.api.build(**kwargs):
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise BuildError(f"docker build {image.ref} failed: {detail.strip()}")
                text = str(chunk.get("stream", "")).rstrip()
                if text:
                    log(text)
        except docker.errors.DockerException as exc:
            raise BuildError(f"docker build {image.ref} failed: {exc}") from exc
        for extra in image.extra_tag:
            repo, _, tag = (
                extra.rpartition(":") if ":" in extra.split("/")[-1] else (extra, "", "latest")
            )
            self.client.api.tag(ref, repo, tag)

    def _push(self, ref: str, log: LogFn) -> None:
        if not self.registry.host or ref in self._pushed:
            return
        repo, _, tag = ref.rpartition(":")
        log(f"pushing {ref}")
        try:
            for chunk in self.client.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise BuildError(f"push {ref} failed: {chunk['error']}")
        except docker.errors.DockerException as exc:
            raise BuildError(f"push {ref} failed: {exc}") from exc
        self._pushed.add(ref)

    def _custom(self, image: ImageTarget, log: LogFn, start: float) -> Built:
        tag = image.tag or f"tilt-build-{int(time.time())}"
        expected = f"{self.registry.push_ref(image.ref)}:{tag}"
        cmd = image.command
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        env = {
            **os.environ,
            **image.env,
            "EXPECTED_REF": expected,
            "EXPECTED_REGISTRY": self.registry.host,
            "EXPECTED_IMAGE": expected.rsplit(":", 1)[0].rsplit("/", 1)[-1],
            "EXPECTED_TAG": tag,
        }
        if self._docker_host:
            env["DOCKER_HOST"] = self._docker_host
        log(f"{image.ref}: custom_build with EXPECTED_REF={expected}")
        proc = subprocess.run(
            argv, cwd=image.dir or None, env=env, capture_output=True, text=True, check=False
        )
        for line in (proc.stdout + proc.stderr).splitlines():
            log(line)
        if proc.returncode != 0:
            raise BuildError(
                f"custom_build {image.ref}: command exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        if image.outputs_image_ref_to:
            with open(image.outputs_image_ref_to) as fh:
                expected = fh.read().strip()
        if not image.skips_local_docker and not self._exists(expected):
            raise BuildError(
                f"custom_build {image.ref}: the command did not produce {expected} "
                "in dockerd (use $EXPECTED_REF as the image name)"
            )
        if not image.disable_push and not image.skips_local_docker:
            self._push(expected, log)
        final_tag = expected.rsplit(":", 1)[-1]
        return Built(
            image.ref,
            expected,
            f"{self.registry.cluster_ref(image.ref)}:{final_tag}",
            False,
            time.monotonic() - start,
        )
