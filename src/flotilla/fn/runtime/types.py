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

__all__ = ["BadRequestError", "CloudEvent", "Request", "Response"]


class BadRequestError(ValueError):
    """The request cannot be read as asked (a body that is not JSON); the runtime answers 400."""


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
        """The body parsed as JSON; malformed input raises :class:`BadRequestError` (400)."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise BadRequestError(f"request body is not JSON: {exc}") from None


@dataclass
class Response:
    """An explicit response, for when a status code or headers matter."""

    body: Any = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CloudEvent:
    """A CloudEvents 1.0 event as a handler sees and returns it.

    ``data`` is the decoded JSON value for JSON content types, a ``str`` for ``text/*`` and
    ``bytes`` for anything else. ``structured=True`` on a reply sends it in structured content
    mode (``application/cloudevents+json``) instead of binary mode.
    """

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
    dataschema: str | None = None
    structured: bool = False
