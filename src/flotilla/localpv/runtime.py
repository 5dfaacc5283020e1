"""Reconcile-loop plumbing shared by the controller and the agent: a keyed work queue and workers.

Threads rather than asyncio because lightkube's sync client and the backends' system calls block
anyway; the queue guarantees one worker per key at a time, coalesces repeated adds, and retries
with a delay. Shutdown is bounded: workers finish their current key and stop.

Retry semantics travel as exceptions and one worker loop turns them into requeues, so no
reconcile sleeps: :class:`RetryLater` (again after this long), :class:`Permanent` (say so once,
wait for the object to change), anything else (retry with exponential backoff).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from flotilla.core.kube import KubeTooManyRequestsError

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Keys to reconcile; one worker per key at a time, re-run if re-added meanwhile."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []  # the counter spares comparing keys
        self._order = itertools.count()
        self._closed = False

    def add(self, key: K) -> None:
        with self._cond:
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._order), key))
            self._cond.notify()

    def get(self, timeout: float = 1.0) -> K | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    if key in self._active:
                        self._dirty.add(key)
                    elif key not in self._queued:
                        self._queued.add(key)
                        self._queue.append(key)
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._active.add(key)
                    return key
                if self._closed or now >= deadline:
                    return None
                wake = deadline
                if self._delayed:
                    wake = min(wake, self._delayed[0][0])
                self._cond.wait(max(0.0, wake - now))

    def done(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
                    self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._active)


class RetryLater(Exception):  # noqa: N818  (a signal, not a failure)
    """Raised by a reconcile step that wants the key again after ``after`` seconds."""

    def __init__(self, after: float, reason: str = "") -> None:
        super().__init__(reason)
        self.after = after


class Permanent(Exception):  # noqa: N818  (a verdict, read at raise sites)
    """Raised by a reconcile step that retrying cannot fix: logged once, not requeued.

    The key comes back when its object changes (a watch event) or at the next full resync.
    """


def retry_delay(exc: Exception, failures: int) -> float | None:
    """Seconds until the key is tried again after ``exc`` (its ``failures``-th in a row).

    None for :class:`Permanent`. A server that throttled us and said for how long is obeyed;
    anything else backs off exponentially from 1 s to 30 s.
    """
    if isinstance(exc, Permanent):
        return None
    if isinstance(exc, RetryLater):
        return exc.after
    if isinstance(exc, KubeTooManyRequestsError) and exc.retry_after is not None:
        wait: float = exc.retry_after
        return max(wait, 0.1)
    return min(0.5 * float(2 ** min(failures, 6)), 30.0)


def start_workers(
    queue: WorkQueue[K], handle: Callable[[K], None], count: int, stop: threading.Event, name: str
) -> list[threading.Thread]:
    """``count`` threads that pull keys and call ``handle``; the one place retries are decided."""
    failures: dict[K, int] = {}
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            key = queue.get(timeout=0.5)
            if key is None:
                continue
            try:
                handle(key)
                with lock:
                    failures.pop(key, None)
            except Exception as exc:
                n = 0
                if not isinstance(exc, RetryLater | Permanent):
                    with lock:
                        n = failures[key] = failures.get(key, 0) + 1
                delay = retry_delay(exc, n)
                if delay is None:
                    logger.warning("%s: %s not retried until it changes: %s", name, key, exc)
                elif n:
                    logger.error(
                        "%s: reconciling %s failed (retry in %.1fs)", name, key, delay, exc_info=exc
                    )
                if delay is not None:
                    queue.add_after(key, delay)
            finally:
                queue.done(key)

    threads = [
        threading.Thread(target=loop, name=f"{name}-worker-{i}", daemon=True) for i in range(count)
    ]
    for t in threads:
        t.start()
    return threads


def every(
    interval: float, stop: threading.Event, action: Callable[[], None], name: str
) -> threading.Thread:
    """Run ``action`` every ``interval`` seconds until ``stop``; a crash is logged, not fatal."""

    def loop() -> None:
        while not stop.is_set():
            try:
                action()
            except Exception:
                logger.exception("%s failed", name)
            stop.wait(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
