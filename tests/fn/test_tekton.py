"""Against a running Tekton Pipelines v1.3.0 (``flotilla testenv up --tekton``), built from its Go
module: a TaskRun really runs on the real node, and the webhook admits what ``fn pipeline``
renders (defaulting and validation, not only the CRD schema)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client

from flotilla.core.kube import KubeError, apply_raw, get_raw, wait_until

from .test_cluster import _project, fn

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def tekton(test_cluster: Any, real_node: str) -> None:
    up = test_cluster.flotilla("up", "--real-node", "--real-node-name", real_node, "--tekton")
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
