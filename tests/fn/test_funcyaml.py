"""Knative func projects: func.yaml read by fn run/build/deploy, ignored keys named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.fn.funcyaml import FuncYamlError, from_func_yaml
from flotilla.fn.model import parse_spec

FUNC_YAML = """specVersion: 0.36.0
name: kfunc
runtime: node
registry: quay.io/me
image: quay.io/me/kfunc:latest
namespace: team
invoke: cloudevent
created: 2026-01-01T00:00:00Z
build:
  builder: pack
run:
  envs:
  - name: GREETING
    value: hi
  - name: DB_PASSWORD
    value: '{{ secret:db:password }}'
  - value: '{{ configMap:settings }}'
  - name: FROM_BUILD
    value: '{{ env:HOME }}'
  volumes:
  - secret: db
    path: /etc/creds
  - presistentVolumeClaim:
      claimName: data
    path: /data
  - emptyDir: {}
    path: /scratch
deploy:
  namespace: prod
  annotations: {team: a}
  labels:
  - key: tier
    value: web
  options:
    scale: {min: 1, max: 5, metric: rps, target: 50, utilization: 60.5}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {memory: 128Mi, concurrency: 8}
  healthEndpoints: {liveness: /health/liveness}
"""


def test_func_yaml_maps_onto_function_yaml_and_names_what_it_ignores() -> None:
    doc, ignored = from_func_yaml(yaml.safe_load(FUNC_YAML))
    spec = parse_spec(doc)
    assert (spec.name, spec.runtime.value, spec.signature.value) == ("kfunc", "node", "cloudevent")
    assert spec.image == "quay.io/me/kfunc:latest" and spec.deploy.namespace == "prod"
    assert spec.env == {"GREETING": "hi"}
    assert spec.sources.env["DB_PASSWORD"].name == "db"
    assert [r.name for r in spec.sources.env_from] == ["settings"]
    assert [(v.kind, v.source) for v in spec.sources.volumes] == [
        ("secret", "db"),
        ("pvc", "data"),
        ("emptyDir", ""),
    ]
    assert (spec.scale.min, spec.scale.max, spec.scale.metric, spec.scale.utilization) == (
        1,
        5,
        "rps",
        60,
    )
    assert spec.concurrency == 8 and spec.deploy.limits == {"memory": "128Mi"}
    assert spec.deploy.labels == {"tier": "web"} and spec.deploy.annotations == {"team": "a"}
    for key in ("build", "created", "registry", "specVersion", "deploy.healthEndpoints"):
        assert key in ignored
    assert any(i.startswith("run.envs[3]") for i in ignored)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nruntime: go\n", "runtime 'go'"),
        ("name: x\nruntime: quarkus\n", "not quarkus apps; use runtime: java"),
        ("name: x\nruntime: node\nrun:\n  volumes:\n  - secret: s\n", "needs a path"),
        ("- 1\n", "must be a mapping"),
    ],
)
def test_unusable_func_yaml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "func.yaml").write_text(text)
    result = CliRunner().invoke(app, ["fn", "deploy", "-C", str(tmp_path), "--dry-run"])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(FuncYamlError):
        from_func_yaml(yaml.safe_load(text))


def test_deploy_dry_run_reads_func_yaml(tmp_path: Path) -> None:
    (tmp_path / "func.yaml").write_text(FUNC_YAML)
    result = CliRunner().invoke(
        app, ["fn", "deploy", "-C", str(tmp_path), "--dry-run", "--target", "knative"]
    )
    assert result.exit_code == 0, result.output
    assert "ignoring build, created, registry, specVersion" in result.output
    assert "containerConcurrency: 8" in result.output and "claimName: data" in result.output


def test_a_java_func_yaml_is_a_java_function() -> None:
    doc, ignored = from_func_yaml({"specVersion": "0.36.0", "name": "jfunc", "runtime": "java"})
    spec = parse_spec(doc)
    assert (spec.runtime.value, spec.handler_ref, ignored) == (
        "java",
        "function.Function:handle",
        ["specVersion"],
    )
