"""Env from Secrets/ConfigMaps and volumes: parsed, rendered for both targets, mapped by fn run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flotilla.fn.devloop import local_source_env, serve_command
from flotilla.fn.image import function_files
from flotilla.fn.manifests import knative_service, kubernetes_objects
from flotilla.fn.model import FnError, FunctionSpecError, load_spec

SPEC = """name: conf
runtime: python
env:
  GREETING: hi
  DB_PASSWORD: {secret: db, key: password}
  MODE: {configMap: settings, key: mode}
envFrom: [{secret: db}, {configMap: settings}]
volumes:
  - {path: /etc/creds, secret: db}
  - {path: /etc/conf, configMap: settings}
  - {path: /data, pvc: data-claim}
  - {path: /scratch, emptyDir: {}}
"""


def _container_and_pod(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    return pod["containers"][0], pod


@pytest.mark.parametrize("target", ["kubernetes", "knative"])
def test_both_targets_render_env_refs_env_from_and_volumes(target: str) -> None:
    spec = load_spec(SPEC)
    obj = (
        kubernetes_objects(spec, "r/conf:1", "ns")[0]
        if target == "kubernetes"
        else knative_service(spec, "r/conf:1", "ns")
    )
    container, pod = _container_and_pod(obj)
    env = {e["name"]: e for e in container["env"]}
    assert env["GREETING"]["value"] == "hi"
    assert env["DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    assert env["MODE"]["valueFrom"] == {"configMapKeyRef": {"name": "settings", "key": "mode"}}
    assert container["envFrom"] == [
        {"secretRef": {"name": "db"}},
        {"configMapRef": {"name": "settings"}},
    ]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/creds"]["readOnly"] and "readOnly" not in mounts["/data"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    by_path = {path: volumes[m["name"]] for path, m in mounts.items()}
    assert by_path["/etc/creds"]["secret"] == {"secretName": "db"}
    assert by_path["/etc/conf"]["configMap"] == {"name": "settings"}
    assert by_path["/data"]["persistentVolumeClaim"] == {"claimName": "data-claim"}
    assert by_path["/scratch"]["emptyDir"] == {}


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("env:\n  X: {secret: db}\n", "env.X.key"),
        ("env:\n  X: {secret: db, configMap: c, key: k}\n", "env.X"),
        ("env:\n  PORT: {secret: db, key: k}\n", "env.PORT"),
        ("envFrom: [{vault: x}]\n", "envFrom[0]"),
        ("envFrom: {secret: db}\n", "envFrom"),
        ("volumes: [{path: relative, secret: db}]\n", "volumes[0].path"),
        ("volumes: [{path: /function, emptyDir: {}}]\n", "volumes[0].path"),
        ("volumes: [{path: /a, pvc: Bad_Name}]\n", "volumes[0].pvc"),
        ("volumes: [{path: /a, hostPath: /etc}]\n", "volumes[0]"),
    ],
)
def test_bad_sources_are_named_by_path(extra: str, path: str) -> None:
    with pytest.raises(FunctionSpecError) as info:
        load_spec("name: bad\nruntime: node\n" + extra)
    assert any(p.startswith(path) for p in info.value.problems), info.value.problems


def test_fn_run_reads_local_stand_ins_which_never_reach_the_image(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    with pytest.raises(FnError, match="put its value in"):
        local_source_env(spec, tmp_path)
    secrets = tmp_path / ".local-config" / "secrets" / "db"
    configs = tmp_path / ".local-config" / "configmaps" / "settings"
    secrets.mkdir(parents=True)
    configs.mkdir(parents=True)
    (secrets / "password").write_text("s3cret\n")
    (secrets / "user").write_text("app")
    (configs / "mode").write_text("fast")
    command = serve_command(spec, tmp_path, 8080, {}, scratch=tmp_path / "scratch")
    assert command.env["DB_PASSWORD"] == "s3cret" and command.env["MODE"] == "fast"
    assert command.env["user"] == "app" and command.env["GREETING"] == "hi"
    (tmp_path / "func.py").write_text("def handle(r): return 1\n")
    assert list(function_files(tmp_path)) == ["func.py"]
