"""The Python runtime's parts: trace context, metrics text, CloudEvents, the ASGI app."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from flotilla.fn.runtime import CloudEvent
from flotilla.fn.runtime.app import FunctionApp, LoadedFunction, RuntimeConfig, load_function
from flotilla.fn.runtime.events import decode_events, encode_batch, encode_reply
from flotilla.fn.runtime.telemetry import (
    FaasIdentity,
    Metrics,
    exporter_from_env,
    new_span,
    parse_traceparent,
)

ID = FaasIdentity("fn", "v1", "pod-1")


def test_traceparent_parsing() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(tp) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)
    assert parse_traceparent(tp.upper()) is not None
    assert parse_traceparent(tp[:-2] + "00") == (tp[3:35], tp[36:52], False)
    for bad in (None, "", "01-xx", tp + "-extra", "ff" + tp[2:], tp.replace("0af7", "zzzz")):
        assert parse_traceparent(bad) is None
    span = new_span("fn", tp)
    assert span.trace_id == tp[3:35] and span.parent_id == tp[36:52]
    assert span.traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    fresh = new_span("fn", None)
    assert len(fresh.trace_id) == 32 and fresh.parent_id == "" and fresh.sampled


def test_metrics_text_format() -> None:
    metrics = Metrics(FaasIdentity('we"ird\\name', "v1", "pod\n1"))
    assert metrics.record("http", 0.003, error=False) is True
    assert metrics.record("http", 0.2, error=True) is False
    text = metrics.render()
    assert 'faas_name="we\\"ird\\\\name"' in text and 'faas_instance="pod\\n1"' in text
    assert text.count("faas_invocations_total{") == 1
    assert (
        '_bucket{faas_name="we\\"ird\\\\name",faas_version="v1",faas_instance="pod\\n1",'
        'faas_trigger="http",le="0.005"} 1' in text
    )
    assert 'le="0.25"} 2' in text and 'le="+Inf"} 2' in text
    assert text.endswith("\n")


def test_exporter_configuration_from_env() -> None:
    assert exporter_from_env({}, ID) is None
    assert (
        exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, ID
        )
        is None
    )
    exporter = exporter_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
            "OTEL_EXPORTER_OTLP_HEADERS": "a=b%20c",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod",
        },
        ID,
    )
    assert exporter is not None
    try:
        assert exporter.endpoint == "http://c:4318/v1/traces"
        assert exporter.headers["a"] == "b c"
        keys = {a["key"] for a in exporter.resource}
        assert {"service.name", "faas.name", "deployment.environment"} <= keys
    finally:
        exporter.shutdown()


def test_cloudevents_binary_and_structured() -> None:
    headers = {
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-specversion": "1.0",
        "ce-traceparent": "x",
        "ce-subject": "caf%C3%A9%20%25",
        "Content-Type": "application/json",
    }
    [event], mode = decode_events(headers, b'{"a": 1}')
    assert (event.id, event.data, event.extensions) == ("1", {"a": 1}, {"traceparent": "x"})
    assert (mode, event.subject, event.time) == ("binary", "café %", None)
    [structured], mode = decode_events(
        {"content-type": "application/cloudevents+json; charset=utf-8"},
        b'{"specversion":"1.0","id":"2","source":"/s","type":"t","data":"hi","subject":"s"}',
    )
    assert (mode, structured.data, structured.subject) == ("structured", "hi", "s")
    [raw], _ = decode_events({**headers, "content-type": "application/octet-stream"}, b"[1]")
    assert raw.data == b"[1]"  # octet-stream stays bytes, even when it looks like JSON
    out_headers, body = encode_reply(CloudEvent(type="r", source="/me", data=[1], subject="é"))
    assert (out_headers["ce-type"], out_headers["ce-subject"], body) == ("r", "%C3%A9", b"[1]")
    reply = CloudEvent(type="r", source="/me", data=b"\0", structured=True)
    out_headers, body = encode_reply(reply)
    assert out_headers == {"content-type": "application/cloudevents+json"}
    assert json.loads(body)["data_base64"] == "AA=="
    out_headers, body = encode_batch([CloudEvent(type="r", source="/me")])
    assert out_headers["content-type"] == "application/cloudevents-batch+json"
    assert json.loads(body)[0]["type"] == "r"
    for bad_headers, bad_body in [
        ({}, b""),
        ({"content-type": "application/cloudevents+json"}, b"[1]"),
        ({**headers, "ce-specversion": "0.3"}, b"{}"),
        ({**headers, "ce-time": "2026-01-01"}, b"{}"),
        (headers, b"{not json"),
    ]:
        with pytest.raises(ValueError, match=r"\S"):
            decode_events(bad_headers, bad_body)


def _client(fn: LoadedFunction, signature: str = "http") -> TestClient:
    config = RuntimeConfig(signature=signature, identity=ID)
    return TestClient(FunctionApp(fn, config, start_time=0.0))


def test_async_handler_and_async_hooks() -> None:
    async def handle(request: Any) -> dict[str, Any]:
        return {"json": request.json()}

    async def readiness() -> bool:
        raise RuntimeError("database down")

    with _client(LoadedFunction(handle, readiness=readiness)) as client:
        assert client.post("/x", json={"a": 1}).json() == {"json": {"a": 1}}
        r = client.get("/health/readiness")
        assert (r.status_code, r.json()["detail"]) == (503, "RuntimeError: database down")
        r = client.post("/x", content=b"{broken")  # the caller's fault: 400, not an error
        assert (r.status_code, r.json()["error"][:25]) == (400, "request body is not JSON:")
        metrics = client.get("/metrics").text
        assert "faas_errors_total{" not in metrics


def test_readiness_fails_before_startup_and_after_shutdown() -> None:
    app = FunctionApp(LoadedFunction(lambda r: "x"), RuntimeConfig(identity=ID), start_time=0.0)
    client = TestClient(app)  # no lifespan: never started
    assert client.get("/health/readiness").status_code == 503
    with TestClient(app) as started:
        assert started.get("/health/readiness").status_code == 200
    assert app.ready is False


def test_init_hook_runs_once_before_serving() -> None:
    calls: list[str] = []
    fn = LoadedFunction(lambda r: len(calls), init=lambda: calls.append("init"))
    with _client(fn) as client:
        assert client.get("/").json() == 1


def test_asgi_signature_serves_an_app_with_the_same_telemetry() -> None:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    app = FunctionApp(
        LoadedFunction(asgi), RuntimeConfig(signature="asgi", identity=ID), start_time=0.0
    )
    with TestClient(app) as client:
        r = client.get("/deep/path")
        assert (r.status_code, r.text) == (201, "/deep/path")
        assert parse_traceparent(r.headers["traceparent"]) is not None
    assert app.metrics.invocations == {"http": 1}


def test_cloudevent_signature_answers_in_binary_mode() -> None:
    def handle(event: CloudEvent) -> CloudEvent | None:
        if event.type == "quiet":
            return None
        return CloudEvent(type="reply", source="/fn", data={"got": event.data})

    with _client(LoadedFunction(handle), "cloudevent") as client:
        ce = {"ce-id": "1", "ce-source": "/t", "ce-specversion": "1.0"}
        r = client.post("/", json={"n": 1}, headers={**ce, "ce-type": "ping"})
        assert (r.status_code, r.headers["ce-type"], r.json()) == (200, "reply", {"got": {"n": 1}})
        assert client.post("/", json={}, headers={**ce, "ce-type": "quiet"}).status_code == 204
        assert client.post("/", json={}).status_code == 400


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fnmod_")]:
        del sys.modules[name]
    if str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


def test_load_function_finds_handler_and_hooks(module_dir: Path) -> None:
    (module_dir / "fnmod_a.py").write_text("def handle(r): return 1\ndef liveness(): return 1\n")
    fn = load_function(RuntimeConfig(source=module_dir, handler="fnmod_a:handle"))
    assert fn.liveness is not None and fn.readiness is None
    (module_dir / "fnmod_b.py").write_text("handle = 42\n")
    with pytest.raises(ValueError, match="no callable"):
        load_function(RuntimeConfig(source=module_dir, handler="fnmod_b:handle"))


def test_config_from_env_refuses_unknown_signatures() -> None:
    config = RuntimeConfig.from_env(
        {"K_SERVICE": "ksvc", "K_REVISION": "ksvc-001", "HOSTNAME": "pod-9"}
    )
    assert config.identity == FaasIdentity("ksvc", "ksvc-001", "pod-9")
    with pytest.raises(ValueError, match="FLOTILLA_FN_SIGNATURE"):
        RuntimeConfig.from_env({"FLOTILLA_FN_SIGNATURE": "smtp"})


def test_unreachable_collector_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    from flotilla.fn.runtime.telemetry import OtlpExporter

    exporter = OtlpExporter("http://127.0.0.1:9/v1/traces", {"service.name": "fn"}, delay=0.01)
    exporter.submit(new_span("fn", None))
    exporter.shutdown()
    assert any("OTLP export of 1 spans" in r.getMessage() for r in caplog.records)


def test_a_full_export_queue_drops_spans_instead_of_blocking() -> None:
    from flotilla.fn.runtime.telemetry import OtlpExporter

    exporter = OtlpExporter("http://127.0.0.1:9/v1/traces", {}, delay=60, max_queue=2)
    try:
        for _ in range(1000):  # far faster than the exporter thread drains a queue of 2
            exporter.submit(new_span("fn", None))
        assert exporter.dropped >= 1
    finally:
        exporter.shutdown(timeout=15)
