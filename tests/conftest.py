"""Shared fixtures: the real control plane, started once per test session through the CLI.

Cluster-tier tests are marked ``cluster``. They are never skipped: when the binaries cannot be
built or the environment cannot start, the fixture fails with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from flotilla.core.kube import client_from_kubeconfig, wait_until
from flotilla.testenv.build import BuildSpec, is_built, run_build

FLOTILLA = [sys.executable, "-m", "flotilla"]


def pytest_configure(config: pytest.Config) -> None:
    """Put the helm that tests/charts/helm_build.py builds on PATH before any test module loads.

    Tests that render charts decide at import whether helm exists; building it here (once per
    machine, cached) means a fresh machine skips nothing.
    """
    path = Path(__file__).parent / "charts" / "helm_build.py"
    spec = importlib.util.spec_from_file_location("flotilla_tests_helm_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    helm: Path = module.ensure_helm()
    os.environ["PATH"] = f"{helm.parent}{os.pathsep}{os.environ.get('PATH', '')}"


TEST_NODES = 3


@dataclass(frozen=True)
class TestCluster:
    """A running environment: where its state is and how to reach it."""

    __test__ = False

    state_dir: Path
    kubeconfig: Path
    status: dict[str, object]

    def flotilla(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``flotilla testenv`` command against this environment."""
        return subprocess.run(
            [*FLOTILLA, "testenv", *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )


@pytest.fixture(scope="session")
def test_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    spec = BuildSpec()
    if not is_built(spec):
        # `make test` builds first; a bare `pytest` builds here, failing loudly if it cannot.
        run_build(spec)
    state_dir = Path(os.environ.get("FLOTILLA_TEST_STATE_DIR") or tmp_path_factory.mktemp("kube"))
    up = subprocess.run(
        [*FLOTILLA, "testenv", "up", "--nodes", str(TEST_NODES), "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if up.returncode != 0:
        pytest.fail(f"flotilla testenv up failed:\n{up.stderr}\n{up.stdout}", pytrace=False)
    cluster = TestCluster(state_dir, Path(up.stdout.strip().splitlines()[-1]), {})
    status = json.loads(cluster.flotilla("status", "-o", "json").stdout)
    cluster = TestCluster(state_dir, cluster.kubeconfig, status)
    try:
        yield cluster
    finally:
        cluster.flotilla("down", check=False)


REAL_NODE = "real-node"


@pytest.fixture(scope="session")
def real_node(test_cluster: TestCluster) -> str:
    """Add a real node (kubelet + containerd) to the session's cluster; returns its name.

    Pods meant for it select ``flotilla.dev/real-node: "true"``; the kwok nodes stay as they are.
    """
    up = test_cluster.flotilla("up", "--real-node", "--real-node-name", REAL_NODE, check=False)
    if up.returncode != 0:
        pytest.fail(f"flotilla testenv up --real-node failed:\n{up.stderr}", pytrace=False)
    return REAL_NODE


@pytest.fixture(scope="session")
def real_nodes(test_cluster: TestCluster) -> tuple[str, str]:
    """Two real nodes in the session's cluster (``real-node`` and ``real-node-2``).

    Tests that use the second one cordon it when they are done (``real_node`` tests expect
    their pods on ``real-node``); the environment's ``down`` stops it with the rest.
    """
    up = test_cluster.flotilla(
        "up", "--real-nodes", "2", "--real-node-name", REAL_NODE, check=False
    )
    if up.returncode != 0:
        pytest.fail(f"flotilla testenv up --real-nodes 2 failed:\n{up.stderr}", pytrace=False)
    return REAL_NODE, f"{REAL_NODE}-2"


@pytest.fixture(scope="session")
def dockerd(test_cluster: TestCluster) -> str:
    """A private dockerd of the session's environment; returns its DOCKER_HOST url.

    Its image store has flotilla.local/python:3.11, flotilla.local/busybox:latest and
    flotilla.local/node:20. Push to the registry in ``test_cluster.status()["registry"]`` to run
    what it builds on the real node.
    """
    up = test_cluster.flotilla("up", "--docker", check=False)
    if up.returncode != 0:
        pytest.fail(f"flotilla testenv up --docker failed:\n{up.stderr}", pytrace=False)
    host = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["docker_host"]
    assert isinstance(host, str)
    return host


@pytest.fixture(scope="session")
def kubeconfig(test_cluster: TestCluster) -> Path:
    return test_cluster.kubeconfig


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Iterator[Client]:
    with client_from_kubeconfig(kubeconfig) as client:
        yield client


@pytest.fixture
def namespace(kube: Client) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(Namespace(metadata=ObjectMeta(name=name, labels={"flotilla.dev/test": "true"})))
    wait_until(
        lambda: True if _has_default_sa(kube, name) else None,
        timeout=30,
        what=f"default service account in {name}",
    )
    yield name
    kube.delete(Namespace, name)


def _has_default_sa(kube: Client, namespace: str) -> bool:
    return any(
        sa.metadata is not None and sa.metadata.name == "default"
        for sa in kube.list(ServiceAccount, namespace=namespace)
    )


def loopback_registry(root: Path, config: str = "") -> Iterator[str]:
    """Debian's docker-registry (the testenv's) on a free loopback port, ``config`` appended to its
    configuration (an ``auth:`` section, say); yields ``host:port`` once it answers HTTP."""
    from flotilla.testenv.realnode import RegistryLayout, registry_component, registry_config

    layout = RegistryLayout(root)
    layout.storage.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    layout.config.write_text(registry_config(layout, port) + config)
    argv = registry_component(layout, "docker-registry").argv
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answering() -> bool | None:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited with {process.returncode}", pytrace=False)
        try:
            httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2)  # 200, or 401 with auth
            return True
        except httpx.TransportError:
            return None

    try:
        wait_until(answering, timeout=30, what="the loopback registry")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def oci_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private OCI registry on loopback: ``host:port``.

    It needs no cluster and no real node, so charts and operators tests can push and pull OCI
    artifacts beside any other environment.
    """
    yield from loopback_registry(tmp_path_factory.mktemp("oci-registry"))
