"""Against real parts: dockerd builds, the API server validating Knative and Tekton objects, and
the whole loop on the real node (build → push → deploy → invoke → metrics → exported span)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.apps_v1 import Deployment
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.core.kube import KubeError, apply_raw, get_raw, list_raw, wait_until
from flotilla.fn.deploy import apply_objects, invoke_service
from flotilla.fn.image import BASE_IMAGES, build_context, build_image, function_files
from flotilla.fn.manifests import knative_service
from flotilla.fn.model import Runtime, load_spec
from flotilla.fn.pipeline import pipeline_objects

from .support import Collector, parse_metrics, sample, upstream_crd_files

pytestmark = [pytest.mark.cluster]
runner = CliRunner()


def fn(*args: str) -> str:
    result = runner.invoke(app, ["fn", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _project(tmp_path: Path, runtime: str, name: str, **deploy: Any) -> Path:
    project = tmp_path / name
    fn("init", name, "--runtime", runtime, "--dir", str(project))
    spec = yaml.safe_load((project / "function.yaml").read_text())
    spec["deploy"].update(deploy)
    (project / "function.yaml").write_text(yaml.safe_dump(spec))
    return project


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["python", "node"])
def test_a_code_change_rebuilds_only_the_top_layer(
    tmp_path: Path, dockerd: str, runtime: str
) -> None:
    import docker

    project = _project(tmp_path, runtime, f"layers-{runtime}")
    spec = load_spec((project / "function.yaml").read_text())
    tag = f"flotilla.local/layers-{runtime}:test"
    first = build_image(build_context(spec, function_files(project)), tag, docker_host=dockerd)
    source = project / ("func.py" if runtime == "python" else "index.js")
    source.write_text(source.read_text().replace("Hello,", "Hi,"))
    second = build_image(build_context(spec, function_files(project)), tag, docker_host=dockerd)
    assert first.image_id != second.image_id
    assert second.cached_steps == second.steps - 2, second.log  # all but FROM and the code COPY
    client = docker.DockerClient(base_url=dockerd)
    try:
        layers = [
            client.images.get(i).attrs["RootFS"]["Layers"]
            for i in (first.image_id, second.image_id)
        ]
        base = client.images.get(BASE_IMAGES[Runtime(runtime)]).attrs
    finally:
        client.close()
    assert layers[0][:-1] == layers[1][:-1] and layers[0][-1] != layers[1][-1]
    added = second_size = 0
    client = docker.DockerClient(base_url=dockerd)
    try:
        second_size = client.images.get(second.image_id).attrs["Size"]
    finally:
        client.close()
    added = second_size - base["Size"]
    # Python: the runtime's distributions, uvloop's 14 MB extension the largest; Node: one file.
    assert added < (30 if runtime == "python" else 1) * 1024 * 1024, added


def _crd_files() -> list[dict[str, Any]]:
    docs = []
    for path in upstream_crd_files():
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def crds(kube: Client) -> None:
    for crd in _crd_files():
        apply_raw(kube, crd, field_manager="flotilla-fn-tests")

    def established() -> bool | None:
        for crd in _crd_files():
            got = get_raw(
                kube, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"]
            )
            conditions = {
                c["type"]: c["status"] for c in (got or {}).get("status", {}).get("conditions", [])
            }
            if conditions.get("Established") != "True":
                return None
        return True

    wait_until(established, timeout=60, what="Knative and Tekton CRDs established")


def test_knative_service_is_accepted_by_the_owners_schema(
    kube: Client, namespace: str, crds: None, tmp_path: Path, kubeconfig: Path
) -> None:
    project = _project(tmp_path, "python", "kn-hello")
    spec_file = project / "function.yaml"
    doc = yaml.safe_load(spec_file.read_text())
    doc.update(timeout=30, concurrency=4, envFrom=[{"configMap": "settings"}])
    doc["env"]["DB_PASSWORD"] = {"secret": "db", "key": "password"}
    doc["volumes"] = [
        {"path": "/etc/creds", "secret": "db"},
        {"path": "/etc/conf", "configMap": "settings"},
        {"path": "/data", "pvc": "data-claim"},
        {"path": "/scratch", "emptyDir": {}},
    ]
    spec_file.write_text(yaml.safe_dump(doc))
    out = fn(
        "deploy",
        "-C",
        str(project),
        "--target",
        "knative",
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--image",
        "reg.example/kn-hello:v1",
        "--no-wait",  # nothing runs it: only Knative's CRDs are here, or its tag is unresolvable
    )
    assert f"applied Service/kn-hello in {namespace}" in out
    stored = get_raw(
        kube,
        "serving.knative.dev/v1",
        "Service",
        "kn-hello",
        namespace=namespace,
        plural="services",
        namespaced=True,
    )
    assert stored is not None
    annotations = stored["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/max-scale"] == "10"
    revision = stored["spec"]["template"]["spec"]
    assert (revision["containerConcurrency"], revision["timeoutSeconds"]) == (4, 30)
    assert len(revision["volumes"]) == 4 and revision["containers"][0]["envFrom"]
    listed = fn("list", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert any(line.split()[1:3] == ["kn-hello", "knative"] for line in listed.splitlines())
    gone = fn("delete", "--name", "kn-hello", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert "Service.serving.knative.dev/kn-hello" in gone
    assert "kn-hello" not in fn("list", "-n", namespace, "--kubeconfig", str(kubeconfig))
    # The schema really is enforced: a malformed object is refused by the API server.
    bad = knative_service(load_spec((project / "function.yaml").read_text()), "i", namespace)
    bad["metadata"]["name"] = "kn-bad"
    del bad["spec"]["template"]["spec"]["containers"]  # required by Knative's schema
    with pytest.raises(KubeError) as info:
        apply_objects(kube, [bad])
    assert info.value.status == 422


def test_tekton_pipeline_and_tasks_are_accepted(
    kube: Client, namespace: str, crds: None, tmp_path: Path
) -> None:
    project = _project(tmp_path, "node", "tk-hello")
    out_file = tmp_path / "pipeline.yaml"
    fn(
        "pipeline",
        "-C",
        str(project),
        "-n",
        namespace,
        "--write",
        str(out_file),
        "--git-url",
        "https://git.example/fns.git",
    )
    objects = list(yaml.safe_load_all(out_file.read_text()))
    assert apply_objects(kube, objects) == [
        "Task/tk-hello-fetch",
        "Task/tk-hello-build",
        "Task/tk-hello-deploy",
        "Pipeline/tk-hello",
        "ServiceAccount/tk-hello-deployer",
        "Role/tk-hello-deployer",
        "RoleBinding/tk-hello-deployer",
    ]
    stored = get_raw(
        kube,
        "tekton.dev/v1",
        "Pipeline",
        "tk-hello",
        namespace=namespace,
        plural="pipelines",
        namespaced=True,
    )
    assert stored is not None
    assert [t["name"] for t in stored["spec"]["tasks"]] == ["fetch", "build", "deploy"]
    bad = pipeline_objects(load_spec((project / "function.yaml").read_text()), namespace)[0]
    bad["metadata"]["name"] = "tk-bad"
    bad["spec"]["params"] = [{"description": "a param without the required name"}]
    with pytest.raises(KubeError) as info:
        apply_objects(kube, [bad])
    assert info.value.status == 422


@pytest.fixture(scope="module")
def pod_collector(real_node: str, test_cluster: Any) -> Iterator[Collector]:
    """An OTLP collector the real node's pods can reach: on the node's own address, which exists
    as soon as the node is up (the pod bridge's gateway only appears with the first pod)."""
    status = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)
    collector = Collector(status["real_node_ip"])
    yield collector
    collector.close()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["python", "node"])
def test_end_to_end_on_the_real_node(
    runtime: str,
    tmp_path: Path,
    kube: Client,
    namespace: str,
    kubeconfig: Path,
    real_node: str,
    dockerd: str,
    test_cluster: Any,
    pod_collector: Collector,
) -> None:
    registry = json.loads(test_cluster.flotilla("status", "-o", "json").stdout)["registry"]
    name = f"e2e-{runtime}"
    project = _project(tmp_path, runtime, name, nodeSelector={"flotilla.dev/real-node": "true"})
    spec = yaml.safe_load((project / "function.yaml").read_text())
    spec["env"] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": pod_collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    (project / "function.yaml").write_text(yaml.safe_dump(spec))
    tag = f"flotilla.local/{name}:{uuid.uuid4().hex[:8]}"
    built = json.loads(
        fn(
            "build",
            "-C",
            str(project),
            "--tag",
            tag,
            "--push",
            registry,
            "--docker-host",
            dockerd,
            "-o",
            "json",
        )
    )
    assert built["pushed"].startswith(f"{registry}/{name}@sha256:")
    started = time.monotonic()
    out = fn(
        "deploy",
        "-C",
        str(project),
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--image",
        built["pushed"],
        "--timeout",
        "120",
    )
    assert f"{name} ready in" in out, out
    deploy_seconds = time.monotonic() - started

    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    status, headers, body = invoke_service(
        kube, namespace, name, "/?name=node", headers={"traceparent": f"00-{trace_id}-{parent}-01"}
    )
    assert (status, json.loads(body)) == (200, {"message": "Hello, node!"})
    assert headers["traceparent"].split("-")[1] == trace_id
    out = fn(
        "invoke",
        "/metrics",
        "-C",
        str(project),
        "--cluster",
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
    )
    metrics = parse_metrics(out)
    assert sample(metrics, "faas_invocations_total", faas_name=name) >= 1
    assert sample(metrics, "faas_coldstarts_total", faas_name=name) == 1
    (span,) = pod_collector.wait_for(trace_id, timeout=30)
    assert span["parentSpanId"] == parent
    assert span["resource"]["faas.name"] == {"stringValue": name}
    instance = span["resource"]["faas.instance"]["stringValue"]
    assert instance.startswith(f"{name}-")  # the pod's name
    print(f"{runtime}: deploy+ready {deploy_seconds:.1f}s")
    _list_logs_follow_and_delete(kube, project, name, namespace, kubeconfig)


def _list_logs_follow_and_delete(
    kube: Client, project: Path, name: str, namespace: str, kubeconfig: Path
) -> None:
    """fn list/logs/delete on the deployed function; logs -f picks up a pod that starts later."""
    common = ["-C", str(project), "-n", namespace, "--kubeconfig", str(kubeconfig)]
    listed = fn("list", "-n", namespace, "--kubeconfig", str(kubeconfig))
    assert name in listed and "kubernetes" in listed, listed
    (first_pod,) = {line.split()[0] for line in fn("logs", *common).splitlines()}
    follower = subprocess.Popen(
        [sys.executable, "-m", "flotilla", "fn", "logs", "-f", "--tail", "5", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [seen.put(line) for line in follower.stdout or []], daemon=True
    )
    reader.start()

    def ready_line_from(pods: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = seen.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.split(" ", 1)[0] in pods and " ready in " in line:
                return line
        raise AssertionError(f"no ready line from {pods} in {timeout}s")

    try:
        ready_line_from({first_pod}, 30)  # the tail of the pod that was there
        kube.patch(Deployment, name, {"spec": {"replicas": 2}}, namespace=namespace)
        line = ready_line_from(_pods(kube, name, namespace, 2) - {first_pod}, 90)
        assert line.startswith(f"{name}-"), line
    finally:
        follower.send_signal(signal.SIGTERM)
        code = follower.wait(10)
        reader.join(10)  # the pipe reaches its end once the process is gone
        assert follower.stdout is not None and follower.stderr is not None
        follower.stdout.close()
        errors = follower.stderr.read()
        follower.stderr.close()
        assert code == 0, errors
    fn("delete", *common)
    assert name not in fn("list", "-n", namespace, "--kubeconfig", str(kubeconfig))


def _pods(kube: Client, name: str, namespace: str, count: int) -> set[str]:
    """The names of the function's pods, once there are ``count`` of them."""

    def enough() -> set[str] | None:
        labels = {"flotilla.dev/function": name}
        pods = list_raw(kube, "v1", "Pod", namespace=namespace, labels=labels)
        names = {str(p["metadata"]["name"]) for p in pods}
        return names if len(names) >= count else None

    return wait_until(enough, timeout=60, what=f"{count} pods of {name}")


def test_deploy_waits_for_the_new_generation_and_explains_a_stuck_rollout(
    kube: Client, namespace: str, kubeconfig: Path, tmp_path: Path
) -> None:
    # kwok's nodes report pods ready without running them: this checks the apply + wait path.
    project = _project(
        tmp_path, "python", "waiter", nodeSelector={"kubernetes.io/hostname": "node-1"}
    )
    common = [
        "-C",
        str(project),
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--image",
        "flotilla.local/waiter:v1",
    ]
    assert "waiter ready in" in fn("deploy", *common, "--timeout", "60")
    out = fn("deploy", *common[:-1], "flotilla.local/waiter:v2", "--timeout", "60")
    assert "waiter ready in" in out
    dep = get_raw(kube, "apps/v1", "Deployment", "waiter", namespace=namespace)
    assert dep is not None
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "flotilla.local/waiter:v2"
    fields = {m["manager"] for m in dep["metadata"]["managedFields"]}
    assert "flotilla-fn" in fields  # server-side apply, our field manager

    stuck = _project(tmp_path, "python", "stuck", nodeSelector={"no-such": "node"})
    result = runner.invoke(
        app,
        [
            "fn",
            "deploy",
            "-C",
            str(stuck),
            "-n",
            namespace,
            "--kubeconfig",
            str(kubeconfig),
            "--timeout",
            "4",
        ],
    )
    assert result.exit_code == 1
    assert "timed out" in result.output and "unschedulable" in result.output
