"""Every audit rule: its id, severity with the reason, and the (group, resources, verbs) it checks.

Data only, so docs/operators.md's table and the tests can list the rules without running one.
``anchors`` names the rules of rbac-tool, KubiScan and kubescape each one follows.
"""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.operators.models import Finding, Severity, Source
from flotilla.operators.rbac import RBAC_GROUP

__all__ = ["RULES", "RuleInfo", "make_finding"]


@dataclass(frozen=True)
class RuleInfo:
    id: str
    severity: Severity
    title: str
    why: str
    checks: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
    """(api group, resources, verbs) triples; any allowed pair triggers the rule."""
    anchors: str = ""
    """The rules of rbac-tool, KubiScan, kubescape (C-xxxx) this one follows."""


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
        "escalate or bind on roles",
        "escalate/bind let a subject write roles and bindings granting more than it holds: "
        "itself, or anyone, up to cluster-admin.",
        ((RBAC_GROUP, ("roles", "clusterroles"), ("escalate", "bind")),),
        "rbac-tool Privilege Escalators via bind or escalate; KubiScan risky-any-verb-roles; "
        "kubescape C-0191",
    ),
    RuleInfo(
        "rbac-write",
        _H,
        "Writes roles or bindings (without bind/escalate)",
        "The API server refuses a role or binding granting more than the writer holds unless "
        "it also has escalate/bind, so this spreads the writer's own rights, not more.",
        (
            (RBAC_GROUP, ("roles", "clusterroles"), _WRITE),
            (RBAC_GROUP, ("rolebindings", "clusterrolebindings"), _WRITE),
        ),
        "KubiScan risky-create-rolebinding-*, risky-add-rolebinding",
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
        "delete-all",
        _H,
        "Deletes every resource of core, apps, batch (or all groups)",
        "Deleting `*` removes workloads, secrets and namespaces' contents: data destruction.",
        tuple(
            (group, ("*",), ("delete", "deletecollection")) for group in ("", "apps", "batch", "*")
        ),
        "KubiScan risky-any-resource-delete; kubescape C-0007",
    ),
    RuleInfo(
        "delete-pods",
        _M,
        "Deletes pods",
        "Deleting pods takes services down, and evicts pods so a node of your choosing gets them.",
        (("", ("pods",), ("delete", "deletecollection")),),
        "kubescape C-0007",
    ),
    RuleInfo(
        "delete-events",
        _M,
        "Deletes events",
        "Deleting events erases the traces an investigation reads.",
        (
            ("", ("events",), ("delete", "deletecollection")),
            ("events.k8s.io", ("events",), ("delete", "deletecollection")),
        ),
        "kubescape C-0031",
    ),
    RuleInfo(
        "webhook-config-delete",
        _H,
        "Deletes admission webhook configurations",
        "Deleting a validating webhook switches off the policy it enforces, cluster-wide.",
        (
            (
                "admissionregistration.k8s.io",
                ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"),
                ("delete", "deletecollection"),
            ),
        ),
        "kubescape C-0007, C-0281",
    ),
    RuleInfo(
        "apiservice-write",
        _H,
        "Writes APIServices",
        "An APIService sends a whole API group to a service of the writer's choosing, which "
        "then sees those requests and answers for the API.",
        (("apiregistration.k8s.io", ("apiservices",), (*_WRITE, "delete")),),
        "kubescape C-0089 (aggregated API server redirect)",
    ),
    RuleInfo(
        "configmap-kube-system-write",
        _H,
        "Changes configmaps in kube-system",
        "The CoreDNS ConfigMap lives there: whoever changes it redirects the cluster's DNS.",
        (("", ("configmaps",), ("update", "patch")),),
        "kubescape C-0037 (CoreDNS poisoning)",
    ),
    RuleInfo(
        "network-write",
        _M,
        "Changes network policies or ingresses",
        "Network policies and ingresses decide who reaches what: removing one opens a service.",
        (
            (
                "networking.k8s.io",
                ("networkpolicies", "ingresses", "ingressclasses"),
                (*_WRITE, "delete"),
            ),
        ),
        "rbac-tool Networking - Manipulate Networking and Network Access related resources",
    ),
    RuleInfo(
        "gateway-api-write",
        _M,
        "Changes Gateway API resources",
        "Gateways and routes decide which traffic reaches which service, across namespaces "
        "with a ReferenceGrant.",
        (
            (
                "gateway.networking.k8s.io",
                (
                    "gateways",
                    "gatewayclasses",
                    "httproutes",
                    "grpcroutes",
                    "tcproutes",
                    "tlsroutes",
                    "udproutes",
                    "referencegrants",
                    "backendtlspolicies",
                ),
                (*_WRITE, "delete"),
            ),
        ),
        "rbac-tool Networking - Manipulate Gateway API Resources",
    ),
    RuleInfo(
        "policy-engine-write",
        _H,
        "Administers Gatekeeper or Kyverno",
        "Changing policy-engine policies or exceptions switches off what the cluster forbids "
        "(and Kyverno's mutate/generate policies act with Kyverno's own rights).",
        (
            ("templates.gatekeeper.sh", ("constrainttemplates",), (*_WRITE, "delete")),
            ("config.gatekeeper.sh", ("configs",), (*_WRITE, "delete")),
            (
                "mutations.gatekeeper.sh",
                ("assign", "assignmetadata", "modifyset", "assignimage"),
                (*_WRITE, "delete"),
            ),
            (
                "kyverno.io",
                (
                    "clusterpolicies",
                    "policies",
                    "policyexceptions",
                    "cleanuppolicies",
                    "clustercleanuppolicies",
                ),
                (*_WRITE, "delete"),
            ),
        ),
        "rbac-tool Open Policy Agent (OPA) GateKeeper Administration, Kyverno Administration",
    ),
    RuleInfo(
        "anonymous-binding",
        _C,
        "Binding to system:anonymous or system:unauthenticated",
        "Anyone who reaches the API server, without credentials, gets the role.",
        anchors="kubescape C-0262",
    ),
    RuleInfo(
        "authenticated-binding",
        _H,
        "Binding to system:authenticated",
        "Every user and every service account of every namespace gets the role.",
        anchors="kubescape C-0265",
    ),
    RuleInfo(
        "system-masters-binding",
        _C,
        "Binding to system:masters",
        "system:masters bypasses RBAC altogether; members cannot be limited by any role.",
        anchors="kubescape C-0246",
    ),
    RuleInfo(
        "aggregate-to-builtin",
        _M,
        "Rules added to the built-in admin, edit or view roles",
        "An aggregate-to-admin/edit/view label adds the role's rules to every holder of that "
        "built-in role, in every namespace it is bound in.",
        anchors="OLM aggregated CRD roles; rbac-tool/Polaris built-in role checks",
    ),
    RuleInfo(
        "pod-privileged",
        _H,
        "Privileged container or added capabilities",
        "A privileged container (or one with SYS_ADMIN, ALL) is root on the node.",
        anchors="kubescape C-0057, C-0046, C-0016",
    ),
    RuleInfo(
        "pod-host-namespace",
        _H,
        "Shares the node's PID, IPC or network namespace",
        "hostPID sees every process of the node, hostNetwork every port and the node's identity.",
        anchors="kubescape C-0038, C-0041",
    ),
    RuleInfo(
        "pod-hostpath",
        _H,
        "Mounts a hostPath volume",
        "A hostPath reads (or writes) the node's files: kubelet credentials, other pods' data.",
        anchors="kubescape C-0048, C-0045",
    ),
    RuleInfo(
        "pod-runtime-socket",
        _C,
        "Mounts the container runtime socket",
        "The docker/containerd/CRI-O socket starts privileged containers on the node: root.",
        anchors="kubescape C-0074",
    ),
    RuleInfo(
        "pod-automount-token",
        _L,
        "Mounts its service account token automatically",
        "Whoever breaks into the pod holds the token, and with it every grant above.",
        anchors="kubescape C-0034, C-0190",
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
_LOWERED = {s: tuple(Severity(max(1, s - down)) for down in range(3)) for s in Severity}
"""A severity lowered 0, 1 or 2 levels (never below low), looked up: calling the enum for each
of 172,000 findings cost 0.13 s under the profiler."""


def make_finding(
    rule_id: str,
    subject: str,
    source: Source,
    message: str,
    *,
    origin: str = "",
    namespaced: bool = False,
    narrowed: bool = False,
    identity: str = "",
) -> Finding:
    """A finding of ``rule_id``: one level lower when confined to a namespace, and one more when
    resourceNames narrow every verb that triggered it."""
    info = RULES[rule_id]
    return Finding(
        rule=rule_id,
        severity=_LOWERED[info.severity][namespaced + narrowed],
        subject=subject,
        source=source,
        message=message,
        why=info.why,
        origin=origin,
        identity=identity,
    )
