"""Kubernetes manifests as dicts: parsing, workload detection, image injection. Pure functions."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from flotilla.core import yamlload
from flotilla.core.errors import FlotillaError

Obj = dict[str, Any]

# Kinds whose objects run pods, and where their pod template lives.
WORKLOAD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}


class ManifestError(FlotillaError, ValueError):
    """A manifest could not be parsed or is not a Kubernetes object."""


def parse_yaml_stream(text: str, *, source: str = "<yaml>") -> list[Obj]:
    """Objects in a YAML stream; ``List`` kinds are flattened, empty documents skipped.

    Loaded within :mod:`flotilla.core.yamlload` limits, so an alias bomb is an error, not a hang.
    """
    try:
        docs = yamlload.load_all(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: invalid YAML: {exc}") from exc
    out: list[Obj] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"{source}: a document is a {type(doc).__name__}, not an object")
        if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
            out.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
            continue
        if "kind" not in doc or "apiVersion" not in doc:
            raise ManifestError(f"{source}: object without kind/apiVersion: {str(doc)[:80]}")
        out.append(doc)
    return out


def dump_yaml_stream(objs: list[Obj]) -> str:
    """A YAML stream with ``---`` separators, keys in the order given."""
    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)


def object_id(obj: Obj) -> str:
    """``name:kind[:namespace]`` in lower case, as Tilt's ``objects=`` selectors spell it."""
    meta = obj.get("metadata") or {}
    parts = [str(meta.get("name", "")), str(obj.get("kind", ""))]
    if meta.get("namespace"):
        parts.append(str(meta["namespace"]))
    return ":".join(parts).lower()


def selector_matches(selector: str, obj: Obj) -> bool:
    """Tilt's object selector: ``name``, ``name:kind`` or ``name:kind:namespace``."""
    want = selector.lower().split(":")
    meta = obj.get("metadata") or {}
    have = [
        str(meta.get("name", "")).lower(),
        str(obj.get("kind", "")).lower(),
        str(meta.get("namespace", "default")).lower(),
    ]
    return all(w == h for w, h in zip(want, have, strict=False))


def is_workload(obj: Obj) -> bool:
    return obj.get("kind") in WORKLOAD_TEMPLATE_PATHS


def pod_template(obj: Obj) -> Obj | None:
    """The pod template (a dict with ``metadata`` and ``spec``) of a workload, else None."""
    path = WORKLOAD_TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def pod_labels(obj: Obj) -> dict[str, str]:
    tmpl = pod_template(obj)
    if tmpl is None:
        return {}
    return dict((tmpl.get("metadata") or {}).get("labels") or {})


def pod_selector(obj: Obj) -> dict[str, str]:
    """Labels that select this workload's pods: ``spec.selector.matchLabels`` or template labels."""
    spec = obj.get("spec") or {}
    sel = spec.get("selector")
    if isinstance(sel, dict) and isinstance(sel.get("matchLabels"), dict):
        return dict(sel["matchLabels"])
    return pod_labels(obj)


def containers(obj: Obj) -> Iterator[Obj]:
    """Every container and init container of a workload's pod spec."""
    tmpl = pod_template(obj)
    if tmpl is None:
        return
    spec = tmpl.get("spec") or {}
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                yield c


def image_name(ref: str) -> str:
    """The repository part of an image reference (no tag or digest)."""
    ref = ref.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def exact_names(declared: Iterable[str]) -> frozenset[str]:
    """Image names declared with more than one tag: Tilt then matches each of them exactly."""
    seen: set[str] = set()
    dup: set[str] = set()
    for ref in declared:
        name = image_name(ref)
        (dup if name in seen else seen).add(name)
    return frozenset(dup)


def refers_to(ref: str, image: str, exact: frozenset[str] = frozenset()) -> bool:
    """Does image ``ref`` (in YAML, a Dockerfile) name the image declared as ``image``?

    Tilt's rule (``container.RefSelector``, ``buildIndex.addImage``): a declared ref without a
    tag matches the name with any tag, a declared ref with a tag matches only that tag, and when
    one name is declared with several tags (``exact``, from :func:`exact_names`) each matches
    only itself, so ``app`` and ``app:stretch`` are two images.
    """
    name = image_name(image)
    if image_name(ref) != name:
        return False
    declared = image.split("@", 1)[0]
    if declared != name or name in exact:
        return ref.split("@", 1)[0] == declared
    return True


def images_used(obj: Obj, candidates: list[str], *, env_vars: set[str] | None = None) -> list[str]:
    """Which of the ``candidates`` (build refs) this object's containers use."""
    found: list[str] = []
    exact = exact_names(candidates)
    for c in containers(obj):
        for cand in candidates:
            hit = refers_to(str(c.get("image", "")), cand, exact)
            if not hit and env_vars is not None and cand in env_vars:
                hit = any(
                    refers_to(str(e.get("value", "")), cand, exact) for e in c.get("env") or []
                )
            if hit and cand not in found:
                found.append(cand)
    return found


def inject_images(
    obj: Obj,
    built: dict[str, str],
    *,
    env_vars: set[str] | None = None,
    commands: dict[str, tuple[list[str] | None, list[str] | None]] | None = None,
) -> Obj:
    """A copy of ``obj`` whose containers use the built refs (``built``: declared ref → built ref).

    ``env_vars`` names the refs to replace in env values too (``match_in_env_vars``); ``commands``
    gives a (command, args) override per declared ref (``entrypoint`` / ``container_args``).
    """
    out = copy.deepcopy(obj)
    commands = commands or {}
    exact = exact_names(built)
    for c in containers(out):
        image = str(c.get("image", ""))
        # the first declared image that matches wins, as in Tilt (never a second replacement)
        chosen = next((d for d in built if refers_to(image, d, exact)), None)
        for declared, final in built.items():
            if declared == chosen:
                c["image"] = final
                c.setdefault("imagePullPolicy", "IfNotPresent")
                command, args = commands.get(declared, (None, None))
                if command is not None:
                    c["command"] = command
                if args is not None:
                    c["args"] = args
            if env_vars is not None and declared in env_vars:
                for e in c.get("env") or []:
                    if isinstance(e.get("value"), str) and refers_to(e["value"], declared, exact):
                        e["value"] = final
    return out


def set_namespace(obj: Obj, namespace: str) -> Obj:
    """A copy in ``namespace`` unless it names one already or is cluster-scoped by kind."""
    if obj.get("kind") in CLUSTER_SCOPED_KINDS:
        return obj
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    if not meta.get("namespace"):
        meta["namespace"] = namespace
    return out


CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "StorageClass",
        "PriorityClass",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "CSIDriver",
        "IngressClass",
        "RuntimeClass",
        "VolumeAttachment",
    }
)


def apply_order(obj: Obj) -> int:
    """Objects others depend on (namespaces, CRDs, RBAC, config) are applied first."""
    order = [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "ClusterRoleBinding",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Service",
    ]
    kind = str(obj.get("kind"))
    return order.index(kind) if kind in order else len(order)
