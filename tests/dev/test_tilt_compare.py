"""The judge of ``bench/dev_tilt_compare.py``: Tilt's load result and our render reduce to the
same facts when they agree, and a real difference is named. The Tilt side here is JSON shaped as
``tilt alpha tiltfile-result`` prints it (v0.34.0), written for this test.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from flotilla.dev.plan.render import planned_refs, render
from flotilla.dev.plan.resources import assemble
from flotilla.dev.tiltfile.evaluator import evaluate


@pytest.fixture(scope="module")
def judge() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "dev_tilt_compare.py"
    spec = importlib.util.spec_from_file_location("dev_tilt_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev_tilt_compare"] = module
    spec.loader.exec_module(module)
    return module


TILTFILE = """
docker_build('r.io/web', '.', build_args={'A': '1'},
             live_update=[sync('./src', '/app/src'), run('make', trigger=['./src/deps.txt'])])
k8s_yaml('web.yaml')
k8s_resource('web', port_forwards=['8080:80', 9000], labels=['front'], resource_deps=['setup'])
local_resource('setup', '''
  echo ready
''', deps=['src'])
"""
WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: r.io/web}]}
"""
DOCKERFILE = "FROM busybox\nCOPY src /app/src\n"


def tilt_json(root: Path) -> dict[str, Any]:
    base = str(root)
    return {
        "Manifests": [
            {
                "Name": "web",
                "ImageTargets": [
                    {
                        "selector": "r.io/web",
                        "LiveUpdateSpec": {
                            "basePath": base,
                            "syncs": [{"localPath": "src", "containerPath": "/app/src"}],
                            "execs": [
                                {"args": ["sh", "-c", "make"], "triggerPaths": ["src/deps.txt"]}
                            ],
                        },
                        "BuildDetails": {
                            "dockerfileContents": DOCKERFILE,
                            "context": base,
                            "args": ["A=1"],
                        },
                    }
                ],
                "DeployTarget": {
                    "yaml": WEB,
                    "portForwardTemplateSpec": {
                        "forwards": [
                            {"localPort": 8080, "containerPort": 80, "host": "localhost"},
                            {"localPort": 9000, "containerPort": 0, "host": "localhost"},
                        ]
                    },
                    "PodReadinessMode": "wait",
                    "Links": None,
                },
                "TriggerMode": 0,
                "ResourceDependencies": ["setup"],
                "Labels": {"front": "front"},
            },
            {
                "Name": "setup",
                "ImageTargets": None,
                "DeployTarget": {
                    "UpdateCmdSpec": {"args": ["sh", "-c", "echo ready"], "dir": base},
                    "ServeCmd": {"Argv": None},
                    "Deps": [f"{base}/src"],
                    "Links": None,
                },
                "TriggerMode": 0,
                "ResourceDependencies": None,
                "Labels": {},
            },
        ]
    }


def our_facts(judge: ModuleType, root: Path) -> dict[str, Any]:
    (root / "Tiltfile").write_text(TILTFILE)
    (root / "web.yaml").write_text(WEB)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "src").mkdir()
    result, _ = evaluate(root / "Tiltfile")
    text = render(result, assemble(result), planned_refs(result))
    facts: dict[str, Any] = judge.flotilla_facts(next(yaml.safe_load_all(text)), root.resolve())
    return facts


def test_the_same_tiltfile_agrees(judge: ModuleType, tmp_path: Path) -> None:
    ours = our_facts(judge, tmp_path)
    theirs = judge.tilt_facts(tilt_json(tmp_path), tmp_path.resolve())
    assert judge.diff(theirs, ours) == []


def test_a_difference_is_named(judge: ModuleType, tmp_path: Path) -> None:
    ours = our_facts(judge, tmp_path)
    changed = copy.deepcopy(tilt_json(tmp_path))
    web = changed["Manifests"][0]
    web["ImageTargets"][0]["LiveUpdateSpec"]["syncs"][0]["containerPath"] = "/srv"
    web["ResourceDependencies"] = []
    changed["Manifests"].append({**changed["Manifests"][1], "Name": "extra"})
    out = judge.diff(judge.tilt_facts(changed, tmp_path.resolve()), ours)
    assert "resource extra: only in tilt (local)" in out
    assert "web.resource_deps: tilt=[] flotilla=['setup']" in out
    assert any(d.startswith("web.images.r.io/web.live_update.syncs:") for d in out)
    assert len(out) == 3


def test_failures_agree_only_at_the_same_place(judge: ModuleType) -> None:
    a = {"error": "x", "where": "/t/Tiltfile:3", "resources": {}}
    assert judge.diff(a, {**a, "error": "y"}) == []
    assert judge.diff(a, {**a, "where": ""}) == []  # Tilt names no place for a shell failure
    assert judge.diff(a, {**a, "where": "/t/Tiltfile:4"}) == [
        "both fail, at different places: tilt /t/Tiltfile:3, flotilla /t/Tiltfile:4"
    ]
    assert judge.diff(a, {"error": "", "resources": {}})[0].startswith("error: tilt='x'")
