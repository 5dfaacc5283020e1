"""BuildKit is used for Dockerfiles that need it (through docker buildx; the SDK has none)."""

from __future__ import annotations

from flotilla.dev.plan.context import GENERATED_DOCKERFILE
from flotilla.dev.plan.model import ImageTarget
from flotilla.dev.runtime.build import buildkit_argv, needs_buildkit


def test_buildkit_only_dockerfiles_are_recognised() -> None:
    assert needs_buildkit("FROM python\nRUN --mount=type=cache,target=/root/.cache pip install x\n")
    assert needs_buildkit("# syntax=docker/dockerfile:1\nFROM scratch\n")
    assert not needs_buildkit("FROM python\nRUN pip install x  # --mount is not here\n")


def test_buildx_argv_reads_the_context_from_stdin() -> None:
    image = ImageTarget(
        "app", "/ctx", build_args={"B": "2", "A": "1"}, target="dev", network="host", pull=True
    )
    assert buildkit_argv(image, "reg/app:tilt-1") == [
        "docker", "buildx", "build", "--load", "-t", "reg/app:tilt-1",
        "-f", GENERATED_DOCKERFILE, "--build-arg", "A=1", "--build-arg", "B=2",
        "--target", "dev", "--network", "host", "--pull", "-",
    ]  # fmt: skip
