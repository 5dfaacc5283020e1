"""Tekton Triggers objects that start the function's PipelineRun on a git push. Pure.

A push event's ``after`` (the new commit, as GitHub, Gitea, GitLab and a post-receive hook that
posts ``{"after": NEWREV}`` all send it) becomes the run's ``git-revision``, so the run builds
exactly what was pushed. Only signed pushes count: Triggers' own ``github`` interceptor checks the
``X-Hub-Signature-256`` HMAC against the Secret ``<name>-webhook`` (key ``secret``) and the
``X-GitHub-Event: push`` header, so anything in the cluster that can reach the listener cannot
start a build of a revision of its choosing. The EventListener runs under its own ServiceAccount
bound to the two ClusterRoles Tekton Triggers ships for listeners.
"""

from __future__ import annotations

import copy
from typing import Any

from .model import FunctionSpec

__all__ = ["WEBHOOK_SECRET_KEY", "listener_url", "trigger_objects", "webhook_secret_name"]

_TRIGGERS_API = "triggers.tekton.dev/v1beta1"
_LABELS = {"app.kubernetes.io/managed-by": "flotilla", "app.kubernetes.io/component": "function"}
LISTENER_PORT = 8080  # Triggers' -el-port in its release
WEBHOOK_SECRET_KEY = "secret"


def webhook_secret_name(spec: FunctionSpec) -> str:
    return f"{spec.name}-webhook"


def _meta(name: str, namespace: str, fn: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**_LABELS, "flotilla.dev/function": fn},
    }


def listener_url(spec: FunctionSpec, namespace: str) -> str:
    """Where pushes are posted: the Service Triggers makes for the EventListener."""
    return f"http://el-{spec.name}.{namespace}.svc.cluster.local:{LISTENER_PORT}"


def trigger_objects(
    spec: FunctionSpec,
    namespace: str,
    run: dict[str, Any],
    *,
    pod_template: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """TriggerBinding, TriggerTemplate (the given PipelineRun, its revision from the push) and
    EventListener, with the listener's ServiceAccount and role bindings. ``pod_template``'s
    nodeSelector and tolerations also place the listener's pod."""
    name = spec.name
    account = f"{name}-triggers"
    template_run = copy.deepcopy(run)
    for param in template_run["spec"]["params"]:
        if param["name"] == "git-revision":
            param["value"] = "$(tt.params.git-revision)"
    binding = {
        "apiVersion": _TRIGGERS_API,
        "kind": "TriggerBinding",
        "metadata": _meta(f"{name}-push", namespace, name),
        "spec": {"params": [{"name": "git-revision", "value": "$(body.after)"}]},
    }
    template = {
        "apiVersion": _TRIGGERS_API,
        "kind": "TriggerTemplate",
        "metadata": _meta(name, namespace, name),
        "spec": {
            "params": [{"name": "git-revision", "description": "the pushed commit"}],
            "resourcetemplates": [template_run],
        },
    }
    listener_spec: dict[str, Any] = {
        "serviceAccountName": account,
        "triggers": [
            {
                "name": "push",
                "interceptors": [
                    {
                        "ref": {"name": "github", "kind": "ClusterInterceptor"},
                        "params": [
                            {
                                "name": "secretRef",
                                "value": {
                                    "secretName": webhook_secret_name(spec),
                                    "secretKey": WEBHOOK_SECRET_KEY,
                                },
                            },
                            {"name": "eventTypes", "value": ["push"]},
                        ],
                    }
                ],
                "bindings": [{"ref": f"{name}-push"}],
                "template": {"ref": name},
            }
        ],
    }
    placement = {
        k: v for k, v in (pod_template or {}).items() if k in ("nodeSelector", "tolerations")
    }
    if placement:
        listener_spec["resources"] = {
            "kubernetesResource": {"spec": {"template": {"spec": placement}}}
        }
    listener = {
        "apiVersion": _TRIGGERS_API,
        "kind": "EventListener",
        "metadata": _meta(name, namespace, name),
        "spec": listener_spec,
    }
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, namespace, name)},
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(account, namespace, name),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "tekton-triggers-eventlistener-roles",
            },
            "subjects": subject,
        },
        {  # cluster-scoped: listeners read ClusterTriggerBindings and ClusterInterceptors
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": f"{namespace}-{account}",
                "labels": {**_LABELS, "flotilla.dev/function": name},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "tekton-triggers-eventlistener-clusterroles",
            },
            "subjects": subject,
        },
        binding,
        template,
        listener,
    ]
