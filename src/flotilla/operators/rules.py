"""The audit rules: what is risky about a grant, a CRD or a webhook, and why.

The RBAC rules follow what rbac-tool, KubiScan, kubescape and Polaris flag (see
docs/operators.md for the mapping). Severities are for cluster-wide grants; a grant limited to
one namespace is reported one level lower, because it cannot reach the rest of the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from flotilla.operators.documents import line_of
from flotilla.operators.models import (
    Finding,
    Grant,
    LoadProblem,
    Manifest,
    PolicyRule,
    Source,
    dig,
    seq,
)
from flotilla.operators.podsecurity import WORKLOAD_KINDS, workload_findings
from flotilla.operators.rbac import allows_any, csv_base_name, csv_install_mode, policy_rule
from flotilla.operators.ruleset import _RULE_LIST, RULES, RuleInfo, make_finding

__all__ = ["RULES", "RuleInfo", "grant_findings", "manifest_findings", "problem_findings"]


_CHECKED = [r for r in _RULE_LIST if r.checks]
_CHECKED_GROUPS = frozenset(group for r in _CHECKED for group, _res, _verbs in r.checks) | {"*"}
"""API groups some rule checks: a rule in none of them (an operator's own CRD group, which
differs per operator) triggers nothing, known without trying every check."""
_NOT_NARROWED = frozenset({"create", "list", "watch", "deletecollection", "*"})
_KUBE_SYSTEM_REACH = ("cluster", "all namespaces", "namespace kube-system")
CLUSTER_SCOPED = frozenset(
    {
        "nodes",
        "namespaces",
        "persistentvolumes",
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
        "apiservices",
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
        "certificatesigningrequests",
        "signers",
        "storageclasses",
        "csinodes",
        "csidrivers",
        "volumeattachments",
        "priorityclasses",
        "runtimeclasses",
        "ingressclasses",
        "gatewayclasses",
        "users",
        "groups",
        "uids",
        "userextras",
        "constrainttemplates",
        "clusterpolicies",
        "clustercleanuppolicies",
        "tokenreviews",
        "subjectaccessreviews",
    }
)
"""Resources no RoleBinding can grant: the API server ignores them under a namespace."""


_finding = make_finding


def grant_findings(grants: Iterable[Grant]) -> Iterator[Finding]:
    """Risky-permission findings, one per (grant, rule) that matches.

    What a policy rule triggers depends on the rule and the grant's scope alone, so it is
    worked out once per (rule object, scope) and only the subject, source and role are filled
    in per grant: the roles of a fleet share a few rules (``policy_rule`` gives equal rules one
    object), and 60,000 manifests' 113,000 grants took 1.4 s under the profiler one by one."""
    memo: dict[tuple[int, str], tuple[PolicyRule, list[tuple[str, str, bool, bool]]]] = {}
    for g in grants:
        key = (id(g.rule), g.scope)
        known = memo.get(key)
        if known is None:  # the memo holds the rule, so its id is not reused for another
            known = memo[key] = (g.rule, _rule_findings(g.rule, g.scope))
        found = known[1]
        if not found:
            continue
        where = f"{g.role}, {g.scope}"
        for rule_id, text, namespaced, narrowed in found:
            yield _finding(
                rule_id,
                g.subject,
                g.source,
                f"{text} ({where})",
                origin=g.origin,
                namespaced=namespaced,
                narrowed=narrowed,
            )


def _rule_findings(r: PolicyRule, scope: str) -> list[tuple[str, str, bool, bool]]:
    """(rule id, message before the role, namespaced, narrowed) of each finding ``r`` makes
    when granted in ``scope``."""
    ns = scope not in ("cluster", "all namespaces")  # Grant.cluster_wide
    found: list[tuple[str, str, bool, bool]] = []
    if r.non_resource_urls and "*" in r.non_resource_urls:
        found.append(("rbac-nonresource-wildcard", r.describe(), ns, False))
    if not r.resources:
        return found
    if "*" in r.verbs and "*" in r.resources and "*" in r.api_groups:
        found.append(("rbac-wildcard-all", r.describe(), ns, False))
        return found
    if "*" in r.verbs or "*" in r.resources or "*" in r.api_groups:
        found.append(("rbac-wildcard", r.describe(), ns, False))
    names = f" (names: {','.join(r.resource_names)})" if r.resource_names else ""
    confined = ns and scope != "namespace kube-system"
    for rule_id, verbs_s, res_s, narrowed in _matched_rules(r, ns, scope in _KUBE_SYSTEM_REACH):
        found.append((rule_id, f"{verbs_s} on {res_s}{names}", confined, narrowed))
    return found


def _matched_rules(r: PolicyRule, ns: bool, reach: bool) -> list[tuple[str, str, str, bool]]:
    """(rule id, verbs, resources, narrowed) of each risky-permission rule ``r`` triggers.

    Depends only on the policy rule, whether it is namespace-confined and whether it reaches
    kube-system.
    """
    found: list[tuple[str, str, str, bool]] = []
    if _CHECKED_GROUPS.isdisjoint(r.api_groups):
        return found
    for info in _CHECKED:
        if info.id == "configmap-kube-system-write" and not reach:
            continue
        pairs: list[tuple[str, str]] = []
        for group, resources, verbs in info.checks:
            pairs.extend(allows_any(r, group, resources, verbs))
        if ns:  # a RoleBinding cannot grant cluster-scoped resources
            pairs = [(v, x) for v, x in pairs if x.split("/")[0] not in CLUSTER_SCOPED]
        if pairs:
            verbs_s = ",".join(sorted({v for v, _ in pairs}))
            res_s = ",".join(sorted({x for _, x in pairs}))
            # resourceNames narrow get/update/patch/delete, never create/list/watch
            narrowed = bool(r.resource_names) and not any(v in _NOT_NARROWED for v, _ in pairs)
            found.append((info.id, verbs_s, res_s, narrowed))
    return found


def _crd_summary(m: Manifest) -> tuple[str, list[str], list[str]]:
    spec = dig(m.body, "spec")
    served = [
        str(v.get("name"))
        for v in seq(spec.get("versions"))
        if isinstance(v, dict) and v.get("served", True)
    ]
    storage = [
        str(v.get("name"))
        for v in seq(spec.get("versions"))
        if isinstance(v, dict) and v.get("storage")
    ]
    if not served and spec.get("version"):
        served = storage = [str(spec["version"])]
    return str(spec.get("scope") or "Namespaced"), served, storage


def _hook_targets(hook: dict[str, object]) -> list[str]:
    """``create apps/deployments``: operation and group/resource of each rule of a webhook."""
    return sorted(
        {
            f"{str(op).lower()} {'/'.join(filter(None, (str(grp) or 'core', str(res))))}"
            for rule in seq(hook.get("rules"))
            if isinstance(rule, dict)
            for grp in (seq(rule.get("apiGroups")) or [""])
            for res in seq(rule.get("resources"))
            for op in seq(rule.get("operations"))
        }
    )


def _webhook_findings(m: Manifest) -> Iterator[Finding]:
    rule_id = (
        "mutating-webhook" if m.kind == "MutatingWebhookConfiguration" else "validating-webhook"
    )
    for hook in seq(m.body.get("webhooks")):
        if not isinstance(hook, dict):
            continue
        targets = _hook_targets(hook)
        yield _finding(
            rule_id,
            f"{m.kind} {m.name}",
            Source(m.source.file, line_of(hook, m.source.line)),
            f"webhook {hook.get('name')} on {', '.join(targets) or 'nothing'} "
            f"(failurePolicy {hook.get('failurePolicy', 'Fail')})",
            origin=m.origin,
        )


def _csv_findings(m: Manifest, install_mode: str) -> Iterator[Finding]:
    spec = dig(m.body, "spec")
    install = dig(spec, "install", "spec")
    perms = seq(install.get("permissions"))
    if install_mode == "AllNamespaces" and perms:
        yield _finding(
            "scope-promoted",
            f"CSV {csv_base_name(m.name)}",
            Source(m.source.file, line_of(perms[0], m.source.line)),
            "`permissions` are installed as a ClusterRole (AllNamespaces install mode)",
            origin=m.origin,
        )
    for hook in seq(spec.get("webhookdefinitions")):
        if not isinstance(hook, dict):
            continue
        kind = str(hook.get("type") or "")
        src = Source(m.source.file, line_of(hook, m.source.line))
        if kind == "ConversionWebhook":
            crds = ",".join(str(c) for c in seq(hook.get("conversionCRDs")))
            yield _finding(
                "crd-conversion-webhook",
                f"CSV {csv_base_name(m.name)}",
                src,
                f"conversion webhook {hook.get('generateName')} for {crds or '?'}",
                origin=m.origin,
            )
            continue
        rule_id = "mutating-webhook" if kind == "MutatingAdmissionWebhook" else "validating-webhook"
        targets = _hook_targets(hook)
        yield _finding(
            rule_id,
            f"CSV {csv_base_name(m.name)}",
            src,
            f"webhook {hook.get('generateName')} on {', '.join(targets) or 'nothing'} "
            f"(failurePolicy {hook.get('failurePolicy', 'Fail')})",
            origin=m.origin,
        )


def manifest_findings(
    manifests: Sequence[Manifest],
    *,
    existing_crds: Mapping[str, str] | None = None,
    owner: str = "",
    install_mode: str | None = None,
) -> Iterator[Finding]:
    """Findings about what the manifests add: CRDs, webhooks, cluster-admin bindings.

    ``existing_crds`` maps CRD names already in the cluster to their owner (the
    ``flotilla.dev/operator`` label, or ""); a CRD owned by ``owner`` is an upgrade, not a conflict.
    """
    seen_crds: dict[str, str] = {}
    seen_packages: dict[str, str] = {}
    for m in manifests:
        if m.kind == "CustomResourceDefinition":
            scope, served, storage = _crd_summary(m)
            yield _finding(
                "crd-added",
                f"CRD {m.name}",
                m.source,
                f"adds cluster-scoped CRD {m.name} ({scope} objects; served "
                f"{','.join(served) or '-'}; storage {','.join(storage) or '-'})",
                origin=m.origin,
                identity=m.name,
            )
            conv = dig(m.body, "spec", "conversion")
            if conv.get("strategy") == "Webhook":
                yield _finding(
                    "crd-conversion-webhook",
                    f"CRD {m.name}",
                    Source(m.source.file, line_of(conv, m.source.line)),
                    f"conversion of {m.name} goes through a webhook",
                    origin=m.origin,
                )
            if (
                existing_crds is not None
                and m.name in existing_crds
                and existing_crds[m.name] != owner
            ):
                held = existing_crds[m.name] or "someone else"
                yield _finding(
                    "crd-conflict",
                    f"CRD {m.name}",
                    m.source,
                    f"{m.name} already exists in the cluster (owned by {held})",
                    origin=m.origin,
                )
            elif (
                m.name in seen_crds
                and seen_crds[m.name] != m.origin
                and not (m.package and seen_packages.get(m.name) == m.package)
            ):  # two versions of one package define the same CRD: an upgrade, no conflict
                yield _finding(
                    "crd-conflict",
                    f"CRD {m.name}",
                    m.source,
                    f"{m.name} is also defined by {seen_crds[m.name]}",
                    origin=m.origin,
                )
            seen_crds.setdefault(m.name, m.origin)
            seen_packages.setdefault(m.name, m.package)
        elif m.kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            yield from _webhook_findings(m)
        elif m.kind == "ClusterServiceVersion":
            yield from _csv_findings(m, csv_install_mode(m, install_mode))
            yield from workload_findings(m)
        elif m.kind in WORKLOAD_KINDS:
            yield from workload_findings(m)
        elif m.kind == "ClusterRole":
            yield from _aggregation_findings(m)
        elif m.kind in ("ClusterRoleBinding", "RoleBinding"):
            yield from _subject_findings(m)
            ref = dig(m.body, "roleRef")
            if ref.get("kind") == "ClusterRole" and ref.get("name") == "cluster-admin":
                subjects = [
                    f"{s.get('kind')} {s.get('name')}"
                    for s in seq(m.body.get("subjects"))
                    if isinstance(s, dict)
                ]
                yield _finding(
                    "cluster-admin-binding",
                    f"{m.kind} {m.name}",
                    Source(m.source.file, line_of(ref, m.source.line)),
                    f"binds cluster-admin to {', '.join(subjects) or 'no one'}",
                    origin=m.origin,
                    namespaced=m.kind == "RoleBinding",
                )


def problem_findings(problems: Iterable[LoadProblem]) -> Iterator[Finding]:
    """A finding per unreadable part of the input (and per duplicate key), at its line."""
    for p in problems:
        yield _finding(p.rule, p.source.file, p.source, p.message, origin=p.source.file)


_AGGREGATE_LABELS = {
    f"rbac.authorization.k8s.io/aggregate-to-{role}": role for role in ("admin", "edit", "view")
}
_SUBJECT_RULES = {
    ("User", "system:anonymous"): "anonymous-binding",
    ("Group", "system:unauthenticated"): "anonymous-binding",
    ("Group", "system:authenticated"): "authenticated-binding",
    ("Group", "system:masters"): "system-masters-binding",
}


def _aggregation_findings(m: Manifest) -> Iterator[Finding]:
    labels = dig(m.body, "metadata", "labels")
    into = [role for label, role in _AGGREGATE_LABELS.items() if str(labels.get(label)) == "true"]
    if into:
        rules = [policy_rule(raw) for raw in seq(m.body.get("rules"))]
        shown = "; ".join(r.describe() for r in rules if r is not None) or "no rules"
        yield _finding(
            "aggregate-to-builtin",
            f"ClusterRole {m.name}",
            Source(m.source.file, line_of(dig(m.body, "metadata"), m.source.line)),
            f"adds {shown} to built-in {', '.join(into)}",
            origin=m.origin,
        )


def _subject_findings(m: Manifest) -> Iterator[Finding]:
    ref = dig(m.body, "roleRef")
    for s in seq(m.body.get("subjects")):
        if not isinstance(s, dict):
            continue
        rule_id = _SUBJECT_RULES.get((str(s.get("kind")), str(s.get("name"))))
        if rule_id:
            yield _finding(
                rule_id,
                f"{m.kind} {m.name}",
                Source(m.source.file, line_of(s, m.source.line)),
                f"binds {ref.get('kind')} {ref.get('name')} to {s.get('kind')} {s.get('name')}",
                origin=m.origin,
                namespaced=m.kind == "RoleBinding",
            )
