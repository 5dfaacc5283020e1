"""The ASGI application around one user function: health, metrics, tracing, logs.

Starlette serves the fixed endpoints and the lifespan; invocations take a direct ASGI path so the
per-request cost stays a few microseconds above the user's own code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .server import AsgiLifespan
from .telemetry import (
    FaasIdentity,
    Metrics,
    OtlpExporter,
    Span,
    current_span,
    new_span,
    process_start_time,
)
from .types import BadRequestError, Request, Response

__all__ = ["FunctionApp", "LoadedFunction", "RuntimeConfig", "load_function"]

logger = logging.getLogger("flotilla.fn")
SIGNATURES = ("http", "cloudevent", "asgi")
HEALTH_LIVE, HEALTH_READY, METRICS = "/health/liveness", "/health/readiness", "/metrics"


@dataclass(frozen=True)
class RuntimeConfig:
    """How to find and serve the function; read from ``FLOTILLA_FN_*`` variables at start."""

    source: Path = Path(".")
    """Directory holding the function's code."""
    handler: str = "func:handle"
    """``module:attribute`` of the handler inside ``source``."""
    signature: str = "http"
    """``http`` (Request in, value out), ``cloudevent`` or ``asgi``."""
    identity: FaasIdentity = field(default_factory=lambda: FaasIdentity("function", "0", "local"))
    max_body: int = 10 * 1024 * 1024
    """Largest request body accepted, bytes; larger gets 413."""
    access_log: bool = False
    """Log one JSON line per invocation."""
    threads: int = min(32, (os.cpu_count() or 1) * 4)
    """Worker threads for plain (non-async) handlers."""
    timeout: float = 0.0
    """Seconds one invocation may take before it is answered 504 (0: no limit)."""
    concurrency: int = 0
    """Invocations served at once; more wait their turn (0: no limit). Knative's
    ``containerConcurrency`` is set to the same number."""
    health_timeout: float = 1.0
    """Seconds a liveness/readiness hook may take before the probe answers 503."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers before it is closed."""
    grace: float = 10.0
    """Seconds in-flight invocations get to finish after SIGTERM."""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> RuntimeConfig:
        name = env.get("FLOTILLA_FN_NAME") or env.get("K_SERVICE") or "function"
        identity = FaasIdentity(
            name=name,
            version=env.get("FLOTILLA_FN_VERSION") or env.get("K_REVISION") or "0",
            instance=env.get("POD_NAME") or env.get("HOSTNAME") or os.uname().nodename,
        )
        signature = env.get("FLOTILLA_FN_SIGNATURE", "http")
        if signature not in SIGNATURES:
            raise ValueError(f"FLOTILLA_FN_SIGNATURE must be one of {SIGNATURES}")
        return cls(
            source=Path(env.get("FLOTILLA_FN_SOURCE", ".")),
            handler=env.get("FLOTILLA_FN_HANDLER", "func:handle"),
            signature=signature,
            identity=identity,
            max_body=int(env.get("FLOTILLA_FN_MAX_BODY", str(10 * 1024 * 1024))),
            access_log=env.get("FLOTILLA_FN_ACCESS_LOG", "").lower() in ("1", "true", "yes"),
            threads=int(env.get("FLOTILLA_FN_THREADS", "0")) or cls.threads,
            timeout=float(env.get("FLOTILLA_FN_TIMEOUT", "0")),
            concurrency=int(env.get("FLOTILLA_FN_CONCURRENCY", "0")),
            health_timeout=float(env.get("FLOTILLA_FN_HEALTH_TIMEOUT", "1")),
            header_timeout=float(env.get("FLOTILLA_FN_HEADER_TIMEOUT", "10")),
            grace=float(env.get("FLOTILLA_FN_GRACE", "10")),
        )


@dataclass
class LoadedFunction:
    """The handler and the optional hooks ``init``, ``liveness``, ``readiness``, ``shutdown``."""

    handler: Callable[..., Any]
    init: Callable[[], Any] | None = None
    liveness: Callable[[], Any] | None = None
    readiness: Callable[[], Any] | None = None
    shutdown: Callable[[], Any] | None = None


def load_function(config: RuntimeConfig) -> LoadedFunction:
    """Import the handler module from the function's directory."""
    module_name, _, attr = config.handler.partition(":")
    source = str(config.source.resolve())
    if source not in sys.path:
        sys.path.insert(0, source)
    module = importlib.import_module(module_name)
    handler = getattr(module, attr or "handle", None)
    if not callable(handler):
        raise ValueError(f"{config.handler}: no callable {attr or 'handle'!r} in {module_name}")
    hooks = {n: getattr(module, n, None) for n in ("init", "liveness", "readiness", "shutdown")}
    return LoadedFunction(handler, **{k: v for k, v in hooks.items() if callable(v)})


async def _call(pool: concurrent.futures.Executor, fn: Callable[..., Any], *args: Any) -> Any:
    """Await coroutine functions; run plain functions in a worker thread (they may block).

    A plain executor with the context copied (so logs carry the trace ids) costs less per call
    than anyio's limiter-based ``to_thread``.
    """
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    context = contextvars.copy_context()
    result = await asyncio.get_running_loop().run_in_executor(pool, context.run, fn, *args)
    if inspect.isawaitable(result):
        return await result
    return result


class InvalidResponseError(ValueError):
    """The function returned a status or header HTTP cannot carry."""


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _checked_headers(extra: Any) -> list[tuple[bytes, bytes]]:
    if not isinstance(extra, dict):
        raise InvalidResponseError(f"headers must be a dict, not {type(extra).__name__}")
    out = []
    for key, value in extra.items():
        name, text = str(key), str(value)
        if not _TOKEN.match(name):
            raise InvalidResponseError(f"header name {name!r} is not an HTTP token")
        if any(c in text for c in "\r\n\0"):
            raise InvalidResponseError(f"header {name!r} has a line break or NUL in its value")
        try:
            out.append((name.lower().encode("latin-1"), text.encode("latin-1")))
        except UnicodeEncodeError:
            raise InvalidResponseError(f"header {name!r} is not Latin-1") from None
    return out


def _encode(value: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A handler's return value as status, headers and body (same rules in every runtime)."""
    status, extra = 200, {}
    if isinstance(value, Response):
        status, extra, value = value.status, value.headers, value.body
        if type(status) is not int or not 100 <= status <= 599:
            raise InvalidResponseError(f"status {status!r} is not an HTTP status (100-599)")
    if value is None:
        body, ctype = b"", None
        status = 204 if status == 200 else status
    elif isinstance(value, bytes | bytearray):
        body, ctype = bytes(value), "application/octet-stream"
    elif isinstance(value, str):
        body, ctype = value.encode(), "text/plain; charset=utf-8"
    else:
        body, ctype = (
            json.dumps(value, separators=(",", ":"), default=str).encode(),
            "application/json",
        )
    headers = [
        (k, v) for k, v in _checked_headers(extra) if k not in (b"content-length", b"traceparent")
    ]  # the runtime sets these
    if ctype and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", ctype.encode()))
    return status, headers, body


class _BodyTooLargeError(Exception):
    pass


def _json_error(status: int, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps({"error": message}).encode()


def _stack() -> str:
    """The event loop and HTTP parser serving, for the ready line: the image must say the same
    as ``fn run`` (uvloop and httptools when installed, else asyncio and h11)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return f"{loop}, {'httptools' if 'httptools' in sys.modules else 'h11'}"


class FunctionApp:
    """The ASGI callable served by uvicorn: fixed endpoints first, the function for the rest."""

    def __init__(
        self,
        fn: LoadedFunction,
        config: RuntimeConfig,
        exporter: OtlpExporter | None = None,
        *,
        start_time: float | None = None,
    ) -> None:
        self.fn = fn
        self.config = config
        self.exporter = exporter
        self.metrics = Metrics(config.identity)
        self.ready = False
        self.start_time = process_start_time() if start_time is None else start_time
        self.trigger = "pubsub" if config.signature == "cloudevent" else "http"
        self.pool = concurrent.futures.ThreadPoolExecutor(config.threads, "function")
        # Hooks get their own threads, so probes never queue behind slow invocations.
        self.health_pool = concurrent.futures.ThreadPoolExecutor(2, "health")
        self.limit = asyncio.Semaphore(config.concurrency) if config.concurrency > 0 else None
        self.asgi_lifespan: AsgiLifespan | None = None
        self.fixed = Starlette(
            routes=[
                Route(HEALTH_LIVE, self._liveness),
                Route(HEALTH_READY, self._readiness),
                Route(METRICS, self._metrics),
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in (HEALTH_LIVE, HEALTH_READY, METRICS):
            await self.fixed(scope, receive, send)
        else:
            await self._invoke(scope, receive, send)

    # --- fixed endpoints -----------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        if self.fn.init is not None:
            await _call(self.pool, self.fn.init)
        if self.config.signature == "asgi":
            self.asgi_lifespan = AsgiLifespan(self.fn.handler)
            await self.asgi_lifespan.startup()
        self.ready = True
        init_seconds = max(0.0, time.time() - self.start_time)
        self.metrics.init.observe(init_seconds)
        logger.info(
            "function %s ready in %.3fs (%s)", self.config.identity.name, init_seconds, _stack()
        )
        try:
            yield
        finally:
            self.ready = False
            await self._stop()

    async def _stop(self) -> None:
        """After in-flight invocations: the app's shutdown, the stop hook, a bounded flush."""
        grace = max(1.0, self.config.grace)
        if self.asgi_lifespan is not None:
            await self.asgi_lifespan.shutdown(grace)
        if self.fn.shutdown is not None:
            try:
                await asyncio.wait_for(_call(self.health_pool, self.fn.shutdown), grace)
            except Exception:
                logger.exception("the shutdown hook failed or took longer than %.0fs", grace)
        if self.exporter is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.health_pool, self.exporter.shutdown, 3.0)

    async def _check(self, hook: Callable[[], Any] | None) -> JSONResponse:
        ok, detail = True, ""
        if hook is not None:
            timeout = self.config.health_timeout
            try:
                result = await asyncio.wait_for(_call(self.health_pool, hook), timeout)
            except TimeoutError:
                result = (False, f"{getattr(hook, '__name__', 'hook')} took longer than {timeout}s")
            except Exception as exc:
                result = (False, f"{type(exc).__name__}: {exc}")
            if isinstance(result, tuple):
                ok, detail = bool(result[0]), str(result[1]) if len(result) > 1 else ""
            else:
                ok = result is None or bool(result)
        doc = {"status": "ok" if ok else "failing"}
        if detail:
            doc["detail"] = detail
        return JSONResponse(doc, status_code=200 if ok else 503)

    async def _liveness(self, _request: StarletteRequest) -> JSONResponse:
        return await self._check(self.fn.liveness)

    async def _readiness(self, _request: StarletteRequest) -> JSONResponse:
        if not self.ready:
            return JSONResponse({"status": "failing", "detail": "not started"}, status_code=503)
        return await self._check(self.fn.readiness)

    async def _metrics(self, _request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(
            self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # --- invocations ---------------------------------------------------------------------------

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body:
                raise _BodyTooLargeError
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _invoke(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        span = new_span(self.config.identity.name, headers.get("traceparent"))
        token = current_span.set(span)
        started = time.perf_counter()
        error: str | None = None
        status = 500
        try:
            if self.config.signature == "asgi":
                status = await self._limited(self._invoke_asgi(span, scope, receive, send))
            else:
                try:
                    status, out, body = await self._limited(
                        self._invoke_value(span, scope, headers, receive)
                    )
                except TimeoutError:
                    error = f"timed out after {self.config.timeout}s"
                    logger.error("function %s", error)
                    status, out, body = _json_error(504, f"function {error}")
                except BadRequestError as exc:
                    status, out, body = _json_error(400, str(exc))
                except InvalidResponseError as exc:
                    error = f"invalid response: {exc}"
                    logger.error("function returned an invalid response: %s", exc)
                    status, out, body = _json_error(500, "invalid response from the function")
                except _BodyTooLargeError:
                    status, out, body = (
                        413,
                        [(b"content-type", b"application/json")],
                        b'{"error":"request body too large"}',
                    )
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    logger.exception("function raised")
                    status, out, body = (
                        500,
                        [(b"content-type", b"application/json")],
                        json.dumps({"error": "internal error", "trace_id": span.trace_id}).encode(),
                    )
                out.append((b"traceparent", span.traceparent.encode()))
                out.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": out})
                await send({"type": "http.response.body", "body": body})
        except Exception as exc:  # the ASGI app itself raised, or the client went away
            error = error or f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._finish(span, scope, status, error, started)
            current_span.reset(token)

    async def _limited(self, work: Any) -> Any:
        """``work`` under the concurrency limit and the per-invocation timeout."""
        timeout = self.config.timeout if self.config.timeout > 0 else None
        if self.limit is None:
            return await asyncio.wait_for(work, timeout)
        async with self.limit:
            return await asyncio.wait_for(work, timeout)

    def _finish(
        self, span: Span, scope: Scope, status: int, error: str | None, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        failed = error is not None or status >= 500
        cold = self.metrics.record(self.trigger, seconds, failed)
        span.end_ns = span.start_ns + int(seconds * 1e9)
        span.attributes = {
            "faas.trigger": self.trigger,
            "faas.invocation_id": span.span_id,
            "faas.coldstart": cold,
            "http.request.method": scope["method"],
            "url.path": scope["path"],
            "http.response.status_code": status,
        }
        if failed:
            span.error = error or f"HTTP {status}"
        if self.exporter is not None and span.sampled:
            self.exporter.submit(span)
        if self.config.access_log:
            logger.info("%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1e3)

    async def _invoke_value(
        self, span: Span, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = await self._read_body(receive)
        if self.config.signature == "cloudevent":
            return await self._invoke_events(headers, body)
        request = Request(
            scope["method"],
            scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            trace_id=span.trace_id,
            span_id=span.span_id,
            traceparent=span.traceparent,
            log=logging.getLogger("function"),
        )
        return _encode(await _call(self.pool, self.fn.handler, request))

    async def _invoke_events(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One call of the handler per event; a batch is answered with a batch."""
        from . import events  # the SDK is imported by cloudevent functions only

        try:
            received, mode = events.decode_events(headers, body)
        except ValueError as exc:
            return (
                400,
                [(b"content-type", b"application/json")],
                json.dumps({"error": str(exc)}).encode(),
            )
        replies = []
        for event in received:
            reply = await _call(self.pool, self.fn.handler, event)
            if reply is not None:
                replies.append(reply)
        if not replies:
            return 204, [], b""
        if mode == "batch":
            out_headers, out_body = events.encode_batch(replies)
        else:
            out_headers, out_body = events.encode_reply(replies[0])
        return 200, [(k.encode(), v.encode("latin-1")) for k, v in out_headers.items()], out_body

    async def _invoke_asgi(self, span: Span, scope: Scope, receive: Receive, send: Send) -> int:
        status = 500

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"traceparent", span.traceparent.encode()),
                    ],
                }
            await send(message)

        if self.asgi_lifespan is not None and self.asgi_lifespan.state:
            scope = {**scope, "state": dict(self.asgi_lifespan.state)}
        try:
            await self.fn.handler(scope, receive, traced_send)
        except TimeoutError:
            if status == 500:  # nothing sent yet
                code, out, body = _json_error(504, "function timed out")
                await traced_send({"type": "http.response.start", "status": code, "headers": out})
                await send({"type": "http.response.body", "body": body})
            raise
        return status
