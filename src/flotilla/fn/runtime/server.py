"""Serving details around uvicorn: a header deadline for slow clients and the user's ASGI lifespan.

uvicorn closes idle keep-alive connections, but waits forever for a request's headers, so a client
that connects and sends nothing (or one byte a second) holds a connection and a file descriptor
indefinitely. The protocol classes here close such connections after ``header_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message

__all__ = ["AsgiLifespan", "header_deadline_protocol"]

logger = logging.getLogger("flotilla.fn")


def header_deadline_protocol(http: str, header_timeout: float) -> type[Any]:
    """uvicorn's HTTP protocol class (``httptools`` or ``h11``) with a deadline on headers."""
    base: type[Any]
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol

    class HeaderDeadlineProtocol(base):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None

        def _waiting_for_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or bool(cycle.response_complete)

        def _arm(self) -> None:
            if self._deadline is None and header_timeout > 0:
                self._deadline = self.loop.call_later(header_timeout, self._expire)

        def _expire(self) -> None:
            self._deadline = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                logger.info("closing a connection that sent no complete request headers")
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_headers():
                self._arm()
            elif self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


class AsgiLifespan:
    """Runs the ASGI lifespan protocol of the user's app (startup before ready, shutdown at stop).

    An app that raises on the ``lifespan`` scope before starting up does not support it; that is
    allowed, as uvicorn's ``lifespan="auto"`` allows it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:
            logger.info("the ASGI app does not run a lifespan (%s: %s)", type(exc).__name__, exc)
            self._supported = False
        finally:
            await self._from_app.put({"type": "lifespan.ended"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the ASGI app's startup failed: {message.get('message', '')}")

    async def shutdown(self, timeout: float) -> None:
        if self._task is None or self._task.done() or not self._supported:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(self._from_app.get(), timeout)
        except TimeoutError:
            logger.warning("the ASGI app's shutdown did not finish within %.1fs", timeout)
            self._task.cancel()
            return
        if message["type"] == "lifespan.shutdown.failed":
            logger.error("the ASGI app's shutdown failed: %s", message.get("message", ""))
