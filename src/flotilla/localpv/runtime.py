"""Reconcile-loop plumbing shared by the controller and the agent: a keyed work queue and workers.

Threads rather than asyncio because lightkube's sync client and the backends' system calls block
anyway; the queue guarantees one worker per key at a time, coalesces repeated adds, and retries
with a delay. Shutdown is bounded: workers finish their current key and stop.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)


class WorkQueue:
    """Keys to reconcile; one worker per key at a time, re-run if re-added meanwhile."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, str]] = []
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._active:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._delayed, (time.monotonic() + delay, key))
            self._cond.notify()

    def get(self, timeout: float = 1.0) -> str | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, key = heapq.heappop(self._delayed)
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

    def done(self, key: str) -> None:
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
    """Raised by a reconcile step that wants the key again after ``delay`` seconds."""

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason)
        self.delay = delay


def start_workers(queue: WorkQueue, handle: Callable[[str], None], count: int,
                  stop: threading.Event, name: str) -> list[threading.Thread]:
    """``count`` threads that pull keys and call ``handle``; failures are retried with backoff."""
    failures: dict[str, int] = {}
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
            except RetryLater as again:
                queue.add_after(key, again.delay)
            except Exception:
                with lock:
                    n = failures[key] = failures.get(key, 0) + 1
                delay = min(0.5 * 2 ** min(n, 6), 30.0)
                logger.exception("%s: reconciling %s failed (retry in %.1fs)", name, key, delay)
                queue.add_after(key, delay)
            finally:
                queue.done(key)

    threads = [threading.Thread(target=loop, name=f"{name}-worker-{i}", daemon=True)
               for i in range(count)]
    for t in threads:
        t.start()
    return threads


def every(interval: float, stop: threading.Event, action: Callable[[], None],
          name: str) -> threading.Thread:
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
