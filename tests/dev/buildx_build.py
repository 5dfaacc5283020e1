"""Build docker buildx once into a cache outside the repo, so the dev loop's BuildKit path runs.

Debian 12 packages dockerd 20.10 (BuildKit built in) but not the buildx plugin that drives it,
and the docker SDK speaks only the legacy builder. The binary is installed as
``$XDG_CACHE_HOME/flotilla/tools/buildx-<version>/docker-buildx``, the name flotilla looks for on
PATH; a second call is a no-op.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.charts.helm_build import cache_root, go_install

BUILDX_VERSION = "v0.11.2"  # the Go proxy serves it; its API level suits dockerd 20.10
BUILDX_PACKAGE = "github.com/docker/buildx/cmd/buildx"


def buildx_path(version: str = BUILDX_VERSION) -> Path:
    return cache_root() / f"buildx-{version}" / "docker-buildx"


def _reports_version(binary: Path, version: str) -> bool:
    try:
        out = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return False
    return out.returncode == 0 and version in out.stdout


def ensure_buildx(version: str = BUILDX_VERSION) -> Path:
    """Return the buildx binary, building it with ``go install`` only when it is not cached."""
    target = buildx_path(version)
    if target.is_file() and _reports_version(target, version):
        return target
    ldflags = f"-s -w -X github.com/docker/buildx/version.Version={version}"
    go_install(BUILDX_PACKAGE, version, "buildx", target, ldflags)
    if not _reports_version(target, version):
        raise RuntimeError(f"{target} was built but does not report version {version}")
    return target


if __name__ == "__main__":
    print(ensure_buildx(sys.argv[1] if len(sys.argv) > 1 else BUILDX_VERSION))
