"""Follow deployed workloads: pod logs into resource logs, port-forwards, crash detection."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from flotilla.core.kube import KubeError, PortForward, follow_pod_logs
from flotilla.dev.plan import manifests
from flotilla.dev.plan.model import ResourceKind
from flotilla.dev.runtime.kubedeploy import pod_failure, pod_ready, pod_summary

if TYPE_CHECKING:
    from flotilla.dev.runtime.session import Session

logger = logging.getLogger(__name__)
RUNTIME = "runtime: "


class Monitor:
    """One polling loop (1 s) over deployed resources; owns its API client and subprocesses."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._stop = threading.Event()
        self._streams: dict[str, threading.Thread] = {}
        self._forwards: dict[str, list[PortForward]] = {}  # resource → its forwards
        self._procs: list[Any] = []

    def run(self) -> None:
        try:
            while not self._stop.wait(0.5):
                for st in list(self.session.states.values()):
                    if st.resource.kind != ResourceKind.K8S or not st.applied:
                        continue
                    try:
                        self._check(st)
                    except KubeError as exc:
                        logger.debug("monitor %s: %s", st.resource.name, exc)
        finally:
            for forwards in self._forwards.values():
                for fwd in forwards:
                    fwd.close()
            self._forwards.clear()
            for proc in self._procs:
                if proc.poll() is None:
                    proc.terminate()
            for t in self._streams.values():
                t.join(5)
            for proc in self._procs:
                _end(proc)

    def _check(self, st: Any) -> None:
        kube = self.session.kube
        pods: list[dict[str, Any]] = []
        for obj in st.applied:
            if manifests.is_workload(obj):
                pods += kube.pods(obj, st.resource.extra_pod_selectors)
        st.pods = [pod_summary(p) for p in pods]
        for pod in pods:
            self._follow_logs(st, pod)
        if not st.lock.acquire(blocking=False):
            return  # an update is running: it owns the status
        try:
            failure = next((f for f in map(pod_failure, pods) if f), "")
            if failure and st.status == "ready":
                st.status, st.error = "error", RUNTIME + failure
                self.session.log_to(st, f"ERROR: {failure}")
            elif (
                not failure
                and st.status == "error"
                and st.error.startswith(RUNTIME)
                and all(pod_ready(p) for p in pods)
            ):
                st.status, st.error = "ready", ""
        finally:
            st.lock.release()
        if st.resource.port_forwards and st.status == "ready":
            ready = [p for p in pods if pod_ready(p)]
            if ready:
                self._forward(st, ready[0])

    def _follow_logs(self, st: Any, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for cs in statuses:
            state = cs.get("state") or {}
            if not (state.get("running") or state.get("terminated")):
                continue
            key = f"{meta['uid']}/{cs['name']}/{cs.get('restartCount', 0)}"
            if key in self._streams:
                continue
            t = threading.Thread(
                target=self._stream,
                name=f"logs-{meta['name']}",
                args=(st, meta["name"], meta["namespace"], cs["name"]),
                daemon=True,
            )
            self._streams[key] = t
            t.start()

    def _stream(self, st: Any, pod: str, namespace: str, container: str) -> None:
        proc = follow_pod_logs(self.session.kube.kubeconfig, namespace, pod, container=container)
        self._procs.append(proc)
        try:
            for raw in proc.stdout:
                self.session.log_to(st, raw.decode(errors="replace").rstrip("\n"))
        except (OSError, ValueError) as exc:  # the pipe closed under us at shutdown
            logger.debug("log stream %s/%s ended: %s", pod, container, exc)

    def _forward(self, st: Any, pod: dict[str, Any]) -> None:
        """Forward the resource's ports to its newest ready pod; follow it when it changes."""
        name = pod["metadata"]["name"]
        current = self._forwards.get(st.resource.name)
        if self._stop.is_set() or (current and all(f.pod == name for f in current)):
            return
        if current:
            for f in current:
                f.pod = name
        else:
            forwards = []
            for p in st.resource.port_forwards:
                try:
                    forwards.append(
                        PortForward(
                            self.session.kube.kubeconfig,
                            pod["metadata"]["namespace"],
                            name,
                            p.local_port,
                            p.container_port or p.local_port,
                            address=p.host or "127.0.0.1",
                        )
                    )
                except OSError as exc:
                    self.session.log_to(st, f"WARNING: port-forward {p.local_port}: {exc}")
            self._forwards[st.resource.name] = forwards
        ports = ", ".join(
            f"{p.local_port}:{p.container_port or p.local_port}" for p in st.resource.port_forwards
        )
        self.session.log_to(st, f"port-forward {ports} → pod/{name}")

    def forwarding(self, resource: str) -> bool:
        return resource in self._forwards

    def stop(self) -> None:
        """Ask the loop to end; it closes the forwards itself, so none starts after this."""
        self._stop.set()


def _end(proc: Any) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(5)
    except Exception:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
