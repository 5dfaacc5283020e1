"""``function.yaml``: the model of a function project, and its validation.

Pure: parsing turns a mapping into frozen dataclasses or a :class:`FunctionSpecError` listing every
problem with its path, so a user fixes them all in one go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flotilla.core.errors import FlotillaError

from .sources import Sources, parse_sources

__all__ = [
    "DEFAULT_HANDLERS",
    "DeploySpec",
    "FunctionSpec",
    "FunctionSpecError",
    "Runtime",
    "Scale",
    "Signature",
    "Target",
    "dump_spec",
    "load_spec",
    "parse_spec",
]

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_HANDLER_PY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")
_HANDLER_JS = re.compile(r"^[A-Za-z0-9_./-]+\.(c?js|mjs):[A-Za-z_$][A-Za-z0-9_$]*$")
_HANDLER_JAVA = re.compile(
    r"^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*:[A-Za-z_$][A-Za-z0-9_$]*$"
)
# Names the runtime itself sets; a user value would silently break the contract.
RESERVED_ENV = frozenset(
    {
        "PORT",
        "FLOTILLA_FN_SOURCE",
        "FLOTILLA_FN_HANDLER",
        "FLOTILLA_FN_SIGNATURE",
        "FLOTILLA_FN_NAME",
        "NODE_PATH",
        "PYTHONPATH",
        "CLASSPATH",
    }
)


class Runtime(StrEnum):
    PYTHON = "python"
    NODE = "node"
    JAVA = "java"


class Signature(StrEnum):
    HTTP = "http"
    CLOUDEVENT = "cloudevent"
    ASGI = "asgi"  # Python only


class Target(StrEnum):
    KNATIVE = "knative"
    KUBERNETES = "kubernetes"


DEFAULT_HANDLERS = {
    Runtime.PYTHON: "func:handle",
    Runtime.NODE: "index.js:handle",
    Runtime.JAVA: "function.Function:handle",  # Java: package.Class:method
}


class FnError(FlotillaError):
    """Root error of ``flotilla fn``: the CLI shows it as ``error: ...`` and exits 1."""


class FunctionSpecError(FnError, ValueError):
    """``function.yaml`` is invalid; ``problems`` lists each as ``path: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid function.yaml:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Scale:
    """Autoscaling bounds; Knative reads all of it, plain Kubernetes uses ``min`` as replicas."""

    min: int = 0
    """Fewest instances; 0 lets Knative scale to zero (plain Kubernetes runs at least 1)."""
    max: int = 10
    """Most instances."""
    target: int = 100
    """Per-instance target of ``metric`` (concurrent requests, or requests per second)."""
    metric: str = "concurrency"
    """``concurrency`` or ``rps`` (Knative KPA), ``cpu`` or ``memory`` (HPA class)."""
    utilization: int = 70
    """Percent of ``target`` at which Knative adds instances."""


@dataclass(frozen=True)
class DeploySpec:
    target: Target = Target.KUBERNETES
    namespace: str = "default"
    port: int = 8080
    """Port the runtime listens on inside the container."""
    node_selector: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=lambda: {"cpu": "50m", "memory": "64Mi"})
    limits: dict[str, str] = field(default_factory=lambda: {"memory": "256Mi"})
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    runtime: Runtime
    signature: Signature = Signature.HTTP
    handler: str = ""
    image: str = ""
    """Image reference to build and deploy; empty means ``flotilla.local/<name>:latest``."""
    env: dict[str, str] = field(default_factory=dict)
    scale: Scale = field(default_factory=Scale)
    deploy: DeploySpec = field(default_factory=DeploySpec)
    timeout: int = 0
    """Seconds one invocation may take (504 after that); 0 is no limit."""
    concurrency: int = 0
    """Invocations one instance serves at once (Knative containerConcurrency); 0 is no limit."""
    sources: Sources = field(default_factory=Sources)
    """Env from Secrets/ConfigMaps and volumes (``env`` refs, ``envFrom``, ``volumes``)."""

    @property
    def image_ref(self) -> str:
        return self.image or f"flotilla.local/{self.name}:latest"

    @property
    def handler_ref(self) -> str:
        return self.handler or DEFAULT_HANDLERS[self.runtime]


_TOP = {
    "name",
    "runtime",
    "signature",
    "handler",
    "image",
    "env",
    "scale",
    "deploy",
    "timeout",
    "concurrency",
    "envFrom",
    "volumes",
}
_SCALE = {"min", "max", "target", "metric", "utilization"}
_DEPLOY = {"target", "namespace", "port", "nodeSelector", "resources", "labels", "annotations"}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def keys(self, path: str, doc: Mapping[str, Any], allowed: set[str]) -> None:
        for key in sorted(set(doc) - allowed):
            self.add(f"{path}{key}", f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def mapping(self, path: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, "must be a mapping")
            return {}
        return value

    def string_map(
        self, path: str, value: Any, key_re: re.Pattern[str] | None = None
    ) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, item in self.mapping(path, value).items():
            if not isinstance(key, str) or (key_re is not None and not key_re.match(key)):
                self.add(f"{path}.{key}", "invalid name")
            elif isinstance(item, bool) or not isinstance(item, str | int | float):
                self.add(f"{path}.{key}", "must be a string (quote numbers and booleans)")
            else:
                out[key] = str(item)
        return out

    def integer(self, path: str, value: Any, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "must be an integer")
            return default
        if not low <= value <= high:
            self.add(path, f"must be between {low} and {high}")
        return value

    def choice(self, path: str, value: Any, enum: type[StrEnum], default: StrEnum) -> Any:
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            self.add(path, f"must be one of {', '.join(e.value for e in enum)}")
            return default


def parse_spec(doc: Any) -> FunctionSpec:
    """A :class:`FunctionSpec` from the parsed YAML document, or every problem at once."""
    c = _Checker()
    if not isinstance(doc, dict):
        raise FunctionSpecError(["(document): must be a mapping"])
    c.keys("", doc, _TOP)
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        c.add("name", "must be a DNS label: lower-case letters, digits and '-', at most 63")
        name = "invalid"
    runtime = c.choice("runtime", doc.get("runtime"), Runtime, Runtime.PYTHON)
    if doc.get("runtime") is None:
        c.add("runtime", "is required (python, node or java)")
    signature = c.choice("signature", doc.get("signature"), Signature, Signature.HTTP)
    if signature is Signature.ASGI and runtime is not Runtime.PYTHON:
        c.add("signature", "asgi is for the python runtime only")
    handler = doc.get("handler") or ""
    pattern = {Runtime.PYTHON: _HANDLER_PY, Runtime.NODE: _HANDLER_JS, Runtime.JAVA: _HANDLER_JAVA}[
        runtime
    ]
    if handler and (not isinstance(handler, str) or not pattern.match(handler)):
        example = DEFAULT_HANDLERS[runtime]
        c.add("handler", f"must look like {example!r}")
    image = doc.get("image") or ""
    if not isinstance(image, str) or any(ch.isspace() for ch in image) or image.startswith("-"):
        c.add("image", "must be an image reference")
        image = ""
    env_doc = doc.get("env")
    env_refs: dict[str, Any] = {}
    if isinstance(env_doc, dict):  # {secret|configMap: NAME, key: KEY} values come from the cluster
        env_refs = {k: v for k, v in env_doc.items() if isinstance(v, dict)}
        env_doc = {k: v for k, v in env_doc.items() if not isinstance(v, dict)}
    env = c.string_map("env", env_doc, _ENV_KEY)
    for key in sorted(set(env_refs) & RESERVED_ENV):
        c.add(f"env.{key}", "is set by the runtime and cannot be overridden")
    sources, source_problems = parse_sources(env_refs, doc.get("envFrom"), doc.get("volumes"))
    for problem in source_problems:
        path, _, message = problem.partition(": ")
        c.add(path, message)
    for key in sorted(set(env) & RESERVED_ENV):
        c.add(f"env.{key}", "is set by the runtime and cannot be overridden")

    sdoc = c.mapping("scale", doc.get("scale"))
    c.keys("scale.", sdoc, _SCALE)
    scale = Scale(
        min=c.integer("scale.min", sdoc.get("min"), 0, 0, 1000),
        max=c.integer("scale.max", sdoc.get("max"), 10, 1, 1000),
        target=c.integer("scale.target", sdoc.get("target"), 100, 1, 100000),
        metric=str(sdoc.get("metric", "concurrency")),
        utilization=c.integer("scale.utilization", sdoc.get("utilization"), 70, 1, 100),
    )
    if scale.metric not in ("concurrency", "rps", "cpu", "memory"):
        c.add("scale.metric", "must be one of concurrency, rps, cpu, memory")
    if scale.min > scale.max:
        c.add("scale", f"min ({scale.min}) is above max ({scale.max})")

    timeout = c.integer("timeout", doc.get("timeout"), 0, 0, 3600)
    concurrency = c.integer("concurrency", doc.get("concurrency"), 0, 0, 1000)
    ddoc = c.mapping("deploy", doc.get("deploy"))
    c.keys("deploy.", ddoc, _DEPLOY)
    namespace = ddoc.get("namespace", "default")
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        c.add("deploy.namespace", "must be a DNS label")
        namespace = "default"
    resources = c.mapping("deploy.resources", ddoc.get("resources"))
    c.keys("deploy.resources.", resources, {"requests", "limits"})
    quantities: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        values = c.string_map(f"deploy.resources.{kind}", resources.get(kind))
        for res, qty in values.items():
            if res not in ("cpu", "memory") or not _QUANTITY.match(qty):
                c.add(f"deploy.resources.{kind}.{res}", "must be cpu or memory with a quantity")
        quantities[kind] = values
    labels = c.string_map("deploy.labels", ddoc.get("labels"))
    for key, value in labels.items():
        if not _LABEL_VALUE.match(value) or len(value) > 63:
            c.add(f"deploy.labels.{key}", "is not a valid label value")
    defaults = DeploySpec()
    deploy = DeploySpec(
        target=c.choice("deploy.target", ddoc.get("target"), Target, Target.KUBERNETES),
        namespace=namespace,
        port=c.integer("deploy.port", ddoc.get("port"), 8080, 1024, 65535),
        node_selector=c.string_map("deploy.nodeSelector", ddoc.get("nodeSelector")),
        requests=quantities["requests"] if "requests" in resources else defaults.requests,
        limits=quantities["limits"] if "limits" in resources else defaults.limits,
        labels=labels,
        annotations=c.string_map("deploy.annotations", ddoc.get("annotations")),
    )
    if c.problems:
        raise FunctionSpecError(c.problems)
    return FunctionSpec(
        name=name,
        runtime=runtime,
        signature=signature,
        handler=handler,
        image=image,
        env=env,
        scale=scale,
        deploy=deploy,
        timeout=timeout,
        concurrency=concurrency,
        sources=sources,
    )


def load_spec(text: str) -> FunctionSpec:
    """Parse ``function.yaml`` text; YAML errors become :class:`FunctionSpecError` too."""
    import yaml  # here, not at module level: `flotilla fn --help` needs no YAML

    from flotilla.core import yamlload

    try:
        doc = yamlload.load(text)
    except yaml.YAMLError as exc:
        raise FunctionSpecError([f"(yaml): {exc}"]) from None
    return parse_spec(doc)


def dump_spec(spec: FunctionSpec) -> str:
    """``function.yaml`` text for ``spec`` (what ``fn init`` writes)."""
    doc: dict[str, Any] = {
        "name": spec.name,
        "runtime": spec.runtime.value,
        "signature": spec.signature.value,
        "handler": spec.handler_ref,
        "image": spec.image_ref,
        "env": dict(spec.env),
    }
    s, d = spec.scale, spec.deploy
    doc["scale"] = {
        "min": s.min,
        "max": s.max,
        "target": s.target,
        "metric": s.metric,
        "utilization": s.utilization,
    }
    doc["deploy"] = {
        "target": d.target.value,
        "namespace": d.namespace,
        "port": d.port,
        "nodeSelector": dict(d.node_selector),
        "resources": {"requests": dict(d.requests), "limits": dict(d.limits)},
    }
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)
