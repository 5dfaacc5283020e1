"""The dev loop's Kubernetes adapter: apply, wait for readiness, find pods, live-update them.

Everything goes through ``flotilla.core.kube``; readiness rules are pure functions at the top.
"""

from __future__ import annotations

import io
import logging
import shlex
import tarfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lightkube import Client

from flotilla.core.kube import (
    KubeError,
    KubeInvalidError,
    apply_raw,
    delete_raw,
    exec_websocket,
    get_raw,
    list_raw,
    wait_until,
)
from flotilla.dev.plan import manifests
from flotilla.dev.plan.decide import Action

logger = logging.getLogger(__name__)
MANAGED_BY = "flotilla-dev"
RESOURCE_LABEL = "dev.flotilla.io/resource"
_WAITING_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
REPLACEABLE = {"Job", "Pod"}


# --- pure readiness rules ----------------------------------------------------------------------
def workload_ready(obj: dict[str, Any]) -> bool:
    """Has the controller rolled out the current spec and are enough replicas available?"""
    kind = obj.get("kind")
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and (
        (status.get("observedGeneration") or 0) < (meta.get("generation") or 0)
    ):
        return False
    if kind in ("Deployment", "StatefulSet"):
        # kubectl rollout status: all replicas updated, no old ones left, the new ones available.
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas") or 0
        if (
            kind == "StatefulSet"
            and status.get("updateRevision") != status.get("currentRevision")
            and updated < want
        ):
            return False
        avail = status.get("availableReplicas" if kind == "Deployment" else "readyReplicas") or 0
        return bool(updated >= want and (status.get("replicas") or 0) <= updated and avail >= want)
    if kind in ("ReplicaSet", "ReplicationController"):
        return bool((status.get("availableReplicas") or 0) >= spec.get("replicas", 1))
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        return bool(
            status.get("updatedNumberScheduled", 0) >= want and status.get("numberReady", 0) >= want
        )
    if kind == "Job":
        return bool((status.get("succeeded") or 0) >= (spec.get("completions") or 1))
    if kind == "Pod":
        return pod_ready(obj) or (status.get("phase") == "Succeeded")
    return True  # CronJob and others: applied is as ready as they get


def pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def pod_failure(pod: dict[str, Any]) -> str:
    """Why a pod cannot become ready by itself (image pull, crash loop, failed job pod), or ''."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return f"pod {pod['metadata']['name']} failed: {status.get('reason') or ''}".strip()
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _WAITING_ERRORS:
            return (
                f"pod {pod['metadata']['name']} container {cs.get('name')}: "
                f"{waiting['reason']}: {waiting.get('message', '')}"
            ).strip()
    return ""


def pod_summary(pod: dict[str, Any]) -> dict[str, Any]:
    """What the UI and API show of a pod: phase, readiness, restarts, a waiting/terminated reason
    (``CrashLoopBackOff``, ``ImagePullBackOff``, ``Error``...)."""
    status = pod.get("status") or {}
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    containers = status.get("containerStatuses") or []
    reason = ""
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        reason = str(
            waiting.get("reason")
            or (terminated.get("reason") if terminated.get("exitCode") else "")
            or ""
        )
        if reason:
            break
    return {
        "name": (pod.get("metadata") or {}).get("name", ""),
        "phase": status.get("phase", ""),
        "ready": bool(containers) and all(cs.get("ready") for cs in containers),
        "restarts": sum(int(cs.get("restartCount") or 0) for cs in statuses),
        "reason": reason or status.get("reason") or "",
    }


def job_failure(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"job {obj['metadata']['name']} failed: {c.get('message') or c.get('reason')}"
    return ""


@dataclass(frozen=True)
class Container:
    """One running container a live update can reach."""

    pod: str
    namespace: str
    name: str
    image: str


SYNC_FAILED_EXIT = 97
"""Exit code of the live-update script when copying or deleting files failed (not a run step)."""


class LiveUpdateSyncError(KubeError):
    """The files could not be synced (container unreachable, tar or rm failed): Tilt then falls
    back to a full build and deploy. A failing ``run`` step is a plain ``KubeError``."""


def live_update_script(action: Action, has_files: bool) -> str:
    """One shell script per container: unpack, delete, run steps, restart — one exec round trip."""
    lines = ["set -e"]
    if has_files:
        lines.append(f"tar -xf - -C / || exit {SYNC_FAILED_EXIT}")
    if action.deletes:
        lines.append(
            "rm -rf -- "
            + " ".join(shlex.quote(d) for d in action.deletes)
            + f" || exit {SYNC_FAILED_EXIT}"
        )
    for run in action.runs:
        cmd = run.cmd if isinstance(run.cmd, str) else shlex.join(run.cmd)
        lines.append(f"( {cmd} )")
    if action.restart:
        lines.append(
            'rf="${FLOTILLA_RESTART_FILE:-/tmp/.restart-proc}"; '
            'if [ -f "$rf.pid" ]; then touch "$rf"; kill "$(cat "$rf.pid")"; '
            'else echo "no restart wrapper in this container" >&2; exit 3; fi'
        )
    return "\n".join(lines)


def tar_of(copies: list[tuple[str, str]]) -> bytes:
    """A tar stream of local files at their remote paths (relative to /)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for local, remote in copies:
            tar.add(local, arcname=remote.lstrip("/"), recursive=False)
    return buf.getvalue()


# --- adapter -------------------------------------------------------------------------------------
class KubeDeployer:
    """Applies a resource's objects and follows its pods in one namespace by default."""

    def __init__(self, client: Client, kubeconfig: Path, namespace: str) -> None:
        self.client = client
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def prepare(self, obj: dict[str, Any], resource: str) -> dict[str, Any]:
        out = manifests.set_namespace(obj, self.namespace)
        labels = out.setdefault("metadata", {}).setdefault("labels", {}) or {}
        labels.update({"app.kubernetes.io/managed-by": MANAGED_BY, RESOURCE_LABEL: resource})
        out["metadata"]["labels"] = labels
        return out

    def apply(self, objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Server-side apply each object; an immutable-field refusal (a Job's pod template)
        deletes and re-creates the object, as Tilt does."""
        stored = []
        for obj in sorted(objs, key=manifests.apply_order):
            try:
                stored.append(apply_raw(self.client, obj))
            except KubeInvalidError:
                if obj.get("kind") not in REPLACEABLE:
                    raise
                self.delete([obj])
                wait_until(
                    partial(self._gone, obj),
                    timeout=60,
                    interval=0.2,
                    what=f"{manifests.object_id(obj)} deleted",
                )
                stored.append(apply_raw(self.client, obj))
        return stored

    def _gone(self, obj: dict[str, Any]) -> bool | None:
        return True if self.refresh(obj) is None else None

    def refresh(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        meta = obj.get("metadata") or {}
        return get_raw(
            self.client,
            obj["apiVersion"],
            obj["kind"],
            meta["name"],
            namespace=meta.get("namespace"),
        )

    def pods(
        self, obj: dict[str, Any], extra: list[dict[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        """Pods of a workload (by its selector, or itself for a Pod), newest first."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or self.namespace
        if obj.get("kind") == "Pod":
            found = get_raw(self.client, "v1", "Pod", meta["name"], namespace=ns)
            return [found] if found else []
        out: list[dict[str, Any]] = []
        for sel in [manifests.pod_selector(obj), *(extra or [])]:
            if sel:
                out += list_raw(self.client, "v1", "Pod", namespace=ns, labels=sel)
        live = [p for p in out if not (p.get("metadata") or {}).get("deletionTimestamp")]
        return sorted(
            live, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True
        )

    def status(
        self, obj: dict[str, Any], extra: list[dict[str, str]] | None = None
    ) -> tuple[bool, str]:
        """(ready, failure reason) of one applied workload, from the server's current state."""
        current = self.refresh(obj)
        if current is None:
            return False, f"{manifests.object_id(obj)} is gone"
        if current.get("kind") == "Job" and job_failure(current):
            return False, job_failure(current)
        if workload_ready(current):
            return True, ""
        for pod in self.pods(current, extra):
            reason = pod_failure(pod)
            if reason:
                return False, reason
        return False, ""

    def containers(self, objs: list[dict[str, Any]], image_ref: str) -> list[Container]:
        """Running containers of these workloads whose image is ``image_ref`` (tag ignored)."""
        out = []
        for obj in objs:
            if not manifests.is_workload(obj):
                continue
            for pod in self.pods(obj):
                if (pod.get("status") or {}).get("phase") != "Running":
                    continue
                for c in (pod.get("spec") or {}).get("containers") or []:
                    # a running pod has the built tag: compare names only
                    if manifests.image_name(str(c.get("image", ""))) == manifests.image_name(
                        image_ref
                    ):
                        out.append(
                            Container(
                                pod["metadata"]["name"],
                                pod["metadata"]["namespace"],
                                c["name"],
                                str(c["image"]),
                            )
                        )
        return out

    def live_update(
        self, container: Container, action: Action, copies: list[tuple[str, str]]
    ) -> str:
        """Copy, delete, run and restart in one exec; raises ``KubeError`` when a step fails."""
        script = live_update_script(action, bool(copies))
        try:
            code, out = exec_websocket(
                self.kubeconfig,
                container.namespace,
                container.pod,
                ["sh", "-c", script],
                container=container.name,
                stdin=tar_of(copies) if copies else None,
            )
        except (KubeError, OSError) as exc:
            raise LiveUpdateSyncError(
                f"cannot reach {container.pod}/{container.name}: {exc}"
            ) from exc
        text = out.decode(errors="replace")
        if code == SYNC_FAILED_EXIT:
            raise LiveUpdateSyncError(
                f"sync into {container.pod}/{container.name} failed: {text.strip()[-500:]}"
            )
        if code != 0:
            raise KubeError(
                f"live update in {container.pod}/{container.name} failed "
                f"(exit {code}): {text.strip()[-500:]}"
            )
        return text

    def delete(self, objs: list[dict[str, Any]]) -> int:
        """Delete in reverse apply order; returns how many existed."""
        gone = 0
        for obj in sorted(objs, key=manifests.apply_order, reverse=True):
            meta = obj.get("metadata") or {}
            try:
                if delete_raw(
                    self.client,
                    obj["apiVersion"],
                    obj["kind"],
                    meta["name"],
                    namespace=meta.get("namespace") or self.namespace,
                ):
                    gone += 1
            except KubeError as exc:
                logger.warning("delete %s: %s", manifests.object_id(obj), exc)
        return gone
