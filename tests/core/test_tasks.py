"""The guarded background-task helper: named tasks, crashes logged, bounded shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flotilla.core.tasks import BackgroundTasks, every


def test_tasks_are_named_and_cancelled_on_exit() -> None:
    async def main() -> tuple[list[str], bool]:
        async with BackgroundTasks() as tasks:
            task = tasks.start("sleeper", asyncio.sleep(3600))
            await asyncio.sleep(0)
            names = tasks.names
        return names, task.cancelled()

    names, cancelled = asyncio.run(main())
    assert names == ["sleeper"]
    assert cancelled


def test_a_crash_is_logged_with_the_task_name(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("kaput")

    async def main() -> None:
        async with BackgroundTasks() as tasks:
            tasks.start("exploder", boom())
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="flotilla.core.tasks"):
        asyncio.run(main())
    assert "background task exploder crashed" in caplog.text
    assert "kaput" in caplog.text


def test_shutdown_is_bounded_when_a_task_ignores_cancel(caplog: pytest.LogCaptureFixture) -> None:
    async def stubborn(gate: asyncio.Event) -> None:
        while not gate.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ignores cancellation until the gate opens

    async def main() -> float:
        gate = asyncio.Event()
        tasks = BackgroundTasks(cancel_timeout=0.05)
        task = tasks.start("stubborn", stubborn(gate))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await tasks.stop()
        took = loop.time() - start
        gate.set()
        task.cancel()
        await asyncio.wait([task], timeout=1)
        return took

    with caplog.at_level(logging.WARNING, logger="flotilla.core.tasks"):
        took = asyncio.run(main())
    assert took < 1.0
    assert "stubborn did not stop within 0.1s" in caplog.text


def test_every_retries_after_a_failing_step(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ValueError("first run fails")

    async def main() -> None:
        async with BackgroundTasks() as tasks:
            tasks.start("job", every(0.001, step, "the job"))
            while len(calls) < 3:
                await asyncio.sleep(0.001)

    with caplog.at_level(logging.ERROR, logger="flotilla.core.tasks"):
        asyncio.run(main())
    assert len(calls) >= 3
    assert "the job failed; will retry" in caplog.text
    assert "crashed" not in caplog.text
