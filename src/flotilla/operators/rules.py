"""The audit rules: what is risky about a grant, a CRD or a webhook, and why.

The RBAC rules follow what rbac-tool, KubiScan, kubescape and Polaris flag (see
docs/operators.md for the mapping). Severities are for cluster-wide grants; a grant limited to
one namespace is reported one level lower, because it cannot reach the rest of the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from flotilla.operators.documents import line_of
from flotilla.operators.models import (
    Finding,
    Grant,
    LoadProblem,
    Manifest,
    Severity,
    Source,
    dig,
    seq,
)
from flotilla.operators.rbac import RBAC_GROUP, allows_any, csv_base_name, csv_install_mode

__all__ = ["RULES", "RuleInfo", "grant_findings", "manifest_findings", "problem_findings"]


@dataclass(frozen=True)
class RuleInfo:
    id: str
    severity: Severity
    title: str
    why: str
    checks: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
    """(api group, resources, verbs) triples; any allowed pair triggers the rule."""


_WRITE = ("create", "update", "patch")
_WORKLOADS = (
    "pods",
    "deployments",
    "daemonsets",
    "statefulsets",
    "replicasets",
    "jobs",
    "cronjobs",
    "replicationcontrollers",
)
_C, _H, _M, _L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

_RULE_LIST = [
    RuleInfo(
        "rbac-wildcard-all",
        _C,
        "All verbs on all resources",
        "`*` verbs on `*` resources in `*` groups is cluster-admin in all but name.",
    ),
    RuleInfo(
        "rbac-wildcard",
        _M,
        "Wildcard in a rule",
        "A wildcard grants whatever the API adds later, including resources the author "
        "never thought about.",
    ),
    RuleInfo(
        "rbac-nonresource-wildcard",
        _M,
        "All non-resource URLs",
        "`*` on nonResourceURLs reaches every raw API path (/metrics, /debug, /logs).",
    ),
    RuleInfo(
        "secrets-read",
        _H,
        "Reads secrets",
        "get/list/watch on secrets returns their values: every token and password in scope.",
        (("", ("secrets",), ("get", "list", "watch")),),
    ),
    RuleInfo(
        "workload-write",
        _H,
        "Creates or changes workloads",
        "Whoever can create pods (or what makes pods) can run any image with any service "
        "account in scope and read what it can read.",
        (
            ("", ("pods", "replicationcontrollers"), _WRITE),
            ("apps", ("deployments", "daemonsets", "statefulsets", "replicasets"), _WRITE),
            ("batch", ("jobs", "cronjobs"), _WRITE),
        ),
    ),
    RuleInfo(
        "rbac-escalate",
        _C,
        "Changes RBAC (escalate, bind, create roles or bindings)",
        "escalate/bind or writing roles and bindings lets a subject give itself, or anyone, "
        "more rights than it was granted.",
        (
            (RBAC_GROUP, ("roles", "clusterroles"), ("escalate", "bind", *_WRITE)),
            (RBAC_GROUP, ("rolebindings", "clusterrolebindings"), _WRITE),
        ),
    ),
    RuleInfo(
        "impersonate",
        _C,
        "Impersonates users, groups or service accounts",
        "Impersonation acts as another identity, e.g. system:masters.",
        (
            ("", ("users", "groups", "serviceaccounts"), ("impersonate",)),
            ("authentication.k8s.io", ("userextras/*", "uids"), ("impersonate",)),
        ),
    ),
    RuleInfo(
        "pod-exec",
        _H,
        "Exec, attach, port-forward or debug containers",
        "Running commands in other pods reads their secrets and acts as their identity.",
        (
            ("", ("pods/exec", "pods/attach", "pods/portforward"), ("create", "get")),
            ("", ("pods/ephemeralcontainers",), ("update", "patch")),
        ),
    ),
    RuleInfo(
        "nodes-proxy",
        _C,
        "nodes/proxy",
        "nodes/proxy reaches the kubelet API directly: exec into any pod on the node, "
        "bypassing admission and audit.",
        (("", ("nodes/proxy",), ("get", "create")),),
    ),
    RuleInfo(
        "serviceaccount-token",
        _H,
        "Mints service account tokens",
        "Creating serviceaccounts/token issues credentials for any account in scope.",
        (("", ("serviceaccounts/token",), ("create",)),),
    ),
    RuleInfo(
        "crd-write",
        _M,
        "Creates or changes CRDs",
        "CRDs are cluster-scoped; changing one can break or hijack other operators' APIs.",
        (("apiextensions.k8s.io", ("customresourcedefinitions",), (*_WRITE, "delete")),),
    ),
    RuleInfo(
        "webhook-config-write",
        _C,
        "Changes admission webhook configurations",
        "A subject that writes webhook configurations can see and rewrite every object "
        "sent to the API server.",
        (
            (
                "admissionregistration.k8s.io",
                ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"),
                _WRITE,
            ),
        ),
    ),
    RuleInfo(
        "admission-policy-write",
        _H,
        "Changes admission policies",
        "ValidatingAdmissionPolicies decide what the whole cluster may create.",
        (
            (
                "admissionregistration.k8s.io",
                (
                    "validatingadmissionpolicies",
                    "validatingadmissionpolicybindings",
                    "mutatingadmissionpolicies",
                    "mutatingadmissionpolicybindings",
                ),
                _WRITE,
            ),
        ),
    ),
    RuleInfo(
        "csr-approve",
        _H,
        "Approves certificate signing requests",
        "Approving CSRs (with a signer's approve verb) issues client certificates, "
        "e.g. for system:masters.",
        (
            ("certificates.k8s.io", ("certificatesigningrequests/approval",), ("update", "patch")),
            ("certificates.k8s.io", ("signers",), ("approve",)),
        ),
    ),
    RuleInfo(
        "pv-create",
        _H,
        "Creates persistent volumes",
        "A PersistentVolume can be a hostPath onto any node's filesystem.",
        (("", ("persistentvolumes",), ("create",)),),
    ),
    RuleInfo(
        "cluster-admin-binding",
        _C,
        "Binding to cluster-admin",
        "The subject gets every permission on every resource, now and in the future.",
    ),
    RuleInfo(
        "scope-promoted",
        _M,
        "Namespaced permissions become cluster-wide",
        "Installed for all namespaces, OLM turns the CSV's `permissions` into a ClusterRole "
        "and ClusterRoleBinding: what reads like one namespace covers all of them.",
    ),
    RuleInfo(
        "crd-added",
        _L,
        "Adds a CRD",
        "CRDs are cluster-scoped and outlive the operator; every tenant shares the name.",
    ),
    RuleInfo(
        "crd-conflict",
        _H,
        "CRD name already taken",
        "Installing over another owner's CRD replaces its schema for every user of it.",
    ),
    RuleInfo(
        "crd-conversion-webhook",
        _H,
        "CRD conversion webhook",
        "Every read and write of the CRD's objects goes through the operator's webhook; "
        "when it is down, the API for those objects is down.",
    ),
    RuleInfo(
        "mutating-webhook",
        _H,
        "Mutating admission webhook",
        "A mutating webhook sees and may rewrite every object it matches, before it is stored.",
    ),
    RuleInfo(
        "validating-webhook",
        _M,
        "Validating admission webhook",
        "A validating webhook sees every object it matches and can block writes "
        "cluster-wide when it fails closed.",
    ),
    RuleInfo(
        "load-error",
        _H,
        "Input that could not be read",
        "What could not be read was not audited: it may hold any grant. Fix the file, or "
        "review it by hand.",
    ),
    RuleInfo(
        "duplicate-key",
        _M,
        "Duplicate key in a manifest",
        "The API server keeps the last value; a reviewer reading the first one approves "
        "something else than what is installed.",
    ),
    RuleInfo(
        "crd-version-removed",
        _H,
        "CRD version no longer served",
        "Objects and clients using the removed version stop working after the upgrade.",
    ),
]
RULES: dict[str, RuleInfo] = {r.id: r for r in _RULE_LIST}
_CHECKED = [r for r in _RULE_LIST if r.checks]


def _finding(
    rule_id: str,
    subject: str,
    source: Source,
    message: str,
    *,
    origin: str = "",
    namespaced: bool = False,
    identity: str = "",
) -> Finding:
    info = RULES[rule_id]
    severity = Severity(max(1, info.severity - 1)) if namespaced else info.severity
    return Finding(
        rule=rule_id,
        severity=severity,
        subject=subject,
        source=source,
        message=message,
        why=info.why,
        origin=origin,
        identity=identity,
    )


def grant_findings(grants: Sequence[Grant]) -> Iterator[Finding]:
    """Risky-permission findings, one per (grant, rule) that matches."""
    for g in grants:
        r = g.rule
        where = f"{g.role}, {g.scope}"
        ns = not g.cluster_wide
        if r.non_resource_urls and "*" in r.non_resource_urls:
            yield _finding(
                "rbac-nonresource-wildcard",
                g.subject,
                g.source,
                f"{r.describe()} ({where})",
                origin=g.origin,
                namespaced=ns,
            )
        if not r.resources:
            continue
        if "*" in r.verbs and "*" in r.resources and "*" in r.api_groups:
            yield _finding(
                "rbac-wildcard-all",
                g.subject,
                g.source,
                f"{r.describe()} ({where})",
                origin=g.origin,
                namespaced=ns,
            )
            continue
        if "*" in r.verbs or "*" in r.resources or "*" in r.api_groups:
            yield _finding(
                "rbac-wildcard",
                g.subject,
                g.source,
                f"{r.describe()} ({where})",
                origin=g.origin,
                namespaced=ns,
            )
        for info in _CHECKED:
            pairs: list[tuple[str, str]] = []
            for group, resources, verbs in info.checks:
                pairs.extend(allows_any(r, group, resources, verbs))
            if pairs:
                verbs_s = ",".join(sorted({v for v, _ in pairs}))
                res_s = ",".join(sorted({x for _, x in pairs}))
                yield _finding(
                    info.id,
                    g.subject,
                    g.source,
                    f"{verbs_s} on {res_s} ({where})",
                    origin=g.origin,
                    namespaced=ns,
                )


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


def _webhook_findings(m: Manifest) -> Iterator[Finding]:
    rule_id = (
        "mutating-webhook" if m.kind == "MutatingWebhookConfiguration" else "validating-webhook"
    )
    for hook in seq(m.body.get("webhooks")):
        if not isinstance(hook, dict):
            continue
        targets = sorted(
            {
                f"{str(op).lower()} {res}"
                for rule in seq(hook.get("rules"))
                if isinstance(rule, dict)
                for res in seq(rule.get("resources"))
                for op in seq(rule.get("operations"))
            }
        )
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
        targets = sorted(
            {
                f"{str(op).lower()} {res}"
                for rule in seq(hook.get("rules"))
                if isinstance(rule, dict)
                for res in seq(rule.get("resources"))
                for op in seq(rule.get("operations"))
            }
        )
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
            elif m.name in seen_crds and seen_crds[m.name] != m.origin:
                yield _finding(
                    "crd-conflict",
                    f"CRD {m.name}",
                    m.source,
                    f"{m.name} is also defined by {seen_crds[m.name]}",
                    origin=m.origin,
                )
            seen_crds.setdefault(m.name, m.origin)
        elif m.kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            yield from _webhook_findings(m)
        elif m.kind == "ClusterServiceVersion":
            yield from _csv_findings(m, csv_install_mode(m, install_mode))
        elif m.kind in ("ClusterRoleBinding", "RoleBinding"):
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
