"""The conformance function (Python): one path per clause of the runtime contract."""

import logging

from flotilla.fn.runtime import Request, Response

log = logging.getLogger("conformance")
STATE = {"ready": True}


def handle(request: Request) -> object:
    if request.path == "/fail":
        raise RuntimeError("boom")
    if request.path == "/teapot":
        return Response(
            "short and stout", status=418, headers={"X-Custom": "yes", "Content-Length": "999"}
        )
    if request.path == "/toggle-ready":
        STATE["ready"] = not STATE["ready"]
        return None
    if request.path == "/echo":
        log.info("echo %s", request.text())
        return {
            "method": request.method,
            "query": request.query,
            "body": request.text(),
            "trace_id": request.trace_id,
            "span_id": request.span_id,
            "traceparent": request.traceparent,
        }
    return "hello"


def readiness() -> object:
    return True if STATE["ready"] else (False, "toggled off")


def liveness() -> bool:
    return True
