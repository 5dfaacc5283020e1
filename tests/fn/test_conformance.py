"""The runtime contract, checked the same way against every runtime, as a process and as an image.

Each runtime serves the conformance function in ``conformance/<runtime>/``; every assertion here
runs unchanged against each of them, which is what makes the contract identical.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .support import (
    Collector,
    Served,
    local_runtime,
    parse_metrics,
    runtime_params,
    runtime_under_test,
    sample,
)

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module", params=runtime_params())
def served(
    request: pytest.FixtureRequest, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    kind: str = request.param
    with runtime_under_test(kind, collector, tmp_path_factory.mktemp(kind), request) as s:
        yield s


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=10) as client:
        yield client


def _caller() -> tuple[str, str, str]:
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def test_plain_value_is_text(http: httpx.Client) -> None:
    r = http.get("/hello")
    assert (r.status_code, r.text) == (200, "hello")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert TRACEPARENT.match(r.headers["traceparent"])


def test_caller_trace_is_continued_and_visible_to_the_handler(http: httpx.Client) -> None:
    trace_id, parent, header = _caller()
    r = http.post("/echo?x=1", content=b"ping", headers={"traceparent": header})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    _, got_trace, got_span, flags = r.headers["traceparent"].split("-")
    assert (got_trace, flags) == (trace_id, "01")
    assert got_span != parent
    assert doc == {
        "method": "POST",
        "query": {"x": "1"},
        "body": "ping",
        "trace_id": trace_id,
        "span_id": got_span,
        "traceparent": r.headers["traceparent"],
    }


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-xyz-abc-01",
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01" + "x" * 500,
    ],
)
def test_malformed_traceparent_starts_a_new_trace(http: httpx.Client, bad: str) -> None:
    r = http.get("/hello", headers={"traceparent": bad})
    assert r.status_code == 200
    assert TRACEPARENT.match(r.headers["traceparent"])
    assert r.headers["traceparent"].split("-")[1] not in bad.lower()


def test_unsampled_caller_stays_unsampled(http: httpx.Client) -> None:
    trace_id, _, _ = _caller()
    r = http.get("/hello", headers={"traceparent": f"00-{trace_id}-{'1' * 16}-00"})
    assert r.headers["traceparent"].startswith(f"00-{trace_id}-")
    assert r.headers["traceparent"].endswith("-00")


def test_explicit_response_and_its_headers(http: httpx.Client) -> None:
    """User headers pass through; the runtime keeps Content-Length and traceparent its own."""
    r = http.get("/teapot")
    assert (r.status_code, r.text, r.headers["x-custom"]) == (418, "short and stout", "yes")


def test_raising_function_is_a_500_with_the_trace_id(http: httpx.Client) -> None:
    r = http.get("/fail")
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal error",
        "trace_id": r.headers["traceparent"].split("-")[1],
    }


def test_none_is_204(http: httpx.Client) -> None:
    assert http.post("/toggle-ready").status_code == 204
    assert http.post("/toggle-ready").status_code == 204


def test_body_over_the_limit_is_refused(http: httpx.Client) -> None:
    r = http.post("/echo", content=b"x" * 70000)
    assert r.status_code == 413
    assert http.get("/hello").status_code == 200  # the instance is unharmed


def test_health_endpoints_and_user_hooks(http: httpx.Client) -> None:
    assert http.get("/health/liveness").json() == {"status": "ok"}
    assert http.get("/health/readiness").json() == {"status": "ok"}
    http.post("/toggle-ready")
    r = http.get("/health/readiness")
    assert (r.status_code, r.json()) == (503, {"status": "failing", "detail": "toggled off"})
    http.post("/toggle-ready")
    assert http.get("/health/readiness").status_code == 200


def test_metrics_count_invocations_errors_latency_and_cold_start(
    http: httpx.Client, served: Served
) -> None:
    before = parse_metrics(http.get("/metrics").text)
    for _ in range(3):
        http.get("/hello")
    http.get("/fail")
    r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = parse_metrics(r.text)
    labels = {"faas_name": served.name, "faas_trigger": "http"}

    def delta(name: str, **extra: str) -> float:
        return sample(after, name, **labels, **extra) - sample(before, name, **labels, **extra)

    assert delta("faas_invocations_total") == 3
    assert delta("faas_errors_total") == 1
    assert delta("faas_invoke_duration_seconds_count") == 4
    assert delta("faas_invoke_duration_seconds_bucket", le="+Inf") == 4
    assert sample(after, "faas_coldstarts_total", **labels) == 1
    assert sample(after, "faas_init_duration_seconds_count") == 1
    assert 0 < sample(after, "faas_init_duration_seconds_sum") < 30
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in after.items()
        if k[0] == "faas_invoke_duration_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    label_names = {k for key in after for k, _ in key[1]}
    assert {"faas_name", "faas_version", "faas_instance", "faas_trigger"} <= label_names


def test_span_reaches_the_collector_with_the_callers_trace(
    http: httpx.Client, served: Served
) -> None:
    trace_id, parent, header = _caller()
    r = http.get("/hello", headers={"traceparent": header})
    span_id = r.headers["traceparent"].split("-")[2]
    (span,) = served.collector.wait_for(trace_id)
    assert (span["spanId"], span["parentSpanId"], span["kind"]) == (span_id, parent, 2)
    assert span["name"] == served.name
    attrs = {a["key"]: a["value"] for a in span["attributes"]}
    assert attrs["faas.trigger"] == {"stringValue": "http"}
    assert attrs["http.response.status_code"] == {"intValue": "200"}
    assert attrs["http.request.method"] == {"stringValue": "GET"}
    assert attrs["faas.coldstart"] == {"boolValue": False}
    assert span["status"] == {"code": 0}
    assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"]) > 1.7e18
    assert span["resource"]["service.name"] == {"stringValue": served.name}
    assert span["resource"]["faas.name"] == {"stringValue": served.name}


def test_failed_invocation_span_has_error_status(http: httpx.Client, served: Served) -> None:
    trace_id, _, header = _caller()
    http.get("/fail", headers={"traceparent": header})
    (span,) = served.collector.wait_for(trace_id)
    assert span["status"]["code"] == 2
    assert "boom" in span["status"]["message"]


def test_logs_are_json_with_the_invocation_trace(http: httpx.Client, served: Served) -> None:
    trace_id, _, header = _caller()
    r = http.post("/echo", content=b"log me", headers={"traceparent": header})
    span_id = r.headers["traceparent"].split("-")[2]
    for _ in range(100):
        lines = [x for x in served.log_lines() if x.get("trace_id") == trace_id]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert line["msg"] == "echo log me"
    assert (line["span_id"], line["level"], line["faas.name"]) == (span_id, "info", served.name)
    assert set(line) >= {"time", "level", "logger", "msg", "trace_id", "span_id", "faas.name"}


def test_every_runtime_renders_the_same_metric_families(tmp_path: Path) -> None:
    """Same names, label names and bucket bounds in Python and Node, byte for byte in shape."""
    collector = Collector()
    try:
        shapes = []
        for runtime in ("python", "node"):
            with (
                local_runtime(runtime, collector, tmp_path) as s,
                httpx.Client(base_url=s.base) as client,
            ):
                client.get("/hello")
                client.get("/fail")
                text = client.get("/metrics").text
            shape = [
                re.sub(r'faas_name="[^"]*"|faas_instance="[^"]*"| \S+$', "", line)
                for line in text.splitlines()
            ]
            shapes.append(shape)
        assert shapes[0] == shapes[1]
    finally:
        collector.close()


def test_a_raising_function_logs_the_exception_with_its_trace(
    http: httpx.Client, served: Served
) -> None:
    trace_id, _, header = _caller()
    http.get("/fail", headers={"traceparent": header})
    lines: list[dict[str, object]] = []
    for _ in range(100):
        lines = [x for x in served.log_lines() if x.get("trace_id") == trace_id]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert (line["level"], line["msg"], line["logger"]) == (
        "error",
        "function raised",
        "flotilla.fn",
    )
    assert "boom" in str(line["exception"])


def test_the_ready_line_names_the_stack_that_serves(served: Served) -> None:
    """The image serves with what `fn run` serves with: uvloop and httptools, the pinned Node."""
    from flotilla.core.nodedist import NODE_VERSION

    expected = {
        "python": "(uvloop, httptools)",
        "node": f"(node v{NODE_VERSION})",
        "java": "(java 17.",
    }[served.runtime.removesuffix("-image")]
    for _ in range(100):
        ready = [x["msg"] for x in served.log_lines() if " ready in " in str(x.get("msg"))]
        if ready:
            break
        time.sleep(0.05)
    (line,) = ready
    assert expected in line, line
