"""Who gets which permission, and where: RBAC and CSV permissions turned into grants.

OLM materialises CSV ``permissions`` as a Role in the operator namespace and a copy in each
namespace the OperatorGroup targets — but as a ClusterRole when the operator is installed for all
namespaces — and ``clusterPermissions`` as a ClusterRole in every mode.
Raw Role/ClusterRole manifests are joined with their bindings here too, so one list answers
"what does this install grant, to whom, and how far does it reach".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flotilla.operators.documents import line_of
from flotilla.operators.models import Grant, Manifest, PolicyRule, Source, dig, seq

__all__ = [
    "BUILTIN_CLUSTER_ROLES",
    "allows",
    "csv_base_name",
    "csv_install_mode",
    "grants_from_manifests",
    "mode_for_targets",
    "policy_rule",
]

RBAC_GROUP = "rbac.authorization.k8s.io"
ALL_VERBS = ("*",)
VIEW_VERBS = ("get", "list", "watch")

# The built-in roles bindings most often point at; their rules as the API server defines them,
# reduced to what matters for an audit.
BUILTIN_CLUSTER_ROLES: dict[str, tuple[PolicyRule, ...]] = {
    "cluster-admin": (
        PolicyRule(api_groups=("*",), resources=("*",), verbs=ALL_VERBS),
        PolicyRule(non_resource_urls=("*",), verbs=ALL_VERBS),
    ),
    "admin": (
        PolicyRule(api_groups=("", "apps", "batch"), resources=("*",), verbs=ALL_VERBS),
        PolicyRule(api_groups=(RBAC_GROUP,), resources=("roles", "rolebindings"), verbs=ALL_VERBS),
    ),
    "edit": (
        PolicyRule(
            api_groups=("", "apps", "batch"),
            resources=("*",),
            verbs=("create", "update", "patch", "delete", "get", "list", "watch"),
        ),
    ),
    "view": (
        PolicyRule(
            api_groups=("", "apps", "batch"),
            resources=("pods", "services", "deployments"),
            verbs=("get", "list", "watch"),
        ),
    ),
}


def csv_base_name(name: str) -> str:
    """``etcdoperator.v0.9.2`` -> ``etcdoperator``: stable across versions, for diffs."""
    return re.sub(r"\.v?\d+\.\d+\.\d+.*$", "", name)


def _strs(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        items = tuple(value)
        try:
            "".join(items)  # every item a string (the common case), checked in C: 0.3 us a list
        except TypeError:  # instead of 0.9 us for a None test and str() per item
            return tuple(str(v) for v in items if v is not None)
        return items
    return ()


def _lowered(value: Any) -> tuple[str, ...]:
    """``_strs`` in lower case; verbs are nearly always written so, and one ``lower`` of them
    all joined says whether any needs it."""
    items = _strs(value)
    joined = "".join(items)
    return items if joined.lower() == joined else tuple(map(str.lower, items))


def policy_rule(
    raw: Any, known: dict[tuple[Any, ...], PolicyRule] | None = None
) -> PolicyRule | None:
    """A PolicyRule from its manifest form; None if it is not a mapping.

    ``known``: rules made before, by value, to return the same object for the same rule: a
    fleet of roles repeats a few rules thousands of times, and one object each lets the audit
    work out each rule's findings and its text once (keyed by the object)."""
    if not isinstance(raw, dict):
        return None
    get = raw.get
    names, urls = get("resourceNames"), get("nonResourceURLs")
    fields = (
        _strs(get("apiGroups")),
        _strs(get("resources")),
        _lowered(get("verbs")),
        () if names is None else _strs(names),
        () if urls is None else _strs(urls),
    )
    if known is None:
        return PolicyRule(*fields)
    rule = known.get(fields)
    if rule is None:
        rule = known[fields] = PolicyRule(*fields)
    return rule


def _resource_matches(pattern: str, resource: str) -> bool:
    if pattern == "*" or pattern == resource:
        return True
    if "/" in pattern and "/" in resource:
        p_res, p_sub = pattern.split("/", 1)
        res, sub = resource.split("/", 1)
        # "*/scale" is that subresource of every resource; "pods/*" every subresource of pods.
        return (p_res == "*" and p_sub == sub) or (p_res == res and p_sub == "*")
    return False


def allows(rule: PolicyRule, group: str, resource: str, verb: str) -> bool:
    """Does ``rule`` allow ``verb`` on ``group/resource``? (Kubernetes RBAC semantics.)

    ``resourceNames`` still count: they narrow get/update but cannot narrow create/list/watch,
    and an auditor would rather over-report a named grant than miss a real one.
    """
    if rule.non_resource_urls and not rule.resources:
        return False
    if "*" not in rule.verbs and verb not in rule.verbs:
        return False
    if "*" not in rule.api_groups and group not in rule.api_groups:
        return False
    return any(_resource_matches(p, resource) for p in rule.resources)


def allows_any(
    rule: PolicyRule, group: str, resources: Iterable[str], verbs: Iterable[str]
) -> list[tuple[str, str]]:
    """Every (verb, resource) pair out of the given ones that ``rule`` allows."""
    if "*" not in rule.api_groups and group not in rule.api_groups:
        return []  # the common case, decided once instead of per pair
    if "*" not in rule.verbs:
        verbs = [v for v in verbs if v in rule.verbs]
        if not verbs:
            return []
    return [(v, r) for r in resources for v in verbs if allows(rule, group, r, v)]


@dataclass(frozen=True)
class _Role:
    kind: str
    name: str
    namespace: str
    rules: tuple[tuple[PolicyRule, Source], ...]
    origin: str = ""


def _role_rules(
    m: Manifest, known: dict[tuple[Any, ...], PolicyRule] | None = None
) -> tuple[tuple[PolicyRule, Source], ...]:
    out: list[tuple[PolicyRule, Source]] = []
    for raw in seq(m.body.get("rules")):
        rule = policy_rule(raw, known)
        if rule is not None:
            out.append((rule, Source(m.source.file, line_of(raw, m.source.line))))
    return tuple(out)


def _subjects(m: Manifest, default_ns: str) -> list[str]:
    subjects = []
    for s in seq(m.body.get("subjects")):
        if not isinstance(s, dict):
            continue
        kind = str(s.get("kind") or "")
        name = str(s.get("name") or "")
        if kind == "ServiceAccount":
            subjects.append(f"ServiceAccount {s.get('namespace') or default_ns}/{name}")
        else:
            subjects.append(f"{kind} {name}")
    return subjects


def csv_install_mode(csv: Manifest, requested: str | None = None) -> str:
    """The install mode to reason about: the requested one, or the widest the CSV supports.

    Auditing the widest mode shows the worst an install can grant; the lifecycle passes the mode
    it actually installs with.
    """
    if requested:
        return requested
    spec = dig(csv.body, "spec")
    supported = {
        str(m.get("type"))
        for m in seq(spec.get("installModes"))
        if isinstance(m, dict) and m.get("supported") is True
    }
    for mode in ("AllNamespaces", "MultiNamespace", "SingleNamespace", "OwnNamespace"):
        if mode in supported:
            return mode
    return "OwnNamespace"


def mode_for_targets(namespace: str, targets: Sequence[str], all_namespaces: bool) -> str | None:
    """The install mode an OperatorGroup with these targets gives (None: nothing said), as OLM
    derives it: all namespaces, only the install namespace (Own), one other (Single), several
    (Multi)."""
    wanted = list(dict.fromkeys(t for t in targets if t))
    if all_namespaces:
        return "AllNamespaces"
    if not wanted:
        return None
    if wanted == [namespace]:
        return "OwnNamespace"
    return "SingleNamespace" if len(wanted) == 1 else "MultiNamespace"


NAMESPACES_VIEW = PolicyRule(api_groups=("",), resources=("namespaces",), verbs=VIEW_VERBS)
"""What OLM adds to the ClusterRole it lifts ``permissions`` into for AllNamespaces
(``ensureSingletonRBAC``): the operator may list the namespaces it watches."""


def _permission_scopes(mode: str, namespace: str, targets: Sequence[str]) -> list[str]:
    """Where a CSV's ``permissions`` end up, as OLM installs them.

    OLM's resolver makes a Role and RoleBinding in the install namespace; for an OperatorGroup
    targeting other namespaces (Single/MultiNamespace) OLM copies both into each target
    namespace (``ensureTenantRBAC``), the binding still naming the operator's service account;
    for AllNamespaces it lifts them into a ClusterRole and ClusterRoleBinding
    (``ensureSingletonRBAC``). Targets unknown (no ``--target-namespace``): the install
    namespace and a stand-in for the namespaces it will be given.
    """
    if mode == "AllNamespaces":
        return ["all namespaces"]
    if mode == "OwnNamespace":
        return [f"namespace {namespace}"]
    wanted = [t for t in dict.fromkeys(targets) if t and t != namespace]
    if not wanted:
        return [f"namespace {namespace}", "each target namespace"]
    return [f"namespace {ns}" for ns in (namespace, *wanted)]


def _csv_grants(
    csv: Manifest,
    namespace: str,
    install_mode: str | None,
    targets: Sequence[str] = (),
    known: dict[tuple[Any, ...], PolicyRule] | None = None,
) -> Iterator[Grant]:
    spec = dig(csv.body, "spec", "install", "spec")
    mode = csv_install_mode(csv, install_mode)
    name = csv_base_name(csv.name)
    for key in ("clusterPermissions", "permissions"):
        scopes = (
            ["cluster"]
            if key == "clusterPermissions"
            else _permission_scopes(mode, namespace, targets)
        )
        for perm in seq(spec.get(key)):
            if not isinstance(perm, dict):
                continue
            sa = f"ServiceAccount {namespace}/{perm.get('serviceAccountName') or 'default'}"
            perm_source = Source(csv.source.file, line_of(perm, csv.source.line))
            rules = [
                (rule, Source(csv.source.file, line_of(raw, csv.source.line)))
                for raw in seq(perm.get("rules"))
                if (rule := policy_rule(raw, known)) is not None
            ]
            if key == "permissions" and mode == "AllNamespaces":
                rules.append((NAMESPACES_VIEW, perm_source))
            for scope in scopes:
                for rule, source in rules:
                    yield Grant(
                        subject=sa,
                        role=f"CSV {name} {key}",
                        scope=scope,
                        rule=rule,
                        origin=csv.origin,
                        source=source,
                    )


def _aggregate(
    roles: dict[tuple[str, str, str], _Role],
    manifests: Sequence[Manifest],
    known: dict[tuple[Any, ...], PolicyRule] | None = None,
) -> None:
    """Fill aggregated ClusterRoles from the input ClusterRoles their selectors match."""
    by_name = {m.name: m for m in manifests if m.kind == "ClusterRole"}
    for m in by_name.values():
        agg = m.body.get("aggregationRule")
        if not isinstance(agg, dict):
            continue
        selectors = [s for s in seq(agg.get("clusterRoleSelectors")) if isinstance(s, dict)]
        extra: list[tuple[PolicyRule, Source]] = []
        for other in by_name.values():
            labels = dig(other.body, "metadata", "labels")
            if other is not m and any(selects(sel, labels) for sel in selectors):
                extra.extend(_role_rules(other, known))
        key = ("ClusterRole", "", m.name)
        roles[key] = _Role("ClusterRole", m.name, "", roles[key].rules + tuple(extra), m.origin)


def selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    """A label selector (``matchLabels`` and ``matchExpressions``) as the API server reads it;
    an empty selector selects nothing here, as in aggregation."""
    match = dig(selector, "matchLabels")
    exprs = [e for e in seq(selector.get("matchExpressions")) if isinstance(e, dict)]
    if not match and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in exprs:
        key, op = str(e.get("key")), str(e.get("operator"))
        values = [str(v) for v in seq(e.get("values"))]
        present = key in labels
        ok = {
            "In": present and str(labels.get(key)) in values,
            "NotIn": not present or str(labels.get(key)) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def grants_from_manifests(
    manifests: Sequence[Manifest],
    *,
    namespace: str = "operators",
    install_mode: str | None = None,
    target_namespaces: Sequence[str] = (),
) -> list[Grant]:
    """Every grant the manifests make: CSV permissions plus raw roles joined to their bindings.

    ``namespace`` is where the operator is (to be) installed: it names service accounts of the
    CSV and of bindings without a namespace; ``target_namespaces`` are the OperatorGroup's
    targets, into which OLM copies the CSV's ``permissions``. Roles no binding refers to are
    listed as ``(unbound)`` so nothing requested is invisible.
    """
    install_mode = install_mode or mode_for_targets(namespace, target_namespaces, False)
    grants: list[Grant] = []
    roles: dict[tuple[str, str, str], _Role] = {}
    known: dict[tuple[Any, ...], PolicyRule] = {}  # one object per distinct rule
    for m in manifests:
        if m.kind == "ClusterServiceVersion":
            grants.extend(_csv_grants(m, namespace, install_mode, target_namespaces, known))
        elif m.kind in ("Role", "ClusterRole") and m.api_version.startswith(RBAC_GROUP):
            ns = m.namespace or namespace if m.kind == "Role" else ""
            roles[(m.kind, ns, m.name)] = _Role(m.kind, m.name, ns, _role_rules(m, known), m.origin)
    _aggregate(roles, manifests, known)
    bound: set[tuple[str, str, str]] = set()
    for m in manifests:
        if m.kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = dig(m.body, "roleRef")
        ref_kind, ref_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        ns = (m.namespace or namespace) if m.kind == "RoleBinding" else ""
        scope = f"namespace {ns}" if m.kind == "RoleBinding" else "cluster"
        role = roles.get((ref_kind, ns if ref_kind == "Role" else "", ref_name))
        if role is not None:
            bound.add((role.kind, role.namespace, role.name))
            rules = role.rules
        elif ref_kind == "ClusterRole" and ref_name in BUILTIN_CLUSTER_ROLES:
            rules = tuple((r, m.source) for r in BUILTIN_CLUSTER_ROLES[ref_name])
        else:
            continue
        for subject in _subjects(m, ns or namespace):
            for rule, src in rules:
                grants.append(
                    Grant(
                        subject=subject,
                        role=f"{ref_kind} {ref_name}",
                        scope=scope,
                        rule=rule,
                        source=src,
                        origin=m.origin,
                    )
                )
    for key, role in roles.items():
        if key in bound:
            continue
        scope = "cluster" if role.kind == "ClusterRole" else f"namespace {role.namespace}"
        for rule, src in role.rules:
            grants.append(
                Grant(
                    subject="(unbound)",
                    role=f"{role.kind} {role.name}",
                    scope=scope,
                    rule=rule,
                    source=src,
                    origin=role.origin,
                )
            )
    return grants
