"""CloudEvents over HTTP through the official ``cloudevents`` SDK (binary, structured, batch).

The SDK parses and serialises; this module adds what the HTTP binding asks of a receiver and the
SDK (1.x) leaves out: percent-decoding of ``ce-`` header values (and encoding on replies), a
strict RFC 3339 ``time``, CloudEvents 1.0 only, and data typed by its content type (JSON parsed,
``text/*`` a string, anything else, ``application/octet-stream`` included, stays bytes). The SDK is
imported only by functions with the ``cloudevent`` signature.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cloudevents import exceptions as ce_errors
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent as SdkEvent
from cloudevents.http import from_http, from_json

from .types import CloudEvent

__all__ = ["BATCH", "STRUCTURED", "decode_events", "encode_batch", "encode_reply"]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_KNOWN = ("id", "source", "type", "specversion", "datacontenttype", "subject", "time", "dataschema")
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
# The binding: space, '"', '%' and anything outside printable ASCII are percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _is_json(content_type: str | None) -> bool:
    ct = _media_type(content_type)
    return ct in ("application/json", "text/json") or ct.endswith("+json")


def _typed_data(data: Any, content_type: str | None) -> Any:
    """Binary-mode or ``data_base64`` bytes as the handler should see them."""
    if not isinstance(data, bytes | bytearray | str):
        return data
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if not raw:
        return None
    if _is_json(content_type):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"CloudEvent data is not JSON: {exc}") from None
    if _media_type(content_type).startswith("text/"):
        return raw.decode("utf-8", "replace")
    return raw


def _check(event: SdkEvent, time_given: bool = True) -> None:
    if str(event["specversion"]) != "1.0":
        raise ValueError(f"unsupported CloudEvents specversion {event['specversion']!r}")
    for name in ("id", "source", "type"):
        if not event.get(name):
            raise ValueError(f"not a CloudEvent: empty {name}")
    time = event.get("time") if time_given else None
    if time is not None and not (isinstance(time, str) and _RFC3339.match(time)):
        raise ValueError(f"CloudEvent time {time!r} is not an RFC 3339 timestamp")


def _to_ours(event: SdkEvent, data: Any, time_given: bool) -> CloudEvent:
    """Our view of a received event; the SDK fills in a ``time`` the sender never gave."""
    _check(event, time_given)
    attrs = {k: event[k] for k in event}
    if not time_given:
        attrs.pop("time", None)
    return CloudEvent(
        type=str(attrs["type"]),
        source=str(attrs["source"]),
        data=data,
        id=str(attrs["id"]),
        datacontenttype=attrs.get("datacontenttype"),
        subject=attrs.get("subject"),
        time=attrs.get("time"),
        dataschema=attrs.get("dataschema"),
        extensions={k: str(v) for k, v in attrs.items() if k not in _KNOWN},
    )


def _percent_decode(value: str) -> str:
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"header value {value!r} is not percent-encoded UTF-8") from None


def decode_events(headers: dict[str, str], body: bytes) -> tuple[list[CloudEvent], str]:
    """The events in a request and its mode (binary, structured or batch).

    ``ValueError`` says why the request is not a valid CloudEvents 1.0 message.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    media = _media_type(headers.get("content-type"))
    try:
        if media == BATCH:
            try:
                items = json.loads(body)
            except ValueError as exc:
                raise ValueError(f"CloudEvents batch is not JSON: {exc}") from None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("a CloudEvents batch is a JSON array of objects")
            events = []
            for item in items:
                ev = from_json(json.dumps(item), data_unmarshaller=lambda x: x)
                events.append(_to_ours(ev, _structured_data(item, ev), "time" in item))
            return events, "batch"
        if media == STRUCTURED:
            try:
                doc = json.loads(body)
            except ValueError as exc:
                raise ValueError(f"structured CloudEvent is not JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise ValueError("structured CloudEvent must be a JSON object")
            ev = from_http(headers, body, data_unmarshaller=lambda x: x)
            return [_to_ours(ev, _structured_data(doc, ev), "time" in doc)], "structured"
        if not any(k.startswith("ce-") for k in headers):
            raise ValueError("not a CloudEvent: no ce- headers, not application/cloudevents+json")
        decoded = {k: _percent_decode(v) if k.startswith("ce-") else v for k, v in headers.items()}
        missing = [a for a in ("id", "source", "type", "specversion") if not decoded.get(f"ce-{a}")]
        if missing:
            raise ValueError(f"not a CloudEvent: missing {', '.join('ce-' + a for a in missing)}")
        ev = from_http(decoded, body, data_unmarshaller=lambda x: x)
        data = _typed_data(ev.data, headers.get("content-type"))
        return [_to_ours(ev, data, "ce-time" in decoded)], "binary"
    except ce_errors.GenericException as exc:
        raise ValueError(f"not a CloudEvent: {exc}") from None


def _structured_data(doc: dict[str, Any], event: SdkEvent) -> Any:
    """``data`` stays the JSON value it was; ``data_base64`` (decoded by the SDK) stays bytes
    unless its content type says JSON or text."""
    if "data_base64" in doc:
        encoded = doc["data_base64"]
        if not (isinstance(encoded, str) and _BASE64.match(encoded)):
            raise ValueError("data_base64 is not base64")
        if not isinstance(event.data, bytes | bytearray):
            raise ValueError("data_base64 is not base64")
        return _typed_data(event.data, event.get("datacontenttype"))
    return doc.get("data")


def _sdk_event(reply: Any) -> SdkEvent:
    if isinstance(reply, SdkEvent):
        return reply
    if not isinstance(reply, CloudEvent):
        raise TypeError("a cloudevent function returns a CloudEvent (or a list of them) or None")
    attrs: dict[str, Any] = {
        "id": reply.id,
        "source": reply.source,
        "type": reply.type,
        "specversion": reply.specversion,
    }
    for name in ("subject", "time", "dataschema"):
        value = getattr(reply, name)
        if value:
            attrs[name] = value
    content_type = reply.datacontenttype
    if isinstance(reply.data, bytes | bytearray) and content_type == "application/json":
        content_type = "application/octet-stream"  # the default, for data that is not JSON
    if reply.data is not None and content_type:
        attrs["datacontenttype"] = content_type
    attrs.update(reply.extensions)
    return SdkEvent(attrs, reply.data)


def _marshal(data: Any, content_type: str | None) -> Any:
    if data is None or isinstance(data, bytes | bytearray):
        return data
    if isinstance(data, str) and not _is_json(content_type):
        return data.encode()
    return json.dumps(data, separators=(",", ":")).encode()


def encode_reply(reply: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body for a reply, in the mode the function chose (binary by default)."""
    structured = bool(getattr(reply, "structured", False))
    event = _sdk_event(reply)
    _check(event)
    if structured:
        headers, body = to_structured(event)
        return {"content-type": STRUCTURED}, body if isinstance(body, bytes) else body.encode()
    headers, body = to_binary(
        event, data_marshaller=lambda d: _marshal(d, event.get("datacontenttype"))
    )
    out = {
        k.lower(): quote(str(v), safe=_HEADER_SAFE) if k.lower().startswith("ce-") else str(v)
        for k, v in headers.items()
    }
    if event.data is not None and "content-type" not in out:
        out["content-type"] = "application/json"
    return out, body or b""


def encode_batch(replies: list[Any]) -> tuple[dict[str, str], bytes]:
    """Replies to a batch: a batch of structured events."""
    items = []
    for reply in replies:
        _, body = to_structured(_checked(_sdk_event(reply)))
        items.append(json.loads(body))
    return {"content-type": BATCH}, json.dumps(items, separators=(",", ":")).encode()


def _checked(event: SdkEvent) -> SdkEvent:
    _check(event)
    return event
