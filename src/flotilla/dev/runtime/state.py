"""Per-resource status the engine keeps and the UI shows, plus the on-disk record ``down`` reads."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.dev.plan.model import Resource

MAX_LOG_LINES = 5000


@dataclass
class BuildRecord:
    """The last update of a resource: what was done, why, how long, and how it ended."""

    action: str
    reason: str
    started: float
    seconds: float = 0.0
    error: str = ""


@dataclass
class ResourceState:
    """Mutable view of one resource; guarded by the engine's lock."""

    resource: Resource
    status: str = "pending"  # pending|waiting|building|updating|deploying|ready|error|disabled
    error: str = ""
    last: BuildRecord | None = None
    history: list[BuildRecord] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG_LINES))
    log_total: int = 0
    pending_changes: set[str] = field(default_factory=set)
    deployed_refs: dict[str, str] = field(default_factory=dict)  # declared ref → cluster ref
    applied: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)  # pod_summary() of each, by monitor
    ready_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def append_log(self, line: str) -> None:
        for part in str(line).splitlines() or [""]:
            self.log.append(part)
            self.log_total += 1

    def log_since(self, index: int) -> tuple[list[str], int]:
        """Lines after the ``index``-th ever written (older ones may have been dropped)."""
        first = self.log_total - len(self.log)
        start = max(index, first) - first
        return list(self.log)[start:], self.log_total

    def snapshot(self) -> dict[str, Any]:
        r = self.resource
        last = (
            None
            if self.last is None
            else {
                "action": self.last.action,
                "reason": self.last.reason,
                "started": self.last.started,
                "seconds": round(self.last.seconds, 3),
                "error": self.last.error,
            }
        )
        return {
            "name": r.name,
            "kind": str(r.kind),
            "labels": list(r.labels),
            "status": self.status,
            "error": self.error,
            "last_build": last,
            "builds": len(self.history),
            "trigger_mode": "auto" if r.trigger_mode.auto else "manual",
            "pending_changes": len(self.pending_changes),
            "links": [{"url": lk.url, "name": lk.name or lk.url} for lk in r.links]
            + [
                {
                    "url": f"http://{p.host}:{p.local_port}/{p.link_path.lstrip('/')}",
                    "name": p.name or f"{p.local_port}",
                }
                for p in r.port_forwards
            ],
            "resource_deps": list(r.resource_deps),
            "images": dict(self.deployed_refs),
            "log_total": self.log_total,
            "pods": list(self.pods),
        }


def state_file(tiltfile: Path) -> Path:
    """Where ``up`` records what it applied and started, for ``down`` in another shell."""
    key = hashlib.sha256(str(tiltfile.resolve()).encode()).hexdigest()[:16]
    base = Path(os.environ.get("FLOTILLA_DEV_STATE") or Path.home() / ".cache/flotilla/dev")
    return base / f"{key}.json"


def write_record(tiltfile: Path, record: dict[str, Any]) -> None:
    path = state_file(tiltfile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {**record, "tiltfile": str(tiltfile.resolve()), "updated": time.time()}, indent=1
        )
    )
    tmp.replace(path)


def read_record(tiltfile: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_file(tiltfile).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def clear_record(tiltfile: Path) -> None:
    state_file(tiltfile).unlink(missing_ok=True)
