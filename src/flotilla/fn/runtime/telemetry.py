"""Metrics, traces and logs for one function instance, written out by hand.

Why by hand: the image has no pip, and the OpenTelemetry SDK plus a protobuf exporter would add
hundreds of milliseconds to a cold start. The wire formats are small and stable: Prometheus text
exposition 0.0.4, W3C Trace Context, and OTLP/HTTP with JSON encoding. The Node runtime writes the
same bytes, which the conformance suite checks.
"""

from __future__ import annotations

import bisect
import contextvars
import json
import logging
import os
import queue
import random
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BUCKETS",
    "FaasIdentity",
    "Metrics",
    "OtlpExporter",
    "Span",
    "exporter_from_env",
    "new_span",
    "parse_traceparent",
    "process_start_time",
    "setup_json_logging",
]

# OpenTelemetry FaaS semantic conventions: faas.invoke_duration buckets, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "flotilla_fn_span", default=None
)


@dataclass(frozen=True)
class FaasIdentity:
    """Who this instance is, as OpenTelemetry FaaS resource attributes name it."""

    name: str
    version: str
    instance: str
    language: str = "python"

    def labels(self, trigger: str) -> str:
        return (
            f'faas_name="{_esc(self.name)}",faas_version="{_esc(self.version)}",'
            f'faas_instance="{_esc(self.instance)}",faas_trigger="{_esc(trigger)}"'
        )


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        for bound, n in zip(BUCKETS, self.counts, strict=False):
            running += n
            lines.append(f'{name}_bucket{{{labels},le="{_num(bound)}"}} {running}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum{{{labels}}} {_num(self.sum)}")
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        return lines


class Metrics:
    """The FaaS instruments of one instance; updated from the event loop thread only."""

    def __init__(self, identity: FaasIdentity) -> None:
        self.identity = identity
        self.invocations: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.durations: dict[str, _Histogram] = {}
        self.coldstarts: dict[str, int] = {}
        self.init = _Histogram()
        self.cold = True

    def record(self, trigger: str, seconds: float, error: bool) -> bool:
        """Count one invocation; returns whether it was this instance's cold start."""
        target = self.errors if error else self.invocations
        target[trigger] = target.get(trigger, 0) + 1
        hist = self.durations.get(trigger)
        if hist is None:
            hist = self.durations[trigger] = _Histogram()
        hist.observe(seconds)
        cold, self.cold = self.cold, False
        if cold:
            self.coldstarts[trigger] = self.coldstarts.get(trigger, 0) + 1
        return cold

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        ident = self.identity
        out = [
            "# HELP faas_invocations_total Number of successful invocations.",
            "# TYPE faas_invocations_total counter",
            *(
                f"faas_invocations_total{{{ident.labels(t)}}} {n}"
                for t, n in sorted(self.invocations.items())
            ),
            "# HELP faas_errors_total Number of invocation errors.",
            "# TYPE faas_errors_total counter",
            *(
                f"faas_errors_total{{{ident.labels(t)}}} {n}"
                for t, n in sorted(self.errors.items())
            ),
            "# HELP faas_coldstarts_total Number of invocation cold starts.",
            "# TYPE faas_coldstarts_total counter",
            *(
                f"faas_coldstarts_total{{{ident.labels(t)}}} {n}"
                for t, n in sorted(self.coldstarts.items())
            ),
            "# HELP faas_invoke_duration_seconds Duration of the function's logic execution.",
            "# TYPE faas_invoke_duration_seconds histogram",
        ]
        for trigger, hist in sorted(self.durations.items()):
            out += hist.render("faas_invoke_duration_seconds", ident.labels(trigger))
        out += [
            "# HELP faas_init_duration_seconds Process start to serving (cold start time).",
            "# TYPE faas_init_duration_seconds histogram",
            *self.init.render("faas_init_duration_seconds", ident.labels("http")),
        ]
        return "\n".join(out) + "\n"


def process_start_time() -> float:
    """Wall-clock time the process started (Linux /proc): cold start includes interpreter boot.

    Age from ``/proc/uptime`` minus the start tick, not ``btime``: btime is whole seconds.
    """
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        age = max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
        return time.time() - age
    except (OSError, ValueError, IndexError):
        return time.time() - time.perf_counter()  # best effort elsewhere


# --- Tracing ----------------------------------------------------------------------------------


@dataclass
class Span:
    """One server span around an invocation."""

    trace_id: str
    span_id: str
    parent_id: str
    sampled: bool
    name: str
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def to_otlp(self) -> dict[str, Any]:
        span: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": 2,
            "startTimeUnixNano": str(self.start_ns),
            "endTimeUnixNano": str(self.end_ns),
            "attributes": _otlp_attributes(self.attributes),
            "status": {"code": 2, "message": self.error} if self.error else {"code": 0},
        }
        if self.parent_id:
            span["parentSpanId"] = self.parent_id
        return span


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a W3C header, None when absent or invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def new_span(name: str, traceparent: str | None) -> Span:
    """A span continuing the caller's trace, or starting a new sampled one."""
    parent = parse_traceparent(traceparent)
    rand = random.getrandbits
    if parent:
        trace_id, parent_id, sampled = parent
    else:
        trace_id, parent_id, sampled = f"{rand(128) or 1:032x}", "", True
    return Span(trace_id, f"{rand(64) or 1:016x}", parent_id, sampled, name, time.time_ns())


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _otlp_attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _otlp_value(v)} for k, v in attrs.items()]


class OtlpExporter:
    """Batches finished spans and posts them as OTLP/HTTP JSON from one daemon thread.

    A full queue drops spans rather than slow an invocation; a failed post is logged and dropped.
    """

    def __init__(
        self,
        endpoint: str,
        resource: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        delay: float = 1.0,
        max_queue: int = 2048,
        max_batch: int = 512,
    ) -> None:
        self.endpoint = endpoint
        self.resource = _otlp_attributes(resource)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.delay = delay
        self.max_batch = max_batch
        self.dropped = 0
        self._queue: queue.Queue[Span | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="otlp-exporter", daemon=True)
        self._thread.start()

    def submit(self, span: Span) -> None:
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export what is queued, then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Span] = []
            deadline = time.monotonic() + self.delay
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._post(batch)

    def _post(self, batch: list[Span]) -> None:
        import urllib.request  # here, not at import: it costs ~60 ms of cold start

        body = json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": self.resource},
                        "scopeSpans": [
                            {
                                "scope": {"name": "flotilla.fn"},
                                "spans": [s.to_otlp() for s in batch],
                            }
                        ],
                    }
                ]
            }
        ).encode()
        request = urllib.request.Request(
            self.endpoint, data=body, headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except Exception as exc:  # an unreachable collector must never hurt the function
            logging.getLogger("flotilla.fn").warning(
                "OTLP export of %d spans to %s failed: %s", len(batch), self.endpoint, exc
            )


def _parse_kv(value: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
    return {k.strip(): urllib.parse.unquote(v.strip()) for k, v in pairs}


def exporter_from_env(env: dict[str, str], identity: FaasIdentity) -> OtlpExporter | None:
    """An exporter when ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set and not disabled."""
    if (
        env.get("OTEL_SDK_DISABLED", "").lower() == "true"
        or env.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none"
    ):
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if not endpoint:
        return None
    resource: dict[str, Any] = {
        **_parse_kv(env.get("OTEL_RESOURCE_ATTRIBUTES", "")),
        "service.name": env.get("OTEL_SERVICE_NAME") or identity.name,
        "faas.name": identity.name,
        "faas.version": identity.version,
        "faas.instance": identity.instance,
        "telemetry.sdk.name": "flotilla-fn",
        "telemetry.sdk.language": identity.language,
    }
    headers = _parse_kv(
        env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    )
    delay = float(env.get("OTEL_BSP_SCHEDULE_DELAY", "1000")) / 1000.0
    return OtlpExporter(endpoint, resource, headers=headers, delay=delay)


# --- Logs ------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace and span of the invocation being served."""

    def __init__(self, faas_name: str) -> None:
        super().__init__()
        self.faas_name = faas_name

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "faas.name": self.faas_name,
        }
        span = current_span.get()
        if span is not None:
            doc["trace_id"] = span.trace_id
            doc["span_id"] = span.span_id
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


def setup_json_logging(faas_name: str, level: str = "INFO") -> None:
    """Route every logger (the function's, uvicorn's) through one JSON handler on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(faas_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
