"""The Kubernetes adapter of the operators system: state ConfigMaps, apply, delete, read back.

It only translates: every decision is made in ``plan``/``audit``; every call goes through
``flotilla.core.kube``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from lightkube import Client

from flotilla.core.kube import (
    KubeError,
    apply_raw,
    delete_raw,
    get_raw,
    list_raw,
    wait_until,
)
from flotilla.operators.loading import LineDict
from flotilla.operators.models import Manifest, Source
from flotilla.operators.plan import LABEL_OPERATOR, ObjectRef, OperatorState

__all__ = [
    "apply_objects",
    "cluster_manifests",
    "crd_object_counts",
    "delete_crd_objects",
    "delete_objects",
    "delete_state",
    "deployment_ready",
    "ensure_namespace",
    "existing_crds",
    "list_states",
    "read_state",
    "write_state",
]

STATE_LABEL = "flotilla.dev/operator-state"
CRD_API = "apiextensions.k8s.io/v1"


def _state_name(package: str) -> str:
    return f"flotilla-operator-{package}"


def ensure_namespace(client: Client, name: str) -> None:
    """Create the namespace if needed (server-side apply is idempotent)."""
    apply_raw(client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def read_state(client: Client, namespace: str, package: str) -> OperatorState | None:
    """The operator's stored state, or None when we never installed (or requested) it."""
    cm = get_raw(client, "v1", "ConfigMap", _state_name(package), namespace=namespace)
    if cm is None:
        return None
    return OperatorState.from_json((cm.get("data") or {})["state.json"])


def write_state(client: Client, namespace: str, state: OperatorState) -> None:
    """One ConfigMap per operator: approvals are per operator, not per namespace as in OLM."""
    apply_raw(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": _state_name(state.package),
                "namespace": namespace,
                "labels": {STATE_LABEL: "true", LABEL_OPERATOR: state.package},
            },
            "data": {"state.json": state.to_json()},
        },
    )


def delete_state(client: Client, namespace: str, package: str) -> None:
    """Forget the operator (after uninstall, or to drop a pending request)."""
    delete_raw(client, "v1", "ConfigMap", _state_name(package), namespace=namespace)


def list_states(client: Client, namespace: str) -> list[OperatorState]:
    """Every operator we manage from this state namespace, by name."""
    items = list_raw(client, "v1", "ConfigMap", namespace=namespace, labels={STATE_LABEL: "true"})
    return sorted(
        (OperatorState.from_json((i.get("data") or {})["state.json"]) for i in items),
        key=lambda s: s.package,
    )


def existing_crds(client: Client) -> dict[str, str]:
    """CRD name -> the operator that owns it (our label), "" for anyone else's."""
    return {
        str(c["metadata"]["name"]): str((c["metadata"].get("labels") or {}).get(LABEL_OPERATOR, ""))
        for c in list_raw(client, CRD_API, "CustomResourceDefinition")
    }


def _established(client: Client, name: str) -> bool | None:
    crd = get_raw(client, CRD_API, "CustomResourceDefinition", name)
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    ok = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
    return True if ok else None


def apply_objects(client: Client, objects: list[dict[str, Any]]) -> list[ObjectRef]:
    """Server-side apply in the given order, waiting for CRDs to be established first."""
    applied: list[ObjectRef] = []
    crds = [o for o in objects if o.get("kind") == "CustomResourceDefinition"]
    for obj in crds:
        apply_raw(client, obj)
        applied.append(ObjectRef.of(obj))
    for obj in crds:
        name = ObjectRef.of(obj).name
        wait_until(
            functools.partial(_established, client, name),
            timeout=30,
            what=f"CRD {name} established",
        )
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            apply_raw(client, obj)
            applied.append(ObjectRef.of(obj))
    return applied


def delete_objects(client: Client, refs: list[ObjectRef]) -> list[ObjectRef]:
    """Delete in reverse apply order; returns those that existed."""
    deleted = []
    for ref in reversed(refs):
        if delete_raw(client, ref.api_version, ref.kind, ref.name, namespace=ref.namespace or None):
            deleted.append(ref)
    return deleted


def _crd_resource(crd: dict[str, Any]) -> tuple[str, str, bool]:
    spec = crd.get("spec") or {}
    versions = spec.get("versions") or []
    version = next((v["name"] for v in versions if v.get("storage")), versions[0]["name"])
    return (
        f"{spec['group']}/{version}",
        str(spec["names"]["plural"]),
        spec.get("scope") == "Namespaced",
    )


def _list_custom(
    client: Client, api_version: str, kind: str, plural: str, namespaced: bool
) -> list[dict[str, Any]]:
    """List a CRD's objects, riding out "storage is (re)initializing" right after creation."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return list_raw(client, api_version, kind, plural=plural, namespaced=namespaced)
        except KubeError as exc:
            if not exc.retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def crd_object_counts(client: Client, names: list[str]) -> dict[str, int]:
    """How many objects each CRD has, across namespaces — what an uninstall would leave behind."""
    counts = {}
    for name in names:
        crd = get_raw(client, CRD_API, "CustomResourceDefinition", name)
        if crd is None:
            continue
        api_version, plural, namespaced = _crd_resource(crd)
        kind = str(crd["spec"]["names"]["kind"])
        counts[name] = len(_list_custom(client, api_version, kind, plural, namespaced))
    return counts


def delete_crd_objects(client: Client, name: str) -> int:
    """Delete every object of the CRD, then the CRD itself; returns how many objects went."""
    crd = get_raw(client, CRD_API, "CustomResourceDefinition", name)
    if crd is None:
        return 0
    api_version, plural, namespaced = _crd_resource(crd)
    kind = str(crd["spec"]["names"]["kind"])
    items: list[dict[str, Any]] = []
    if not crd["metadata"].get("deletionTimestamp"):
        items = _list_custom(client, api_version, kind, plural, namespaced)
        for item in items:
            meta = item["metadata"]
            delete_raw(
                client,
                api_version,
                kind,
                meta["name"],
                namespace=meta.get("namespace"),
                plural=plural,
                namespaced=namespaced,
            )
        delete_raw(client, CRD_API, "CustomResourceDefinition", name)
    # The API server removes the CRD once its objects are gone; a re-install must not race it.
    wait_until(
        lambda: (
            True if get_raw(client, CRD_API, "CustomResourceDefinition", name) is None else None
        ),
        timeout=60,
        what=f"CRD {name} deleted",
    )
    return len(items)


def deployment_ready(client: Client, namespace: str, name: str) -> str:
    """``ready/desired`` replicas, or ``missing``."""
    dep = get_raw(client, "apps/v1", "Deployment", name, namespace=namespace)
    if dep is None:
        return "missing"
    status = dep.get("status") or {}
    return f"{status.get('readyReplicas') or 0}/{(dep.get('spec') or {}).get('replicas', 1)}"


_AUDITED = [
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    (CRD_API, "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
]


def _system(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    labels = meta.get("labels") or {}
    return (
        name.startswith("system:")
        or meta.get("namespace") == "kube-system"
        or labels.get("kubernetes.io/bootstrapping") == "rbac-defaults"
    )


def _relined(value: Any) -> Any:
    if isinstance(value, dict):
        out = LineDict({k: _relined(v) for k, v in value.items()})
        out.line, out.key_lines = 0, {}
        return out
    if isinstance(value, list):
        return [_relined(v) for v in value]
    return value


def cluster_manifests(client: Client, *, include_system: bool = False) -> list[Manifest]:
    """The live objects the audit reads, as manifests whose source is ``cluster:Kind/name``.

    Built-in ``system:`` roles and kube-system are skipped unless asked for, as rbac-tool does.
    """
    manifests = []
    for api_version, kind in _AUDITED:
        for item in list_raw(client, api_version, kind):
            if not include_system and _system(item):
                continue
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            meta = item.get("metadata") or {}
            where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
            ref = f"cluster:{kind}/{where}{meta.get('name')}"
            manifests.append(Manifest(body=_relined(item), source=Source(ref), origin="cluster"))
    return manifests
