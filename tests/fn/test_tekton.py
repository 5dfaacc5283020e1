"""Against a running Tekton Pipelines v1.3.0 (``flotilla testenv up --tekton``), built from its Go
module: a TaskRun really runs on the real node, and the webhook admits what ``fn pipeline``
renders (defaulting and validation, not only the CRD schema)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client

from flotilla.core.kube import KubeError, apply_raw, get_raw, list_raw, wait_until
from flotilla.fn.deploy import invoke_service

from .test_cluster import _project, fn

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def tekton(test_cluster: Any, real_node: str) -> None:
    up = test_cluster.flotilla(
        "up", "--real-node", "--real-node-name", real_node, "--tekton", check=False
    )
    assert up.returncode == 0, up.stderr


def _apply(kube: Client, document: dict[str, Any]) -> None:
    plural = document["kind"].lower() + "s"  # Task, TaskRun, Pipeline: all namespaced
    apply_raw(kube, document, plural=plural, namespaced=True, field_manager="flotilla-tests")


def _succeeded(kube: Client, kind: str, plural: str, name: str, namespace: str) -> Any:
    stored = get_raw(
        kube, "tekton.dev/v1", kind, name, namespace=namespace, plural=plural, namespaced=True
    )
    conditions = (stored or {}).get("status", {}).get("conditions", [])
    done = [c for c in conditions if c["type"] == "Succeeded" and c["status"] != "Unknown"]
    return stored if done else None


def test_a_taskrun_runs_its_steps_and_reports_results(
    kube: Client, namespace: str, tekton: None
) -> None:
    name = f"hello-{uuid.uuid4().hex[:6]}"
    task_run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "params": [{"name": "who", "value": "flotilla"}],
            "taskSpec": {
                "params": [{"name": "who", "default": "world"}],
                "results": [{"name": "greeting"}],
                "steps": [
                    {  # script mode: Tekton's shell image is our busybox
                        "name": "greet",
                        "image": "flotilla.local/busybox:latest",
                        "script": "#!/bin/sh\nprintf 'hello %s' '$(params.who)' "
                        "> $(results.greeting.path)\n",
                    },
                    {  # a second step waits for the first (the entrypoint binary's ordering)
                        "name": "python",
                        "image": "flotilla.local/python:3.11",
                        "command": ["python3", "-c", "import sys; sys.exit(0)"],
                    },
                ],
            },
        },
    }
    _apply(kube, task_run)
    done = wait_until(
        lambda: _succeeded(kube, "TaskRun", "taskruns", name, namespace),
        timeout=180,
        interval=1.0,
        what=f"TaskRun {name} to finish",
    )
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["Succeeded"]["status"] == "True", conditions
    results = {r["name"]: r["value"] for r in done["status"]["results"]}
    assert results == {"greeting": "hello flotilla"}
    assert [s["name"] for s in done["status"]["steps"]] == ["greet", "python"]


def test_a_failing_step_fails_the_taskrun_and_skips_the_rest(
    kube: Client, namespace: str, tekton: None
) -> None:
    name = f"fails-{uuid.uuid4().hex[:6]}"
    steps = [
        {"name": "boom", "image": "flotilla.local/busybox:latest", "script": "exit 3"},
        {"name": "never", "image": "flotilla.local/busybox:latest", "script": "echo ran"},
    ]
    _apply(
        kube,
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"taskSpec": {"steps": steps}},
        },
    )
    done = wait_until(
        lambda: _succeeded(kube, "TaskRun", "taskruns", name, namespace),
        timeout=180,
        interval=1.0,
        what=f"TaskRun {name} to finish",
    )
    condition = next(c for c in done["status"]["conditions"] if c["type"] == "Succeeded")
    assert (condition["status"], condition["reason"]) == ("False", "Failed")
    exits = {s["name"]: s["terminated"] for s in done["status"]["steps"]}
    assert exits["boom"]["exitCode"] == 3
    assert exits["never"]["reason"] == "TaskRunCancelled" or exits["never"]["exitCode"] != 0


def test_fn_pipeline_is_admitted_by_tektons_webhook(
    kube: Client, namespace: str, tekton: None, tmp_path: Path
) -> None:
    project = _project(tmp_path, "python", "tk-real")
    out_file = tmp_path / "pipeline.yaml"
    fn("pipeline", "-C", str(project), "-n", namespace, "--write", str(out_file),
       "--git-url", "https://git.example/fns.git")  # fmt: skip
    for document in yaml.safe_load_all(out_file.read_text()):
        _apply(kube, document)
    stored = get_raw(kube, "tekton.dev/v1", "Pipeline", "tk-real", namespace=namespace,
                     plural="pipelines", namespaced=True)  # fmt: skip
    assert stored is not None
    assert [t["taskRef"] for t in stored["spec"]["tasks"]] == [
        {"kind": "Task", "name": f"tk-real-{step}"} for step in ("fetch", "build", "deploy")
    ]
    # Validation beyond the schema: a step with both script and command is refused by the
    # webhook (the CRD schema alone accepts it).
    bad = {
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": {"name": "tk-bad", "namespace": namespace},
        "spec": {"steps": [{"name": "s", "image": "x", "script": "true", "command": ["true"]}]},
    }
    with pytest.raises(KubeError) as info:
        _apply(kube, bad)
    message = str(info.value)
    assert "validation.webhook.pipeline.tekton.dev" in message, message
    assert "script cannot be used with command" in message, message


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """``git daemon`` on loopback (reached by the pipeline's host-network pods): its base
    directory and its URL."""
    root = tmp_path_factory.mktemp("git-daemon")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    argv = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
            "--listen=127.0.0.1", f"--port={port}", str(root)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool | None:
        with socket.socket() as sock:
            return True if sock.connect_ex(("127.0.0.1", port)) == 0 else None

    try:
        wait_until(listening, timeout=20, what="git daemon")
        yield root, f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "PATH": os.environ["PATH"], "HOME": str(cwd)}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _source_claim(kube: Client, namespace: str, root: Path, node: str) -> str:
    """A hostPath volume on the real node, bound to a claim for the pipeline's workspace (the
    test cluster has no provisioner in this namespace)."""
    path = root / "workspace"
    path.mkdir(mode=0o777)
    name = f"src-{namespace}"
    apply_raw(kube, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": name},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    }, field_manager="flotilla-tests")  # fmt: skip
    apply_raw(kube, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": name,
                 "resources": {"requests": {"storage": "1Gi"}}},
    }, field_manager="flotilla-tests")  # fmt: skip
    return name


def _post_receive_hook(bare: Path, url: str, secret: bytes) -> None:
    """What a user's post-receive hook does: post each pushed commit as ``{"after": NEWREV}``,
    signed as GitHub signs its webhooks (the listener's interceptor checks it)."""
    (bare / "hooks" / "webhook-secret").write_bytes(secret)
    hook = bare / "hooks" / "post-receive"
    hook.write_text(
        f"#!{sys.executable}\n"
        "import hashlib, hmac, json, pathlib, sys, urllib.request\n"
        "secret = (pathlib.Path(__file__).parent / 'webhook-secret').read_bytes()\n"
        "for line in sys.stdin:\n"
        "    old, new, ref = line.split()\n"
        "    body = json.dumps({'after': new, 'ref': ref}).encode()\n"
        "    mac = hmac.new(secret, body, hashlib.sha256).hexdigest()\n"
        f"    request = urllib.request.Request({url!r}, data=body, headers={{\n"
        "        'Content-Type': 'application/json', 'X-GitHub-Event': 'push',\n"
        "        'X-Hub-Signature-256': 'sha256=' + mac})\n"
        "    print(urllib.request.urlopen(request, timeout=20).status)\n"
    )
    hook.chmod(0o755)


def _listener_url(kube: Client, namespace: str, name: str) -> str:
    """The EventListener's Service by ClusterIP (kube-proxy routes it from the host too)."""

    def ready() -> str | None:
        listener = get_raw(
            kube, "triggers.tekton.dev/v1beta1", "EventListener", name,
            namespace=namespace, plural="eventlisteners", namespaced=True,
        )  # fmt: skip
        status = (listener or {}).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if conditions.get("Ready") != "True":
            return None
        service = get_raw(kube, "v1", "Service", f"el-{name}", namespace=namespace)
        return f"http://{service['spec']['clusterIP']}:8080" if service else None

    return wait_until(ready, timeout=180, interval=1.0, what=f"EventListener {name} Ready")


@dataclass(frozen=True)
class PipelineEnv:
    """What a pipeline run on the real node needs from the session's environment."""

    kube: Client
    namespace: str
    test_cluster: Any
    real_node: str
    git_server: tuple[Path, str]
    tmp_path: Path
    kubeconfig: Path


@pytest.fixture
def pipeline_env(
    kube: Client,
    namespace: str,
    tekton: None,
    test_cluster: Any,
    real_node: str,
    git_server: tuple[Path, str],
    tmp_path: Path,
    kubeconfig: Path,
) -> PipelineEnv:
    return PipelineEnv(kube, namespace, test_cluster, real_node, git_server, tmp_path, kubeconfig)


def _pipeline_project(env: PipelineEnv, runtime: str, name: str) -> tuple[Path, str, list[str]]:
    """A new function project pushed to the git server, the environment's registry, and the
    `fn pipeline --run` arguments that build it from there on the real node."""
    from flotilla.testenv.flotilla_image import flotilla_image_reference
    from flotilla.testenv.tekton import GIT_IMAGE, KANIKO_IMAGE

    kube, namespace, tmp_path = env.kube, env.namespace, env.tmp_path
    root, git_url = env.git_server
    project = _project(tmp_path, runtime, name, nodeSelector={"flotilla.dev/real-node": "true"})
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "first")
    _git(root, "clone", "-q", "--bare", str(project), f"{name}.git")
    registry = json.loads(env.test_cluster.flotilla("status", "-o", "json").stdout)["registry"]
    claim = _source_claim(kube, namespace, tmp_path, env.real_node)
    # The test registry listens on loopback only, so the pipeline's pods use the host network.
    template = tmp_path / "pod-template.yaml"
    template.write_text(
        yaml.safe_dump({"hostNetwork": True, "nodeSelector": {"flotilla.dev/real-node": "true"}})
    )
    args = [
        "pipeline", "-C", str(project), "-n", namespace, "--run", "--kubeconfig",
        str(env.kubeconfig),
        "--git-url", f"{git_url}/{name}.git", "--revision", "main",
        "--flotilla-image", flotilla_image_reference(), "--git-image", GIT_IMAGE,
        "--kaniko-image", KANIKO_IMAGE, "--image", f"{registry}/{name}:v1",
        f"--build-flag=--registry-map=flotilla.local={registry}",
        f"--build-flag=--insecure-registry={registry}",
        "--workspace-claim", claim, "--pod-template", str(template), "--timeout", "8m",
    ]  # fmt: skip
    return project, registry, args


def test_fn_pipeline_run_clones_builds_with_kaniko_and_deploys(pipeline_env: PipelineEnv) -> None:
    kube, namespace, root = pipeline_env.kube, pipeline_env.namespace, pipeline_env.git_server[0]
    project, registry, args = _pipeline_project(pipeline_env, "python", "tk-app")
    out = fn(*args, "--trigger")
    assert "succeeded" in out, out
    deployment = get_raw(kube, "apps/v1", "Deployment", "tk-app", namespace=namespace)
    assert deployment is not None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"{registry}/tk-app:v1@sha256:"), image
    status, _, body = invoke_service(kube, namespace, "tk-app", "/?name=v1")
    assert (status, json.loads(body)) == (200, {"message": "Hello, v1!"}), body
    # A git push starts the next run through the EventListener; the new code answers. An
    # unsigned post naming an old commit starts nothing.
    url = _listener_url(kube, namespace, "tk-app")
    first = _git(project, "rev-parse", "HEAD")
    forged = json.dumps({"after": first}).encode()
    request = urllib.request.Request(url, data=forged, headers={"X-GitHub-Event": "push"})
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=20).close()
    stored = get_raw(kube, "v1", "Secret", "tk-app-webhook", namespace=namespace)
    assert stored is not None
    _post_receive_hook(root / "tk-app.git", url, base64.b64decode(stored["data"]["secret"]))
    for path in (project / "func.py", project / "test_func.py"):
        path.write_text(path.read_text().replace("Hello,", "Hi,"))
    run = _push_and_wait(kube, namespace, project, root, "second", runs_before=0)
    condition = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert condition["status"] == "True", condition

    def answers_hi() -> bool | None:
        status, _, body = invoke_service(kube, namespace, "tk-app", "/?name=v2")
        return True if status == 200 and json.loads(body) == {"message": "Hi, v2!"} else None

    wait_until(answers_hi, timeout=60, interval=1.0, what="the pushed version to answer")
    # A push whose code fails its own tests stops at the test step: nothing is built or deployed.
    source = project / "func.py"
    source.write_text(source.read_text().replace("Hi,", "Hey,"))
    run = _push_and_wait(kube, namespace, project, root, "third", runs_before=1)
    condition = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert condition["status"] == "False", condition
    build_run = get_raw(
        kube, "tekton.dev/v1", "TaskRun", f"{run['metadata']['name']}-build",
        namespace=namespace, plural="taskruns", namespaced=True,
    )  # fmt: skip
    assert build_run is not None
    steps = {s["name"]: s["terminated"]["exitCode"] for s in build_run["status"]["steps"]}
    assert steps["context"] == 0 and steps["test"] != 0, steps
    status, _, body = invoke_service(kube, namespace, "tk-app", "/?name=v3")
    assert (status, json.loads(body)) == (200, {"message": "Hi, v3!"})


def test_a_node_function_is_tested_and_built_in_the_cluster_on_the_node_base_image(
    pipeline_env: PipelineEnv,
) -> None:
    """kaniko finds flotilla.local/node:20 in the environment's registry, and the test step runs
    `node --test` in it (before, the base was not pushed and the build could not start)."""
    kube, namespace = pipeline_env.kube, pipeline_env.namespace
    _, _, args = _pipeline_project(pipeline_env, "node", "tk-node")
    out = fn(*args)
    assert "succeeded" in out, out
    status, _, body = invoke_service(kube, namespace, "tk-node", "/?name=node")
    assert (status, json.loads(body)) == (200, {"message": "Hello, node!"}), body


def _push_and_wait(
    kube: Client, namespace: str, project: Path, root: Path, message: str, runs_before: int
) -> dict[str, Any]:
    """Commit and push; wait for the run the push starts and check it built that commit."""
    _git(project, "commit", "-q", "-am", message)
    pushed = _git(project, "rev-parse", "HEAD")
    _git(project, "push", "-q", str(root / "tk-app.git"), "main")

    def triggered() -> list[dict[str, Any]]:
        return list_raw(kube, "tekton.dev/v1", "PipelineRun", namespace=namespace,
                        plural="pipelineruns", namespaced=True,
                        labels={"triggers.tekton.dev/eventlistener": "tk-app"})  # fmt: skip

    def pushed_run_done() -> dict[str, Any] | None:
        for run in triggered():
            revision = {p["name"]: p["value"] for p in run["spec"]["params"]}["git-revision"]
            if revision == pushed and _condition_done(run):
                return run
        return None

    run = wait_until(pushed_run_done, timeout=480, interval=2.0, what=f"the run of {message}")
    assert len(triggered()) == runs_before + 1, [r["metadata"]["name"] for r in triggered()]
    return run


def _condition_done(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Succeeded" and c["status"] != "Unknown" for c in conditions)
