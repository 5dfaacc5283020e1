"""Pod security of the operator's own workloads: what the operator's pods can do to the node.

An operator's RBAC is only half of what it gets: a privileged pod, a hostPath or the container
runtime's socket are root on the node whatever the roles say. Read from workload manifests
(Deployment, DaemonSet, ...) and from a CSV's ``install.spec.deployments``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flotilla.operators.documents import line_of
from flotilla.operators.models import Finding, Manifest, Source, dig, seq
from flotilla.operators.ruleset import make_finding

__all__ = ["WORKLOAD_KINDS", "workload_findings"]

WORKLOAD_KINDS = frozenset(
    {"Pod", "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob"}
)
_RUNTIME_SOCKETS = ("docker.sock", "containerd.sock", "crio.sock", "cri-dockerd.sock")
_ROOT_CAPS = {"SYS_ADMIN", "ALL", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE"}


def _pod_specs(m: Manifest) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) for each pod template the manifest carries."""
    if m.kind == "ClusterServiceVersion":
        for dep in seq(dig(m.body, "spec", "install", "spec").get("deployments")):
            if isinstance(dep, dict):
                yield f"Deployment {dep.get('name')}", dig(dep, "spec", "template", "spec")
    elif m.kind == "Pod":
        yield f"Pod {m.name}", dig(m.body, "spec")
    elif m.kind == "CronJob":
        yield (
            f"CronJob {m.name}",
            dig(m.body, "spec", "jobTemplate", "spec", "template", "spec"),
        )
    else:
        yield f"{m.kind} {m.name}", dig(m.body, "spec", "template", "spec")


def workload_findings(m: Manifest) -> Iterator[Finding]:
    """Privileged containers, host namespaces, hostPath and runtime sockets, token mounts."""
    for workload, spec in _pod_specs(m):
        if not spec:
            continue
        where = Source(m.source.file, line_of(spec, m.source.line))

        def finding(
            rule: str,
            message: str,
            line_obj: object = None,
            at: Source = where,
            who: str = workload,
        ) -> Finding:
            src = Source(at.file, line_of(line_obj, at.line)) if line_obj else at
            return make_finding(rule, who, src, message, origin=m.origin)

        hosts = [k for k in ("hostPID", "hostIPC", "hostNetwork") if spec.get(k) is True]
        if hosts:
            yield finding("pod-host-namespace", f"{', '.join(hosts)}: true")
        for vol in seq(spec.get("volumes")):
            path = str(dig(vol, "hostPath").get("path") or "")
            if not path:
                continue
            if path.rstrip("/").endswith(_RUNTIME_SOCKETS) or path.rstrip("/") in (
                "/var/run",
                "/run",
                "/run/containerd",
                "/var/run/docker",
            ):
                rule = "pod-runtime-socket"
            else:
                rule = "pod-hostpath"
            yield finding(rule, f"hostPath {path} (volume {vol.get('name')})", vol)
        containers = seq(spec.get("containers")) + seq(spec.get("initContainers"))
        for c in containers:
            ctx = dig(c, "securityContext")
            caps = {str(x).upper() for x in seq(dig(ctx, "capabilities").get("add"))}
            risky = sorted(caps & _ROOT_CAPS)
            if ctx.get("privileged") is True:
                yield finding("pod-privileged", f"container {c.get('name')}: privileged", c)
            elif risky:
                yield finding(
                    "pod-privileged", f"container {c.get('name')}: adds {','.join(risky)}", c
                )
        if spec.get("automountServiceAccountToken") is not False:
            account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            yield finding(
                "pod-automount-token",
                f"mounts the token of service account {account} "
                "(automountServiceAccountToken is not false)",
            )
