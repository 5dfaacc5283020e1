"""What a function sees and returns: requests, responses and CloudEvents.

Stdlib only, because this package is copied as is into function images that have no pip.
The Node runtime (``fn/node/runtime.js``) mirrors these shapes field for field.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["CloudEvent", "Request", "Response", "decode_cloudevent", "encode_cloudevent"]

_CE_REQUIRED = ("id", "source", "type", "specversion")
_CE_HEADER_PREFIX = "ce-"
_STRUCTURED = "application/cloudevents+json"


class Request:
    """One HTTP invocation as the handler sees it: the body is already read."""

    __slots__ = (
        "body",
        "headers",
        "log",
        "method",
        "path",
        "query",
        "span_id",
        "trace_id",
        "traceparent",
    )

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        query: str | dict[str, str] = "",
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
        trace_id: str = "",
        span_id: str = "",
        traceparent: str = "",
        log: logging.Logger | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = (
            dict(parse_qsl(query, keep_blank_values=True))
            if isinstance(query, str)
            else dict(query)
        )
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body.encode() if isinstance(body, str) else body
        self.trace_id = trace_id
        self.span_id = span_id
        # The header to send on outgoing calls so they join this invocation's trace.
        self.traceparent = traceparent
        self.log = log or logging.getLogger("function")

    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced, never raised)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` on malformed input."""
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """An explicit response, for when a status code or headers matter."""

    body: Any = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CloudEvent:
    """A CloudEvents 1.0 event; ``data`` is JSON-decoded when the content type is JSON."""

    type: str
    source: str
    data: Any = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    specversion: str = "1.0"
    datacontenttype: str | None = "application/json"
    subject: str | None = None
    time: str | None = field(
        default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z")
    )
    extensions: dict[str, str] = field(default_factory=dict)


def _is_json(content_type: str | None) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json") or ct == "text/json"


def decode_cloudevent(headers: dict[str, str], body: bytes) -> CloudEvent:
    """Parse binary or structured content mode; ``ValueError`` says what is missing or wrong."""
    headers = {k.lower(): v for k, v in headers.items()}
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == _STRUCTURED:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"structured CloudEvent is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("structured CloudEvent must be a JSON object")
        attrs = {k: v for k, v in doc.items() if k not in ("data", "data_base64")}
        data: Any = doc.get("data")
    else:
        attrs = {
            k[len(_CE_HEADER_PREFIX) :]: v
            for k, v in headers.items()
            if k.startswith(_CE_HEADER_PREFIX)
        }
        attrs["datacontenttype"] = content_type or None
        if _is_json(content_type) and body:
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ValueError(f"CloudEvent data is not JSON: {exc}") from None
        else:
            data = body.decode("utf-8", "replace") if body else None
    missing = [a for a in _CE_REQUIRED if not attrs.get(a)]
    if missing:
        raise ValueError(f"not a CloudEvent: missing {', '.join(missing)}")
    if str(attrs["specversion"]) != "1.0":
        raise ValueError(f"unsupported CloudEvents specversion {attrs['specversion']!r}")
    known = {"id", "source", "type", "specversion", "datacontenttype", "subject", "time"}
    return CloudEvent(
        type=str(attrs["type"]),
        source=str(attrs["source"]),
        data=data,
        id=str(attrs["id"]),
        datacontenttype=attrs.get("datacontenttype"),
        subject=attrs.get("subject"),
        time=attrs.get("time"),
        extensions={k: str(v) for k, v in attrs.items() if k not in known},
    )


def encode_cloudevent(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary content mode: attributes as ``ce-`` headers, data as the body."""
    headers = {
        "ce-id": event.id,
        "ce-source": event.source,
        "ce-type": event.type,
        "ce-specversion": event.specversion,
    }
    if event.subject:
        headers["ce-subject"] = event.subject
    if event.time:
        headers["ce-time"] = event.time
    for key, value in event.extensions.items():
        headers[f"ce-{key}"] = value
    if event.data is None:
        return headers, b""
    if isinstance(event.data, bytes):
        body = event.data
    elif isinstance(event.data, str) and not _is_json(event.datacontenttype):
        body = event.data.encode()
    else:
        body = json.dumps(event.data, separators=(",", ":")).encode()
    headers["content-type"] = event.datacontenttype or "application/json"
    return headers, body
