"""Configuration from the cluster: env from Secrets and ConfigMaps, and volumes (pure).

``function.yaml``::

    env:
      DB_PASSWORD: {secret: db, key: password}      # one key
      MODE: {configMap: settings, key: mode}
    envFrom: [{secret: db}, {configMap: settings}]  # every key
    volumes:
      - {path: /etc/creds, secret: db}
      - {path: /etc/conf, configMap: settings}
      - {path: /data, pvc: data-claim}
      - {path: /scratch, emptyDir: {}}

The same container and pod parts serve the Deployment and the Knative Service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EnvRef", "Sources", "Volume", "parse_sources", "pod_parts"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_KINDS = ("secret", "configMap")
_VOLUME_KINDS = ("secret", "configMap", "pvc", "emptyDir")


@dataclass(frozen=True)
class EnvRef:
    kind: str
    """``secret`` or ``configMap``."""
    name: str
    key: str


@dataclass(frozen=True)
class Volume:
    path: str
    kind: str
    """``secret``, ``configMap``, ``pvc`` or ``emptyDir``."""
    source: str = ""
    """The Secret, ConfigMap or claim name (empty for ``emptyDir``)."""


@dataclass(frozen=True)
class Sources:
    env: dict[str, EnvRef] = field(default_factory=dict)
    env_from: tuple[EnvRef, ...] = ()
    """``key`` is empty: every key of the object."""
    volumes: tuple[Volume, ...] = ()


def _kind_of(path: str, doc: Any, kinds: tuple[str, ...], problems: list[str]) -> str | None:
    if not isinstance(doc, dict):
        problems.append(f"{path}: must be a mapping")
        return None
    found = [k for k in kinds if k in doc]
    if len(found) != 1:
        problems.append(f"{path}: needs exactly one of {', '.join(kinds)}")
        return None
    return found[0]


def _name(path: str, value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        problems.append(f"{path}: must be a Kubernetes object name")
        return "invalid"
    return value


def parse_sources(
    env_refs: dict[str, Any], env_from: Any, volumes: Any
) -> tuple[Sources, list[str]]:
    """Sources from the mapping-valued ``env`` entries, ``envFrom`` and ``volumes``."""
    problems: list[str] = []
    env: dict[str, EnvRef] = {}
    for var, doc in sorted(env_refs.items()):
        kind = _kind_of(f"env.{var}", doc, _KINDS, problems)
        if kind is None:
            continue
        if set(doc) - {kind, "key"}:
            problems.append(f"env.{var}: only {kind} and key are allowed")
        key = doc.get("key")
        if not isinstance(key, str) or not _KEY.match(key):
            problems.append(f"env.{var}.key: must be a key of the {kind}")
            key = "invalid"
        env[var] = EnvRef(kind, _name(f"env.{var}.{kind}", doc[kind], problems), key)
    froms: list[EnvRef] = []
    if env_from is not None and not isinstance(env_from, list):
        problems.append("envFrom: must be a list")
        env_from = []
    for i, doc in enumerate(env_from or []):
        kind = _kind_of(f"envFrom[{i}]", doc, _KINDS, problems)
        if kind is not None:
            if set(doc) != {kind}:
                problems.append(f"envFrom[{i}]: only {kind} is allowed")
            froms.append(EnvRef(kind, _name(f"envFrom[{i}].{kind}", doc[kind], problems), ""))
    vols: list[Volume] = []
    if volumes is not None and not isinstance(volumes, list):
        problems.append("volumes: must be a list")
        volumes = []
    for i, doc in enumerate(volumes or []):
        kind = _kind_of(f"volumes[{i}]", doc, _VOLUME_KINDS, problems)
        if kind is None:
            continue
        if set(doc) != {kind, "path"}:
            problems.append(f"volumes[{i}]: needs path and {kind}, nothing else")
        path = doc.get("path")
        if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
            problems.append(f"volumes[{i}].path: must be an absolute path without '..'")
            path = "/invalid"
        elif path in {v.path for v in vols} or path in ("/function", "/opt/flotilla"):
            problems.append(f"volumes[{i}].path: {path} is already in use")
        if kind == "emptyDir":
            if doc[kind] not in ({}, None):
                problems.append(f"volumes[{i}].emptyDir: must be {{}}")
            vols.append(Volume(path, kind))
        else:
            vols.append(Volume(path, kind, _name(f"volumes[{i}].{kind}", doc[kind], problems)))
    return Sources(env, tuple(froms), tuple(vols)), problems


def pod_parts(sources: Sources) -> tuple[dict[str, Any], dict[str, Any]]:
    """Container fields (env entries, envFrom, volumeMounts) and pod fields (volumes)."""
    ref = {"secret": "secretKeyRef", "configMap": "configMapKeyRef"}
    whole = {"secret": "secretRef", "configMap": "configMapRef"}
    container: dict[str, Any] = {}
    env = [
        {"name": var, "valueFrom": {ref[r.kind]: {"name": r.name, "key": r.key}}}
        for var, r in sorted(sources.env.items())
    ]
    if env:
        container["env"] = env
    if sources.env_from:
        container["envFrom"] = [{whole[r.kind]: {"name": r.name}} for r in sources.env_from]
    pod: dict[str, Any] = {}
    if sources.volumes:
        mounts, volumes = [], []
        for i, v in enumerate(sources.volumes):
            name = f"vol-{i}"
            mount: dict[str, Any] = {"name": name, "mountPath": v.path}
            if v.kind in ("secret", "configMap"):
                mount["readOnly"] = True
            mounts.append(mount)
            if v.kind == "secret":
                volumes.append({"name": name, "secret": {"secretName": v.source}})
            elif v.kind == "configMap":
                volumes.append({"name": name, "configMap": {"name": v.source}})
            elif v.kind == "pvc":
                volumes.append({"name": name, "persistentVolumeClaim": {"claimName": v.source}})
            else:
                volumes.append({"name": name, "emptyDir": {}})
        container["volumeMounts"] = mounts
        pod["volumes"] = volumes
    return container, pod
