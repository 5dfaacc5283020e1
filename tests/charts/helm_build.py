"""Build the real helm v3 client once into a cache outside the repo, for the compatibility tests.

Flotilla never runs helm at runtime; the tests use it as the reference client. The binary lives in
``$XDG_CACHE_HOME/flotilla/tools/helm-<version>/helm`` so every clone on a machine shares it, and a
second call is a no-op.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HELM_VERSION = "v3.21.4"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"


class HelmBuildError(RuntimeError):
    """The helm build failed; the message says which step and why."""


def cache_root() -> Path:
    """Shared with the other Go-built tools, outside the repository."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flotilla" / "tools"


def helm_path(version: str = HELM_VERSION) -> Path:
    """Where the cached binary for ``version`` lives (it may not exist yet)."""
    return cache_root() / f"helm-{version}" / "helm"


def _reports_version(binary: Path, version: str) -> bool:
    try:
        out = subprocess.run(
            [str(binary), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def go_install(
    package: str, version: str, binary: str, target: Path, ldflags: str = "-s -w"
) -> None:
    """``go install package@version`` into a temporary GOBIN beside ``target``, then move the
    ``binary`` it makes to ``target``; errors name the command and what Go printed."""
    go = shutil.which("go")
    if go is None:
        raise HelmBuildError(f"cannot build {binary}: no `go` on PATH (need Go >= 1.24)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{binary}-build-", dir=target.parent) as tmp:
        env = dict(os.environ, GOBIN=tmp, GOTOOLCHAIN="local", CGO_ENABLED="0")
        cmd = [go, "install", "-trimpath", "-ldflags", ldflags, f"{package}@{version}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise HelmBuildError(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}); is the Go module proxy "
                f"reachable and Go new enough?\n{proc.stderr[-4000:]}"
            )
        built = Path(tmp) / binary
        if not built.is_file():
            raise HelmBuildError(f"go install succeeded but {built} is missing")
        os.replace(built, target)


def ensure_helm(version: str = HELM_VERSION) -> Path:
    """Return the helm binary, building it with ``go install`` only when it is not cached."""
    target = helm_path(version)
    if target.is_file() and _reports_version(target, version):
        return target
    ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version={version}"
    go_install(HELM_PACKAGE, version, "helm", target, ldflags)
    if not _reports_version(target, version):
        raise HelmBuildError(f"{target} was built but does not report version {version}")
    return target


if __name__ == "__main__":
    print(ensure_helm(sys.argv[1] if len(sys.argv) > 1 else HELM_VERSION))
