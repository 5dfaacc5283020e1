"""Guarded background tasks for long-running asyncio processes.

A server's periodic jobs (pruning, sampling, ...) run as named tasks; a crash is logged instead of
vanishing with the task, and shutdown waits a bounded time for every task to stop. One helper, so
each system does not grow its own variant of ``create_task`` + ``cancel`` + ``wait_for``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """Named tasks started together and stopped together (an ``async with`` block owns them).

    ``stop()`` cancels every task and waits at most ``cancel_timeout`` seconds; tasks still running
    then are logged and left behind rather than hanging the shutdown.
    """

    def __init__(self, cancel_timeout: float = 5.0) -> None:
        self.cancel_timeout = cancel_timeout
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def tasks(self) -> tuple[asyncio.Task[Any], ...]:
        """The tasks started and not yet stopped (finished ones included)."""
        return tuple(self._tasks)

    @property
    def names(self) -> list[str]:
        """Names of :attr:`tasks`."""
        return [t.get_name() for t in self._tasks]

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task called ``name``; if it raises, the error is logged."""
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_log_crash)
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Cancel every task; wait at most ``cancel_timeout`` seconds for them to finish."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.cancel_timeout)
        for task in pending:
            logger.warning(
                "background task %s did not stop within %.1fs", task.get_name(), self.cancel_timeout
            )

    async def __aenter__(self) -> BackgroundTasks:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _log_crash(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("background task %s crashed", task.get_name(), exc_info=exc)


async def every(seconds: float, step: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``step`` now and then every ``seconds`` until cancelled.

    A failing step is logged (``what`` names it) and retried at the next interval, so a passing
    database outage does not end the job for the life of the process.
    """
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s failed; will retry in %.0fs", what, seconds)
        await asyncio.sleep(seconds)
