"""``fn logs --follow``: every pod of a function, including the ones that start later.

``kubectl logs -f -l`` follows only the pods there when it starts (five at most) and stops when
they go. A function's pods come and go: scale from zero, a new revision, a crashed container
restarted. So, like stern, a pod informer (``flotilla.core.kube.Informer``) starts one log stream
per container start, and every line is printed with its pod's name. The streams are lightkube's
own (``follow=True``) in daemon threads: the command ends at Ctrl-C or SIGTERM, and a stream
blocked on a quiet pod ends with the process.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Pod

from flotilla.core.kube import Informer, KubeError, list_raw

from .model import FnError

__all__ = ["FUNCTION_CONTAINER", "LogFollower", "container_start", "follow", "follow_until_stopped"]

FUNCTION_CONTAINER = "function"
StreamKey = tuple[str, int]  # (pod name, restart count of the function container)


def container_start(pod: dict[str, Any]) -> StreamKey | None:
    """Which start of the function's container has logs to read, if any. Pure.

    A container that is waiting (image pull, crash back-off) has none yet; a running or
    terminated one has, and a restart is a new key, so its new lines get a stream of their own.
    """
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != FUNCTION_CONTAINER:
            continue
        state = status.get("state") or {}
        if "running" in state or "terminated" in state:
            return str(pod["metadata"]["name"]), int(status.get("restartCount") or 0)
    return None


class LogFollower:
    """Streams the logs of a function's pods into one queue of ``(pod, line)``.

    Pods found by the first list start at their last ``tail`` lines, as ``fn logs`` shows them;
    pods and container restarts seen later start at their first line, so nothing they log is
    missed between the watch event and the stream.
    """

    def __init__(self, client: Client, name: str, namespace: str, tail: int) -> None:
        self._client = client
        self._namespace = namespace
        self._tail = tail
        self._started: set[StreamKey] = set()
        self._lock = threading.Lock()
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._informer = Informer(
            client,
            Pod,
            on_change=self._on_change,
            namespace=namespace,
            labels={"flotilla.dev/function": name},
            name=f"pods of {name}",
        )

    def start(self) -> None:
        self._informer.start()

    def stop(self) -> None:
        self._informer.stop()

    @property
    def synced(self) -> threading.Event:
        return self._informer.synced

    def _on_change(self, kind: str, pod: dict[str, Any]) -> None:
        if kind == "DELETED":
            return
        key = container_start(pod)
        if key is None:
            return
        with self._lock:
            if key in self._started:
                return
            self._started.add(key)
        tail = self._tail if not self._informer.synced.is_set() else None
        threading.Thread(
            target=self._stream, args=(key[0], tail), name=f"logs-{key[0]}", daemon=True
        ).start()

    def _stream(self, pod: str, tail: int | None) -> None:
        api: Any = self._client
        try:
            for line in api.log(
                pod,
                namespace=self._namespace,
                container=FUNCTION_CONTAINER,
                follow=True,
                tail_lines=tail,
            ):
                self.lines.put((pod, str(line).rstrip("\n")))
        except Exception as exc:  # a pod deleted mid-stream, the API going away: say so, go on
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.lines.put((pod, f"(log stream ended: {reason})"))


def follow(
    client: Client,
    name: str,
    namespace: str,
    tail: int,
    emit: Callable[[str, str], None],
    stop: threading.Event,
) -> None:
    """Emit ``(pod, line)`` until ``stop`` is set."""
    follower = LogFollower(client, name, namespace, tail)
    follower.start()
    try:
        while not stop.is_set():
            try:
                pod, line = follower.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            emit(pod, line)
    finally:
        follower.stop()


def follow_until_stopped(
    client: Client, name: str, namespace: str, tail: int, echo: Callable[..., None]
) -> None:
    """``fn logs -f``: until Ctrl-C or SIGTERM, both a normal end (exit 0)."""
    labels = {"flotilla.dev/function": name}
    try:  # one plain list first: a cluster that cannot be reached is one line, not a retry loop
        pods = list_raw(client, "v1", "Pod", namespace=namespace, labels=labels)
    except KubeError as exc:
        raise FnError(str(exc)) from None
    if not pods:
        echo(f"no pods of function {name} in {namespace} yet; waiting for them", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        follow(client, name, namespace, tail, lambda pod, line: echo(f"{pod} {line}"), stop)
