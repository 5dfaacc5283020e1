"""A Dockerfile that needs BuildKit (``RUN --mount``) builds for real through buildx and the
private dockerd 20.10's built-in BuildKit, as ``docker_build`` does in Tilt."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest

from flotilla.dev.plan.model import ImageTarget
from flotilla.dev.runtime.build import Builder, Registry, find_buildx
from tests.dev.buildx_build import ensure_buildx

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DOCKERFILE = """FROM flotilla.local/busybox:latest
RUN --mount=type=cache,target=/cache echo cached > /cache/x && cp /cache/x /from-cache
RUN --mount=type=bind,source=data.txt,target=/mnt/data.txt cp /mnt/data.txt /from-bind
"""


@pytest.fixture
def buildx_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The buildx that `make tools` builds (Debian 12 packages none), found as flotilla finds it."""
    binary = ensure_buildx()
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}")


def test_run_mount_builds_with_buildkit(dockerd: str, tmp_path: Path, buildx_on_path: None) -> None:
    found = find_buildx()
    assert found is not None and found[0].endswith("docker-buildx"), found
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "data.txt").write_text("bound\n")
    lines: list[str] = []
    builder = Builder(dockerd, Registry())
    built = builder.build(
        ImageTarget("bk-app", str(tmp_path), dockerfile=str(tmp_path / "Dockerfile")), lines.append
    )
    client = docker.DockerClient(base_url=dockerd)
    try:
        out = client.containers.run(
            built.local_ref, ["cat", "/from-cache", "/from-bind"], remove=True
        )
    finally:
        client.close()
    assert out.decode() == "cached\nbound\n"
    assert not any("legacy builder" in line for line in lines), lines
