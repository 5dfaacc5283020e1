"""End to end on the test cluster's real node with the session's dockerd and registry:
edit a file and see the pod serve it, fall_back_on rebuilds, a broken Dockerfile shows up in the
UI and in ``dev ci``'s exit code, ``dev down`` cleans up; compose services live-update too."""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lightkube import Client
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.core.kube import get_raw, list_raw
from flotilla.dev.runtime.engine import Engine, EngineConfig
from flotilla.dev.ui import create_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dev"
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def fetch(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
            return str(resp.read().decode().strip())
    except OSError:
        return ""


@pytest.fixture(scope="module")
def registry(real_node: str, dockerd: str, test_cluster: Any) -> str:
    status = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)
    assert status.get("registry"), status
    return str(status["registry"])


@pytest.fixture
def python_app(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    root = tmp_path / "python-app"
    shutil.copytree(EXAMPLES / "python-app", root)
    tf = root / "Tiltfile"
    tf.write_text(tf.read_text().replace("18080", str(port)))
    return root, port


@pytest.fixture
def env(
    kubeconfig: Path,
    namespace: str,
    registry: str,
    dockerd: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> dict[str, str]:
    monkeypatch.setenv("FLOTILLA_DEV_STATE", str(tmp_path / "state"))
    return {
        "kubeconfig": str(kubeconfig),
        "namespace": namespace,
        "registry": registry,
        "docker_host": dockerd,
    }


def cli(env: dict[str, str], command: str, *args: str) -> Any:
    """``flotilla dev COMMAND`` against the test cluster (options first, then ``args``)."""
    return CliRunner().invoke(
        app,
        [
            "dev",
            command,
            "--kubeconfig",
            env["kubeconfig"],
            "-n",
            env["namespace"],
            "--docker-host",
            env["docker_host"],
            *args,
        ],
    )


@pytest.fixture
def engine(python_app: tuple[Path, int], env: dict[str, str]) -> Iterator[Engine]:
    root, _ = python_app
    eng = Engine(
        EngineConfig(
            tiltfile=root / "Tiltfile",
            kubeconfig=Path(env["kubeconfig"]),
            namespace=env["namespace"],
            registry=env["registry"],
            docker_host=env["docker_host"],
            debounce_ms=30,
        )
    )
    eng.load()
    eng.start()
    try:
        yield eng
    finally:
        eng.stop()


def pods(kube: Client, namespace: str) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in list_raw(kube, "v1", "Pod", namespace=namespace, labels={"app": "hello-py"})
        if not p["metadata"].get("deletionTimestamp")
    )


def _rolled_out(kube: Client, namespace: str) -> bool:
    from flotilla.fn.deploy import deployment_ready  # the same readiness rule fn deploy uses

    deployment = get_raw(kube, "apps/v1", "Deployment", "hello-py", namespace=namespace)
    return deployment_ready(deployment) and len(pods(kube, namespace)) == 1


def test_python_app_edit_fallback_and_broken_build(
    engine: Engine,
    python_app: tuple[Path, int],
    kube: Client,
    namespace: str,
) -> None:
    root, port = python_app
    st = engine.states["hello-py"]
    wait_for(lambda: fetch(port) == "hello from flotilla dev v1", what="v1 served")
    # v1 can be served by a pod of a rollout that is still being replaced: take the pod once
    # the Deployment has settled, so "same pod" below means the live update kept it.
    wait_for(lambda: _rolled_out(kube, namespace), what="the first rollout to finish")
    (pod,) = pods(kube, namespace)
    deploys = sum(1 for r in st.history if r.action != "live_update")

    # 1. A source edit is synced into the running container and the process restarts.
    server = root / "app" / "server.py"
    server.write_text(server.read_text().replace("dev v1", "dev v2"))
    wait_for(lambda: fetch(port) == "hello from flotilla dev v2", what="v2 served")
    assert st.last is not None and st.last.action == "live_update"
    assert sum(1 for r in st.history if r.action != "live_update") == deploys, st.history
    assert pods(kube, namespace) == [pod]  # same pod: no rebuild, no redeploy
    # The pod's own output is streamed into the resource's log, restarts included.
    wait_for(
        lambda: any("serving 'hello from flotilla dev v2'" in line for line in st.log),
        timeout=15,
        what="pod log line",
    )

    # 2. A file under fall_back_on forces a rebuild and a new pod.
    (root / "requirements.txt").write_text("# pinned nothing, again\n")
    server.write_text(server.read_text().replace("dev v2", "dev v3"))
    wait_for(
        lambda: st.last is not None and st.last.action == "rebuild" and st.status == "ready",
        what="rebuild",
    )
    wait_for(lambda: fetch(port) == "hello from flotilla dev v3", what="v3 served")
    new_pods = wait_for(
        lambda: (p := pods(kube, namespace)) and pod not in p and p, what="old pod gone"
    )
    assert len(new_pods) == 1

    # 3. A manifest edit reloads the Tiltfile and re-applies (the image is cached: no build).
    manifest = root / "k8s.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "ports: [{containerPort: 8000}]",
            "ports: [{containerPort: 8000}]\n        env: [{name: GREETING, value: hi}]",
        )
    )
    wait_for(
        lambda: st.last is not None and st.last.action == "reapply" and st.status == "ready",
        what="re-apply",
    )
    deploy = get_raw(kube, "apps/v1", "Deployment", "hello-py", namespace=namespace)
    assert deploy is not None
    assert deploy["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "GREETING", "value": "hi"}
    ]
    assert any("is up to date (content unchanged)" in line for line in st.log)

    # 4. A broken Dockerfile is an error on the resource, in the UI's API with the build error.
    dockerfile = root / "Dockerfile"
    good = dockerfile.read_text()
    dockerfile.write_text(good + "RUN echo broken-on-purpose && exit 7\n")
    wait_for(lambda: st.status == "error", what="build error")
    with TestClient(create_app(engine)) as client:
        res = {r["name"]: r for r in client.get("/api/resources").json()["resources"]}
        assert res["hello-py"]["status"] == "error"
        assert (
            "exit 7" in res["hello-py"]["error"] or "non-zero code: 7" in res["hello-py"]["error"]
        )
        logs = client.get("/api/logs/hello-py").json()["lines"]
        assert any("broken-on-purpose" in line for line in logs)
    assert fetch(port) == "hello from flotilla dev v3"  # the old pod keeps serving
    dockerfile.write_text(good)
    wait_for(lambda: st.status == "ready", what="recovery")


def test_ci_exit_codes_and_down(
    python_app: tuple[Path, int], env: dict[str, str], kube: Client, namespace: str
) -> None:
    root, _ = python_app
    tf = str(root / "Tiltfile")
    (root / "Dockerfile").write_text("FROM flotilla.local/python:3.11\nRUN exit 9\n")
    bad = cli(env, "ci", "-f", tf, "--timeout", "120", "-q", "--", "--registry", env["registry"])
    assert bad.exit_code == 1
    assert "resource hello-py failed" in bad.stderr and "exit" in bad.stderr
    shutil.copy(EXAMPLES / "python-app" / "Dockerfile", root / "Dockerfile")
    ok = cli(env, "ci", "-f", tf, "--timeout", "120", "-q", "--", "--registry", env["registry"])
    assert ok.exit_code == 0, ok.stderr
    assert get_raw(kube, "apps/v1", "Deployment", "hello-py", namespace=namespace) is not None
    down = cli(env, "down", "-f", tf, "--", "--registry", env["registry"])
    assert down.exit_code == 0, down.stderr
    assert "deleted 2 object(s)" in down.stdout
    assert get_raw(kube, "apps/v1", "Deployment", "hello-py", namespace=namespace) is None


@pytest.mark.parametrize("example", ["go-style", "custom-build"])
def test_examples_pass_ci(
    example: str, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / example
    shutil.copytree(EXAMPLES / example, root)
    monkeypatch.setenv("FLOTILLA_DEV_REGISTRY", env["registry"])
    monkeypatch.setenv("DOCKER_HOST", env["docker_host"])
    result = cli(env, "ci", "-f", str(root / "Tiltfile"), "--timeout", "120", "-q")
    assert result.exit_code == 0, result.stderr


def test_compose_live_update(dockerd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DEV_STATE", str(tmp_path / "state"))
    port = free_port()
    root = tmp_path / "compose"
    shutil.copytree(EXAMPLES / "compose", root)
    project = f"dev{port}"
    (root / "Tiltfile").write_text(
        (root / "Tiltfile")
        .read_text()
        .replace(
            "docker_compose('docker-compose.yml')",
            f"docker_compose('docker-compose.yml', project_name='{project}')",
        )
    )
    compose = root / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("18090", str(port)))
    eng = Engine(EngineConfig(tiltfile=root / "Tiltfile", docker_host=dockerd, debounce_ms=30))
    eng.load()
    eng.start()
    try:
        wait_for(lambda: fetch(port) == "compose v1", what="compose v1")
        (root / "web" / "index.html").write_text("compose v2\n")
        wait_for(lambda: fetch(port) == "compose v2", what="compose v2")
        last = eng.states["web"].last
        assert last is not None and last.action == "live_update"
        eng.record()
    finally:
        eng.stop()
    down = CliRunner().invoke(
        app, ["dev", "down", "-f", str(root / "Tiltfile"), "--docker-host", dockerd]
    )
    assert down.exit_code == 0, down.stderr
    assert "removed 1 compose container(s)" in down.stdout
    assert fetch(port) == ""


def test_compose_network_once_container_name_and_down(
    dockerd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two services start together on one network; container_name is honoured; down removes
    the containers and the network."""
    monkeypatch.setenv("FLOTILLA_DEV_STATE", str(tmp_path / "state"))
    port = free_port()
    root = tmp_path / "compose2"
    shutil.copytree(EXAMPLES / "compose", root)
    project = f"net{port}"
    (root / "docker-compose.yml").write_text(
        "services:\n"
        "  web:\n"
        "    image: flotilla.local/compose-web\n"
        "    container_name: flotilla-named-web-" + str(port) + "\n"
        '    command: ["busybox", "httpd", "-f", "-p", "8000", "-h", "/www"]\n'
        f'    ports: ["{port}:8000"]\n'
        "  side:\n"
        "    image: flotilla.local/compose-web\n"
        '    command: ["sh", "-c", "wget -qO- http://web:8000/; sleep 3600"]\n'
    )
    (root / "Tiltfile").write_text(
        "docker_build('flotilla.local/compose-web', 'web')\n"
        f"docker_compose('docker-compose.yml', project_name='{project}')\n"
    )
    eng = Engine(EngineConfig(tiltfile=root / "Tiltfile", docker_host=dockerd, debounce_ms=30))
    eng.load()
    eng.start()
    import docker

    client = docker.DockerClient(base_url=dockerd)
    try:
        wait_for(lambda: fetch(port) != "", what="web")
        wait_for(lambda: eng.states["side"].status == "ready", what="side")
        names = [n.name for n in client.networks.list() if n.name == f"{project}_default"]
        assert names == [f"{project}_default"]
        assert client.containers.get(f"flotilla-named-web-{port}").status == "running"
        eng.record()
    finally:
        eng.stop()
    down = CliRunner().invoke(
        app, ["dev", "down", "-f", str(root / "Tiltfile"), "--docker-host", dockerd]
    )
    assert down.exit_code == 0, down.stderr
    assert "removed 2 compose container(s)" in down.stdout
    assert not [n for n in client.networks.list() if n.name == f"{project}_default"]
    client.close()
