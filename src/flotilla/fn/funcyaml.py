"""Knative func projects: ``func.yaml`` read as a ``function.yaml`` document (pure).

Taken: ``name``, ``runtime`` (python, node, and java for a flotilla Java project; func's
typescript, quarkus and springboot are refused), ``image``, ``namespace``,
``invoke`` (``cloudevent`` selects the cloudevent signature), ``run.envs`` and ``envs``
(``{{ secret:NAME:KEY }}``, ``{{ configMap:NAME:KEY }}``, ``{{ secret:NAME }}`` as envFrom, and
plain values), ``run.volumes`` / ``volumes`` (secret, configMap, presistentVolumeClaim, emptyDir),
``deploy.namespace``, ``deploy.annotations``, ``deploy.labels``, ``deploy.options.scale`` and
``deploy.options.resources`` (``requests/limits.concurrency`` becomes ``concurrency``).
Everything else is reported as ignored, by path.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["FuncYamlError", "from_func_yaml"]

_REF = re.compile(r"^\{\{\s*(secret|configMap|env):([^:}\s]+)(?::([^}\s]+))?\s*\}\}$")
_TAKEN_TOP = {"name", "runtime", "image", "namespace", "invoke", "envs", "volumes", "run", "deploy"}
_SCALE = {"min": "min", "max": "max", "metric": "metric", "target": "target"}


class FuncYamlError(ValueError):
    """func.yaml cannot be used; the message says which key and why."""


def _labels(items: Any) -> dict[str, str]:
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    return {str(i["key"]): str(i.get("value", "")) for i in items or [] if isinstance(i, dict)}


def _envs(items: Any, path: str, doc: dict[str, Any], ignored: list[str]) -> None:
    for i, item in enumerate(items or []):
        if not isinstance(item, dict):
            raise FuncYamlError(f"func.yaml {path}[{i}]: must be a mapping")
        name, value = item.get("name"), str(item.get("value", ""))
        match = _REF.match(value.strip())
        if match is None:
            if not name:
                raise FuncYamlError(f"func.yaml {path}[{i}]: needs a name")
            doc.setdefault("env", {})[str(name)] = value
            continue
        kind, obj, key = match.groups()
        if kind == "env":
            ignored.append(f"{path}[{i}] ({{{{ env:… }}}} is read at build time by func)")
        elif key and name:
            doc.setdefault("env", {})[str(name)] = {kind: obj, "key": key}
        elif not name and not key:
            doc.setdefault("envFrom", []).append({kind: obj})
        else:
            raise FuncYamlError(f"func.yaml {path}[{i}]: {value!r} needs a name and a key")


def _volumes(items: Any, path: str, doc: dict[str, Any]) -> None:
    for i, item in enumerate(items or []):
        if not isinstance(item, dict) or "path" not in item:
            raise FuncYamlError(f"func.yaml {path}[{i}]: needs a path")
        entry: dict[str, Any] = {"path": item["path"]}
        if "secret" in item:
            entry["secret"] = item["secret"]
        elif "configMap" in item:
            entry["configMap"] = item["configMap"]
        elif "presistentVolumeClaim" in item or "persistentVolumeClaim" in item:
            claim = item.get("presistentVolumeClaim") or item.get("persistentVolumeClaim") or {}
            entry["pvc"] = claim.get("claimName") if isinstance(claim, dict) else None
        elif "emptyDir" in item:
            entry["emptyDir"] = {}
        else:
            raise FuncYamlError(f"func.yaml {path}[{i}]: no secret, configMap, PVC or emptyDir")
        doc.setdefault("volumes", []).append(entry)


def from_func_yaml(func: Any) -> tuple[dict[str, Any], list[str]]:
    """A ``function.yaml`` document and the func.yaml keys that were ignored."""
    if not isinstance(func, dict):
        raise FuncYamlError("func.yaml must be a mapping")
    ignored = [k for k in sorted(func) if k not in _TAKEN_TOP]
    runtime = func.get("runtime")
    if runtime in ("quarkus", "springboot"):
        raise FuncYamlError(
            f"func.yaml runtime {runtime!r}: flotilla runs plain Java functions, not {runtime} "
            "apps; use runtime: java with a dev.flotilla.fn handler (fn init --runtime java)"
        )
    if runtime not in ("python", "node", "java"):
        raise FuncYamlError(f"func.yaml runtime {runtime!r}: flotilla runs python, node and java")
    doc: dict[str, Any] = {"name": func.get("name"), "runtime": runtime}
    if func.get("image"):
        doc["image"] = func["image"]
    if str(func.get("invoke", "")).lower() == "cloudevent":
        doc["signature"] = "cloudevent"
    run = func.get("run") or {}
    ignored += [f"run.{k}" for k in sorted(run) if k not in ("envs", "volumes")]
    _envs(func.get("envs"), "envs", doc, ignored)
    _envs(run.get("envs"), "run.envs", doc, ignored)
    _volumes(func.get("volumes"), "volumes", doc)
    _volumes(run.get("volumes"), "run.volumes", doc)
    deploy_in = func.get("deploy") or {}
    deploy: dict[str, Any] = {}
    namespace = deploy_in.get("namespace") or func.get("namespace")
    if namespace:
        deploy["namespace"] = namespace
    if deploy_in.get("annotations"):
        deploy["annotations"] = _labels(deploy_in["annotations"])
    if deploy_in.get("labels"):
        deploy["labels"] = _labels(deploy_in["labels"])
    options = deploy_in.get("options") or {}
    scale_in = options.get("scale") or {}
    scale = {_SCALE[k]: v for k, v in scale_in.items() if k in _SCALE}
    if "utilization" in scale_in:
        scale["utilization"] = int(float(scale_in["utilization"]))
    ignored += [f"deploy.options.scale.{k}" for k in sorted(scale_in) if k not in scale]
    resources_in = options.get("resources") or {}
    resources: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        values = dict(resources_in.get(kind) or {})
        if "concurrency" in values:
            doc["concurrency"] = int(values.pop("concurrency"))
        if values:
            resources[kind] = {str(k): str(v) for k, v in values.items()}
    if resources:
        deploy["resources"] = resources
    ignored += [f"deploy.options.{k}" for k in sorted(options) if k not in ("scale", "resources")]
    known = {"namespace", "annotations", "labels", "options"}
    ignored += [f"deploy.{k}" for k in sorted(deploy_in) if k not in known]
    if scale:
        doc["scale"] = scale
    if deploy:
        doc["deploy"] = deploy
    return doc, ignored
