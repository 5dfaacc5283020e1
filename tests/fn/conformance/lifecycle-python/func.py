"""Slow, hostile and well-behaved paths for the lifecycle suite (tests/fn/test_lifecycle.py)."""

import os
import time

from flotilla.fn.runtime import Response


def handle(request):
    if request.path == "/slow":  # a plain def: it holds a worker thread while it sleeps
        time.sleep(float(request.query.get("s", "1")))
        return "slept"
    if request.path == "/json":
        return {"got": request.json()}
    if request.path == "/bad-status":
        return Response("x", status=1000)
    if request.path == "/bad-header":
        return Response("x", headers={"x-bad": "a\r\nb"})
    return "ok"


def liveness():
    return True


def readiness():
    return True


def shutdown():
    marker = os.environ.get("LIFECYCLE_MARKER")
    if marker:
        with open(marker, "w") as f:
            f.write("stopped")
