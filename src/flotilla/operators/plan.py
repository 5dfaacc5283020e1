"""Lifecycle decisions without I/O: what objects a bundle becomes, what an upgrade changes,
whether it may go ahead, and the per-operator state we keep in the cluster.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flotilla.operators.audit import AuditDiff, exceeds
from flotilla.operators.documents import Bundle
from flotilla.operators.models import Approval, Manifest, OperatorsError, Severity, dig, seq

__all__ = [
    "Approval",
    "InstallModeError",
    "ObjectRef",
    "OperatorState",
    "PendingPlan",
    "decide",
    "install_mode_for",
    "materialize",
    "objects_to_prune",
]

LABEL_OPERATOR = "flotilla.dev/operator"
LABEL_BUNDLE = "flotilla.dev/bundle"
# Kinds a bundle may carry that are namespaced (pkg/lib/bundle/supported_resources.go).
_NAMESPACED = {
    "Secret",
    "ConfigMap",
    "ServiceAccount",
    "Service",
    "Role",
    "RoleBinding",
    "PrometheusRule",
    "ServiceMonitor",
    "PodMonitor",
    "PodDisruptionBudget",
    "VerticalPodAutoscaler",
    "NetworkPolicy",
    "Deployment",
}
# Applied in this order: definitions before their users, RBAC before the pods that need it.
_ORDER = [
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "Role",
    "ClusterRoleBinding",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
]


class InstallModeError(OperatorsError):
    """The OperatorGroup asked for (namespaces to watch) is one the CSV does not support."""


INSTALL_MODES = ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")


_NAMESPACES_VIEW = {
    "apiGroups": [""],
    "resources": ["namespaces"],
    "verbs": ["get", "list", "watch"],
}
"""OLM's ``ensureSingletonRBAC`` adds it to the ClusterRole made of an AllNamespaces operator's
``permissions``: the operator may list the namespaces it watches."""


def supported_install_modes(csv: Manifest) -> list[str]:
    """The CSV's ``installModes`` marked supported, in OLM's order."""
    marked = {
        str(m.get("type"))
        for m in seq(dig(csv.body, "spec").get("installModes"))
        if isinstance(m, dict) and m.get("supported") is True
    }
    return [m for m in INSTALL_MODES if m in marked]


def install_mode_for(
    csv: Manifest, namespace: str, targets: list[str], all_namespaces: bool
) -> tuple[str, list[str]]:
    """The install mode and target namespaces of an install, as OLM derives them from the
    OperatorGroup: no targets is AllNamespaces, only the install namespace OwnNamespace, one
    other SingleNamespace, several MultiNamespace. A mode the CSV does not mark supported is
    refused, as OLM fails such a CSV (UnsupportedOperatorGroup).

    Without targets or ``all_namespaces``: OwnNamespace when supported, else AllNamespaces.
    """
    supported = supported_install_modes(csv)
    wanted = list(dict.fromkeys(t for t in targets if t))
    if all_namespaces and wanted:
        raise InstallModeError("give either all namespaces or target namespaces, not both")
    if all_namespaces:
        mode = "AllNamespaces"
    elif not wanted:
        if "OwnNamespace" in supported:
            mode, wanted = "OwnNamespace", [namespace]
        elif "AllNamespaces" in supported:
            mode = "AllNamespaces"
        else:
            if not supported:
                raise InstallModeError(
                    f"{csv.name} marks no install mode supported (spec.installModes); "
                    "OLM refuses to install it"
                )
            raise InstallModeError(
                f"{csv.name} supports neither OwnNamespace nor AllNamespaces (only "
                f"{', '.join(supported)}): name the namespaces it should watch "
                "with --target-namespace"
            )
    elif wanted == [namespace]:
        mode = "OwnNamespace"
    elif len(wanted) == 1:
        mode = "SingleNamespace"
    else:
        mode = "MultiNamespace"
    if mode not in supported:
        asked = ", ".join(wanted) if wanted else "all namespaces"
        raise InstallModeError(
            f"{csv.name} does not support the {mode} install mode (watching {asked}); "
            f"it supports: {', '.join(supported) or 'none'}"
        )
    return mode, ([] if mode == "AllNamespaces" else wanted)


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            str(obj["apiVersion"]),
            str(obj["kind"]),
            str(meta.get("name") or ""),
            str(meta.get("namespace") or ""),
        )

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass
class PendingPlan:
    """An install or upgrade waiting for ``flotilla operators approve``: exactly these bundles."""

    steps: list[str]
    reason: str
    diff: str
    channel: str


@dataclass
class OperatorState:
    """What we installed, stored as JSON in a ConfigMap per operator."""

    package: str
    channel: str
    namespace: str
    approval: str = Approval.MANUAL.value
    install_mode: str = "OwnNamespace"
    target_namespaces: list[str] = field(default_factory=list)
    """The namespaces the operator watches (OLM's OperatorGroup targets); empty: all."""
    installed: str = ""
    version: str = ""
    objects: list[ObjectRef] = field(default_factory=list)
    pending: PendingPlan | None = None
    history: list[str] = field(default_factory=list)
    deprecations: list[str] = field(default_factory=list)
    """The catalog's olm.deprecations for what is installed, as of the last install/upgrade."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OperatorState:
        raw = json.loads(text)
        raw["objects"] = [ObjectRef(**o) for o in seq(raw.get("objects"))]
        raw["pending"] = PendingPlan(**raw["pending"]) if raw.get("pending") else None
        return cls(**raw)

    @property
    def crds(self) -> list[str]:
        return [o.name for o in self.objects if o.kind == "CustomResourceDefinition"]


def _plain(obj: Any) -> Any:
    """Drop our line-marked dict subclass so objects serialise and compare as plain JSON."""
    return json.loads(json.dumps(obj))


def _labelled(obj: dict[str, Any], package: str, bundle: str) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    labels = meta.setdefault("labels", {}) or {}
    labels.update({LABEL_OPERATOR: package, LABEL_BUNDLE: bundle[:63]})
    meta["labels"] = labels
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    obj.pop("status", None)
    return obj


def _rbac(kind: str, name: str, ns: str, rules: list[Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "rules": rules,
    }


def _binding(kind: str, name: str, ns: str, role_kind: str, sa: str, sa_ns: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }


def materialize(
    bundle: Bundle,
    *,
    package: str,
    namespace: str,
    install_mode: str,
    target_namespaces: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The objects a bundle becomes, the way OLM v0 builds them from the CSV.

    Names do not carry the version, so an upgrade updates objects in place. Webhook definitions
    are not turned into configurations (that needs OLM's certificate injection); the audit still
    reports them. Outside AllNamespaces, the CSV's ``permissions`` become a Role and RoleBinding
    in the install namespace and in every target namespace (OLM copies them there), and the
    Deployment's pods carry the ``olm.targetNamespaces`` annotation operators read to know what
    to watch.
    """
    csv = bundle.csv
    if csv is None:
        raise ValueError(f"bundle {bundle.path} has no ClusterServiceVersion")
    bundle_name = csv.name
    objects: list[dict[str, Any]] = []
    for m in bundle.manifests:
        if m.kind == "ClusterServiceVersion":
            continue
        obj = _plain(m.body)
        if m.kind in _NAMESPACED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        objects.append(obj)
    install = _plain(((csv.body.get("spec") or {}).get("install") or {}).get("spec") or {})
    accounts: set[str] = set()
    cluster_wide = install_mode == "AllNamespaces"
    targets = [] if cluster_wide else list(target_namespaces or [namespace])
    for key in ("permissions", "clusterPermissions"):
        for perm in seq(install.get(key)):
            sa = str(perm.get("serviceAccountName") or "default")
            accounts.add(sa)
            name = f"{package}-{sa}" + ("-cluster" if key == "clusterPermissions" else "")
            if key == "clusterPermissions" or cluster_wide:
                rules = seq(perm.get("rules"))
                if key == "permissions":  # OLM adds this to the ClusterRole it lifts them into
                    rules = [*rules, _NAMESPACES_VIEW]
                objects.append(_rbac("ClusterRole", name, "", rules))
                objects.append(
                    _binding("ClusterRoleBinding", name, "", "ClusterRole", sa, namespace)
                )
            else:
                for ns in dict.fromkeys([namespace, *targets]):
                    objects.append(_rbac("Role", name, ns, seq(perm.get("rules"))))
                    objects.append(_binding("RoleBinding", name, ns, "Role", sa, namespace))
    for dep in seq(install.get("deployments")):
        spec = copy.deepcopy(dep.get("spec") or {})
        template = spec.setdefault("template", {})
        pod_meta = template.setdefault("metadata", {})
        notes = pod_meta.get("annotations")
        pod_meta["annotations"] = {
            **(notes if isinstance(notes, dict) else {}),
            "olm.targetNamespaces": ",".join(targets),
            "olm.operatorNamespace": namespace,
        }
        pod = template.setdefault("spec", {})
        accounts.add(str(pod.get("serviceAccountName") or "default"))
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": dep["name"],
                    "namespace": namespace,
                    "labels": dict(dep.get("label") or {}),
                },
                "spec": spec,
            }
        )
    declared = {ObjectRef.of(o).name for o in objects if o.get("kind") == "ServiceAccount"}
    for sa in sorted(accounts - declared - {"default"}):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": namespace},
            }
        )
    objects = [_labelled(o, package, bundle_name) for o in objects]
    rank = {k: i for i, k in enumerate(_ORDER)}
    return sorted(objects, key=lambda o: rank.get(str(o.get("kind")), len(_ORDER)))


def objects_to_prune(old: list[ObjectRef], new: list[dict[str, Any]]) -> list[ObjectRef]:
    """Objects the previous bundle had and the new one has not — CRDs are never pruned."""
    keep = {ObjectRef.of(o) for o in new}
    return [r for r in old if r not in keep and r.kind != "CustomResourceDefinition"]


def decide(approval: Approval, diff: AuditDiff, hold_on: Severity | None) -> str | None:
    """Why this change must wait for approval, or None when it may go ahead.

    ``manual`` always waits; ``auto`` waits when the change adds a finding at or above
    ``hold_on`` — automatic approval must not let a new version add cluster-admin unseen.
    """
    if approval is Approval.MANUAL:
        return "approval is manual for this operator"
    if exceeds(diff, hold_on):
        worst = max(f.severity for f in diff.added)
        rules = sorted({f.rule for f in diff.added if hold_on and f.severity >= hold_on})
        label = hold_on.label if hold_on else ""
        return (
            f"adds {worst.label} findings ({', '.join(rules)}), at or above the hold "
            f"threshold {label}"
        )
    return None
