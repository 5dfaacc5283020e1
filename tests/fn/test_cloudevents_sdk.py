"""CloudEvents conformance: every case is encoded by both official SDKs (Python ``cloudevents``
and the npm ``cloudevents`` package, through ``ce_sdk_client.js``), sent to both runtimes, and the
reply is decoded by both SDKs again. The echo functions (``conformance/events-*``) report in
extensions what the handler saw."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http, from_json

from flotilla.fn.deps import node_runtime_modules

from .support import CONFORMANCE, Collector, Served, runtime_params, runtime_under_test

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node")

CLIENT = Path(__file__).parent / "ce_sdk_client.js"
BATCH = "application/cloudevents-batch+json"
SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
TIME = "2026-01-02T03:04:05.123+02:00"
BASE = {"type": "dev.example.ping", "source": "/tests/ce", "specversion": "1.0"}
BYTES = b'\x00\xff{"n": 1}\r\n'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _event(id_: str, ct: str, data: dict[str, Any] | None, **attrs: str) -> dict[str, Any]:
    return {"attrs": {**BASE, "id": id_, "datacontenttype": ct, **attrs}, "data": data}


CASES: dict[str, dict[str, Any]] = {
    "binary-json": {
        "mode": "binary",
        **_event("j1", "application/json", {"json": {"n": 1, "s": "é"}}, custom="x1"),
    },
    "binary-octet-stream-stays-bytes": {
        "mode": "binary",
        **_event("b1", "application/octet-stream", {"base64": _b64(BYTES)}),
    },
    "binary-text": {
        "mode": "binary",
        **_event("t1", "text/plain; charset=utf-8", {"text": "héllo wörld"}),
    },
    "binary-percent-encoded": {
        "mode": "binary",
        **_event("p1", "application/json", {"json": [1]}, subject='café 100% "q"', time=TIME),
    },
    "structured-json": {
        "mode": "structured",
        **_event("s1", "application/json", {"json": {"x": [1, 2]}}, subject="sub", time=TIME),
    },
    "structured-data-base64": {
        "mode": "structured",
        **_event("s2", "application/octet-stream", {"base64": _b64(BYTES)}),
    },
    "structured-reply-requested": {
        "mode": "binary",
        **_event("r1", "application/json", {"json": {"a": 1}}, reply="structured"),
    },
    "batch": {
        "mode": "batch",
        "events": [
            _event("m1", "application/json", {"json": {"k": "v"}}),
            _event("m2", "application/octet-stream", {"base64": _b64(BYTES)}),
        ],
    },
    "no-reply": {"mode": "binary", **_event("n1", "application/json", {"json": 1}, reply="none")},
}
SPEC_03 = {
    f"specversion-0.3-{mode}": {
        "mode": mode,
        **_event("v3", "application/json", {"json": 1}, specversion="0.3"),
    }
    for mode in ("binary", "structured")
}
CE = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}
STRUCTURED = {"content-type": "application/cloudevents+json"}
HOSTILE: dict[str, tuple[dict[str, str], bytes]] = {
    "time-not-rfc3339-header": ({**CE, "ce-time": "yesterday"}, b""),
    "time-without-zone": ({**CE, "ce-time": "2026-01-02T03:04:05"}, b""),
    "time-not-rfc3339-structured": (
        STRUCTURED,
        json.dumps({**BASE, "id": "1", "time": "12/04/2026"}).encode(),
    ),
    "percent-encoding-not-utf8": ({**CE, "ce-subject": "%FF%FE"}, b""),
    "missing-ce-type": ({k: v for k, v in CE.items() if k != "ce-type"}, b""),
    "structured-not-an-object": (STRUCTURED, b"[1, 2]"),
    "structured-missing-source": (STRUCTURED, b'{"specversion":"1.0","id":"1","type":"t"}'),
    "data-base64-not-base64": (
        STRUCTURED,
        json.dumps({**BASE, "id": "1", "data_base64": "!!not base64!!"}).encode(),
    ),
    "batch-not-an-array": ({"content-type": BATCH}, b'{"a": 1}'),
    "batch-item-invalid": ({"content-type": BATCH}, json.dumps([{**BASE, "id": ""}]).encode()),
    "binary-json-not-json": ({**CE, "content-type": "application/json"}, b"{nope"),
}


# --- the two SDKs ---------------------------------------------------------------------------


def _node(request: dict[str, Any]) -> Any:
    proc = subprocess.run(
        ["node", str(CLIENT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env={"NODE_PATH": str(node_runtime_modules()), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def _py_data(data: dict[str, Any] | None) -> Any:
    if data is None:
        return None
    if "base64" in data:
        return base64.b64decode(data["base64"])
    return data.get("text", data.get("json"))


def _py_event(case: dict[str, Any]) -> CloudEvent:
    return CloudEvent(dict(case["attrs"]), _py_data(case["data"]))


def _raw(value: Any) -> Any:
    return value if isinstance(value, bytes | str) or value is None else json.dumps(value)


def _percent(headers: dict[str, Any]) -> dict[str, str]:
    """The binding's percent-encoding of ce- values (a transport's job; the SDKs leave it out)."""
    return {
        k.lower(): quote(str(v), safe=SAFE) if k.lower().startswith("ce-") else str(v)
        for k, v in headers.items()
    }


def py_encode(case: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    if case["mode"] == "batch":
        items = [json.loads(to_structured(_py_event(e))[1]) for e in case["events"]]
        return {"content-type": BATCH}, json.dumps(items).encode()
    if case["mode"] == "structured":
        headers, body = to_structured(_py_event(case))
    else:
        headers, body = to_binary(_py_event(case), data_marshaller=_raw)
    return _percent(headers), body if isinstance(body, bytes) else body.encode()


def node_encode(case: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    [message] = _node({"op": "encode", "cases": [case]})
    return message["headers"], base64.b64decode(message["body_base64"])


def _payload(data: Any, content_type: str | None) -> Any:
    """An SDK's decoded data as a value: JSON parsed, text as str, the rest bytes."""
    media = (content_type or "").split(";")[0].strip()
    if isinstance(data, dict) and data.keys() <= {"json", "text", "base64"}:
        data = base64.b64decode(data["base64"]) if "base64" in data else _py_data(data)
    if isinstance(data, bytes | str) and (media.endswith("json")):
        return json.loads(data)
    if isinstance(data, bytes) and media.startswith("text/"):
        return data.decode()
    return data


def py_decode(headers: dict[str, str], body: bytes) -> list[dict[str, Any]]:
    decoded = {
        k: unquote_to_bytes(v).decode() if k.startswith("ce-") else v for k, v in headers.items()
    }
    if headers.get("content-type", "").startswith(BATCH):
        events = [from_json(json.dumps(i), data_unmarshaller=lambda x: x) for i in json.loads(body)]
    else:
        events = [from_http(decoded, body, data_unmarshaller=lambda x: x)]
    out = []
    for ev in events:
        attrs = {k: str(ev[k]) for k in ev}
        out.append({"attrs": attrs, "data": _payload(ev.data, attrs.get("datacontenttype"))})
    return out


def node_decode(headers: dict[str, str], body: bytes) -> list[dict[str, Any]]:
    [events] = _node(
        {"op": "decode", "messages": [{"headers": headers, "body_base64": _b64(body)}]}
    )
    return [
        {"attrs": e["attrs"], "data": _payload(e["data"], e["attrs"].get("datacontenttype"))}
        for e in events
    ]


ENCODERS = {"python-sdk": py_encode, "node-sdk": node_encode}
DECODERS = {"python-sdk": py_decode, "node-sdk": node_decode}


# --- the runtimes ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=runtime_params())
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    kind: str = request.param
    collector = Collector()
    try:
        project = CONFORMANCE / f"events-{kind.removesuffix('-image')}"
        tmp = tmp_path_factory.mktemp(kind)
        with runtime_under_test(kind, collector, tmp, request, project) as s:
            yield s
    finally:
        collector.close()


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def _sent_events(case: dict[str, Any]) -> list[dict[str, Any]]:
    return case["events"] if case["mode"] == "batch" else [case]


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_case_round_trips_through_both_sdks(
    served: Served, name: str, encoder: str, decoder: str
) -> None:
    case = CASES[name]
    headers, body = ENCODERS[encoder](case)
    r = httpx.post(served.base + "/", headers=headers, content=body, timeout=10)
    if name == "no-reply":
        assert (r.status_code, r.content) == (204, b"")
        return
    assert r.status_code == 200, r.text
    content_type = r.headers["content-type"]
    if case["mode"] == "batch":
        assert content_type.startswith(BATCH)
    elif case["attrs"].get("reply") == "structured":
        assert content_type.startswith("application/cloudevents+json")
    else:
        assert r.headers["ce-type"] == "dev.flotilla.echo"  # binary mode
    replies = DECODERS[decoder]({k.lower(): v for k, v in r.headers.items()}, r.content)
    sent = _sent_events(case)
    assert len(replies) == len(sent)
    for reply, event in zip(replies, sent, strict=True):
        attrs, ct = reply["attrs"], event["attrs"]["datacontenttype"]
        assert (attrs["type"], attrs["source"], attrs["gotid"]) == (
            "dev.flotilla.echo",
            "/echo",
            event["attrs"]["id"],
        )
        expected = _payload(event["data"], ct)
        kind = {bytes: "bytes", str: "text"}.get(type(expected), "json")
        assert attrs["datakind"] == kind, attrs
        assert reply["data"] == expected
        assert attrs["gotsubject"] == event["attrs"].get("subject", "none")
        assert attrs["gotext"] == event["attrs"].get("custom", "none")
        if "time" in event["attrs"]:
            assert _instant(attrs["gottime"]) == _instant(TIME)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
@pytest.mark.parametrize("name", sorted(SPEC_03))
def test_other_specversions_are_refused(served: Served, name: str, encoder: str) -> None:
    headers, body = ENCODERS[encoder](SPEC_03[name])
    r = httpx.post(served.base + "/", headers=headers, content=body, timeout=10)
    assert r.status_code == 400
    assert "specversion" in r.json()["error"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_invalid_messages_get_400_with_the_reason(served: Served, name: str) -> None:
    headers, body = HOSTILE[name]
    r = httpx.post(served.base + "/", headers=headers, content=body, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert r.headers["traceparent"]
