"""Objects as plain dicts: manifests we did not write (bundles, charts, node maintenance)."""

from __future__ import annotations

from typing import Any

from lightkube import Client
from lightkube.core.exceptions import LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import DeleteOptions, ObjectMeta
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from flotilla.core.kube.client import Resource
from flotilla.core.kube.errors import (
    KubeError,
    KubeNotFoundError,
    KubeTooManyRequestsError,
    kube_errors,
)
from flotilla.core.kube.informers import to_dict

# --- Raw objects -------------------------------------------------------------------------------
# Systems that handle manifests they did not write (bundles, charts) apply them as plain dicts.
# Built-in kinds resolve through lightkube's registry; custom kinds need their plural and scope
# (from the CRD that defines them).


def resource_type(
    api_version: str, kind: str, *, plural: str | None = None, namespaced: bool | None = None
) -> type[Resource]:
    """The lightkube resource class for ``api_version``/``kind``.

    Built-in kinds need nothing else; for custom kinds pass ``plural`` and ``namespaced``.
    """

    known = resource_registry.get(api_version, kind)
    if known is not None:
        return known
    if plural is None:
        try:
            return resource_registry.load(api_version, kind)
        except (LoadResourceError, ImportError, AttributeError) as exc:
            raise KubeError(f"unknown kind {api_version}/{kind}: pass plural and scope") from exc
    group, _, version = api_version.rpartition("/")
    if namespaced:
        return create_namespaced_resource(group, version, kind, plural)
    return create_global_resource(group, version, kind, plural)


def _as_dict(obj: Any) -> dict[str, Any]:
    result = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(result)


def _is_namespaced(res: type[Resource]) -> bool:
    return issubclass(res, NamespacedResource)


def apply_raw(
    client: Client,
    obj: dict[str, Any],
    *,
    plural: str | None = None,
    namespaced: bool | None = None,
    force: bool = True,
    field_manager: str = "flotilla",
) -> dict[str, Any]:
    """Server-side apply of a manifest given as a dict; returns the object as stored.

    ``force`` takes over fields another manager owns, as ``kubectl apply --server-side
    --force-conflicts`` does: the caller is the declared owner of these objects.
    """

    res = resource_type(
        str(obj["apiVersion"]), str(obj["kind"]), plural=plural, namespaced=namespaced
    )
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "") or None if _is_namespaced(res) else None
    with kube_errors(f"apply {obj['kind']} {namespace + '/' if namespace else ''}{name}"):
        stored = api.patch(
            res,
            name,
            obj,
            namespace=namespace,
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=force,
        )
    return _as_dict(stored)


def get_raw(
    client: Client,
    api_version: str,
    kind: str,
    name: str,
    *,
    namespace: str | None = None,
    plural: str | None = None,
    namespaced: bool | None = None,
) -> dict[str, Any] | None:
    """The object as a dict, or None when it does not exist."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    try:
        with kube_errors(f"get {kind} {name}"):
            if _is_namespaced(res):
                return _as_dict(api.get(res, name, namespace=namespace))
            return _as_dict(api.get(res, name))
    except KubeNotFoundError:
        return None


def list_raw(
    client: Client,
    api_version: str,
    kind: str,
    *,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
    plural: str | None = None,
    namespaced: bool | None = None,
) -> list[dict[str, Any]]:
    """Objects of a kind as dicts; ``namespace=None`` lists all namespaces for namespaced kinds."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    with kube_errors(f"list {kind}"):
        if _is_namespaced(res):
            items = api.list(res, namespace=namespace or "*", labels=labels)
        else:
            items = api.list(res, labels=labels)
        return [_as_dict(i) for i in items]


def delete_raw(
    client: Client,
    api_version: str,
    kind: str,
    name: str,
    *,
    namespace: str | None = None,
    plural: str | None = None,
    namespaced: bool | None = None,
) -> bool:
    """Delete (background propagation); False when it was already gone."""
    res = resource_type(api_version, kind, plural=plural, namespaced=namespaced)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    try:
        with kube_errors(f"delete {kind} {name}"):
            if _is_namespaced(res):
                api.delete(res, name, namespace=namespace)
            else:
                api.delete(res, name)
    except KubeNotFoundError:
        return False
    return True


def create_raw(client: Client, resource: type[Any], body: dict[str, Any]) -> dict[str, Any]:
    """Create an object given as a plain dict; returns the stored object as a dict.

    An existing object raises :class:`KubeAlreadyExistsError` (a :class:`KubeConflictError`).
    """
    name = body.get("metadata", {}).get("name", "?")
    with kube_errors(f"create {body.get('kind', resource.__name__)} {name}"):
        created = client.create(resource.from_dict(body))
    return to_dict(created)


# --- Node maintenance: merge patches, field-selected lists, evictions --------------------------


def patch_merge_raw(
    client: Client,
    api_version: str,
    kind: str,
    name: str,
    patch: dict[str, Any],
    *,
    namespace: str | None = None,
) -> dict[str, Any]:
    """JSON merge patch (a ``None`` value removes a key, e.g. an annotation); the stored object."""

    res = resource_type(api_version, kind)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    with kube_errors(f"patch {kind} {name}"):
        if _is_namespaced(res):
            return _as_dict(
                api.patch(res, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
            )
        return _as_dict(api.patch(res, name, patch, patch_type=PatchType.MERGE))


def list_raw_fields(
    client: Client,
    api_version: str,
    kind: str,
    fields: dict[str, str],
    *,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Objects matching a field selector (e.g. pods by ``spec.nodeName``), as dicts."""
    res = resource_type(api_version, kind)
    api: Any = client  # lightkube's overloads are per-class; ours is dynamic
    with kube_errors(f"list {kind}"):
        if _is_namespaced(res):
            items = api.list(res, namespace=namespace or "*", fields=fields)
        else:
            items = api.list(res, fields=fields)
        return [_as_dict(i) for i in items]


def evict_pod(
    client: Client,
    name: str,
    namespace: str,
    *,
    grace_period_seconds: int | None = None,
) -> bool:
    """Ask the Eviction API to remove a pod, which honours PodDisruptionBudgets.

    True when accepted (or the pod is already gone); False when refused with 429 because a
    budget allows no disruption now (retry later). Other failures raise :class:`KubeError`.
    """

    body = Pod.Eviction(
        metadata=ObjectMeta(name=name, namespace=namespace),
        deleteOptions=DeleteOptions(gracePeriodSeconds=grace_period_seconds)
        if grace_period_seconds is not None
        else None,
    )
    try:
        with kube_errors(f"evict pod {namespace}/{name}"):
            client.create(body, name, namespace=namespace)
    except KubeNotFoundError:
        return True
    except KubeTooManyRequestsError:
        return False
    return True
