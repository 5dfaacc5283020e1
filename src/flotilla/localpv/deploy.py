"""Deploy manifests for a real cluster, built from the same code as the CRDs the tests install.

Least privilege: every rule below names the reason it exists (see docs/localpv.md for the table).
The agent runs privileged because it formats and mounts devices and sets btrfs quotas; it is the
only privileged piece, and it creates no pods.
"""

from __future__ import annotations

from typing import Any

from flotilla.localpv.manifests import crds
from flotilla.localpv.model import GROUP, PROVISIONER

Obj = dict[str, Any]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


CONTROLLER_CLUSTER_RULES = [
    # read claims; drop selected-node (reschedule) -> patch
    _rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "patch"]),
    # report the grown size after expansion
    _rule([""], ["persistentvolumeclaims/status"], ["patch"]),
    # create PVs for Ready volumes, resize them, delete released ones
    _rule([""], ["persistentvolumes"], ["get", "list", "watch", "create", "patch", "delete"]),
    # complete the binding ourselves (bind_claims): the PV's phase is status
    _rule([""], ["persistentvolumes/status"], ["patch"]),
    # node existence, UID (re-created nodes) and labels (affinity value, capacity topology)
    _rule([""], ["nodes"], ["get", "list", "watch"]),
    _rule([""], ["events"], ["create"]),
    _rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
    # the CSIDriver object that turns on the scheduler's capacity check for our classes
    _rule(["storage.k8s.io"], ["csidrivers"], ["get", "create"]),
    _rule([GROUP], ["localvolumes"], ["get", "list", "watch", "create", "patch", "delete"]),
    _rule([GROUP], ["localnodes"], ["get", "list", "watch"]),
]
CONTROLLER_NAMESPACE_RULES = [
    _rule(
        ["storage.k8s.io"],
        ["csistoragecapacities"],
        ["get", "list", "watch", "create", "patch", "delete"],
    ),
    _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "patch"]),
]
AGENT_CLUSTER_RULES = [
    # its own LocalVolumes: status and finalizer removal are patches
    _rule([GROUP], ["localvolumes"], ["get", "list", "watch", "patch"]),
    _rule([GROUP], ["localnodes", "blockdevices"], ["get", "create", "patch"]),
    # its own Node's UID, to refuse volumes recorded for an earlier node of the same name
    _rule([""], ["nodes"], ["get", "list", "watch"]),
    _rule([""], ["events"], ["create"]),
]


def _binding(kind: str, name: str, namespace: str) -> Obj:
    meta: Obj = {"name": name}
    if kind == "RoleBinding":
        meta["namespace"] = namespace
    role_kind = "Role" if kind == "RoleBinding" else "ClusterRole"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": name.split(":")[0], "namespace": namespace}
        ],
    }


def deploy_manifests(*, image: str, namespace: str, hostpath_root: str) -> list[Obj]:
    """Everything a cluster needs, in apply order."""
    ctl, agent = "flotilla-localpv-controller", "flotilla-localpv-agent"
    rbac = "rbac.authorization.k8s.io/v1"
    docs: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    docs += crds()
    for sa in (ctl, agent):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": namespace},
            }
        )
    docs += [
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": ctl},
            "rules": CONTROLLER_CLUSTER_RULES,
        },
        _binding("ClusterRoleBinding", ctl, namespace),
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": ctl, "namespace": namespace},
            "rules": CONTROLLER_NAMESPACE_RULES,
        },
        _binding("RoleBinding", ctl, namespace),
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": agent},
            "rules": AGENT_CLUSTER_RULES,
        },
        _binding("ClusterRoleBinding", agent, namespace),
    ]
    labels = {"app.kubernetes.io/name": ctl}
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": ctl, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": ctl,
                        "containers": [
                            {
                                "name": "controller",
                                "image": image,
                                "args": [
                                    "localpv",
                                    "controller",
                                    "--namespace",
                                    namespace,
                                    "--leader-elect",
                                ],
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                                "securityContext": {
                                    "runAsNonRoot": True,
                                    "runAsUser": 65532,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        }
    )
    agent_labels = {"app.kubernetes.io/name": agent}
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": agent, "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": agent_labels},
                "template": {
                    "metadata": {"labels": agent_labels},
                    "spec": {
                        "serviceAccountName": agent,
                        "priorityClassName": "system-node-critical",
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [
                            {
                                "name": "agent",
                                "image": image,
                                "args": [
                                    "localpv",
                                    "agent",
                                    "--node",
                                    "$(NODE_NAME)",
                                    "--hostpath-root",
                                    hostpath_root,
                                ],
                                "env": [
                                    {
                                        "name": "NODE_NAME",
                                        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                    }
                                ],
                                "securityContext": {"privileged": True},
                                "volumeMounts": [
                                    {
                                        "name": "storage",
                                        "mountPath": hostpath_root,
                                        "mountPropagation": "Bidirectional",
                                    },
                                    {"name": "dev", "mountPath": "/dev"},
                                ],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "storage",
                                "hostPath": {"path": hostpath_root, "type": "DirectoryOrCreate"},
                            },
                            {"name": "dev", "hostPath": {"path": "/dev"}},
                        ],
                    },
                },
            },
        }
    )
    docs.append(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "flotilla-local"},
            "provisioner": PROVISIONER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
            "allowVolumeExpansion": True,
            "parameters": {"backend": "hostpath"},
        }
    )
    return docs
