"""FleetLock: the reboot semaphore protocol of Zincati (Fedora CoreOS) and Flatcar (pure part).

``POST /v1/pre-reboot`` takes a slot in the client's group (recursive: a holder asking again
keeps its slot); ``POST /v1/steady-state`` gives it back (idempotent). Each group has
``max_holders`` slots and optional weekly reboot windows; groups not configured get one slot
and no window, like locksmith's default semaphore.

The decision (:func:`may_lock`) and the request parsing live here and are pure, so the node
side can speak the protocol without a database; the update server keeps the holders in its
database (:mod:`flotilla.updates.server.fleetlock_store`) and serves the endpoints
(:mod:`flotilla.updates.server.fleetlock_http`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flotilla.updates.models import Window
from flotilla.updates.policies import in_any_window

PROTOCOL_HEADER = "fleet-lock-protocol"
DEFAULT_GROUP = "default"
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_ID = 256
MAX_BODY = 16 * 1024


class FleetLockError(ValueError):
    """A request the protocol does not allow (HTTP 400); ``kind`` goes into the JSON answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LockGroup:
    """A FleetLock group: how many may reboot at once, and when."""

    name: str
    max_holders: int = 1
    windows: tuple[Window, ...] = ()
    timezone: str = "UTC"
    token_sha256: str | None = None
    """SHA-256 (hex) of the token clients of this group must present; None: no token."""


@dataclass(frozen=True)
class LockDecision:
    """Whether the client gets (or keeps) a slot, and why not."""

    ok: bool
    reason: str = ""
    already_held: bool = False


def parse_client_params(body: bytes) -> tuple[str, str]:
    """``(id, group)`` from ``{"client_params": {"id": ..., "group": ...}}``; group defaults."""
    if len(body) > MAX_BODY:
        raise FleetLockError("bad_request", f"body larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise FleetLockError("bad_request", "body is not JSON") from None
    params = doc.get("client_params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise FleetLockError("bad_request", "client_params is missing")
    node_id, group = params.get("id"), params.get("group", DEFAULT_GROUP)
    if not isinstance(node_id, str) or not node_id.strip():
        raise FleetLockError("bad_request", "client_params.id is missing")
    if len(node_id) > _MAX_ID or not node_id.isprintable():
        raise FleetLockError("bad_request", "client_params.id is too long or not printable")
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise FleetLockError("bad_request", "client_params.group is not a valid group name")
    return node_id, group


def presented_token(authorization: str) -> str:
    """The token in an ``Authorization`` header: ``Bearer <t>``, or HTTP Basic's password.

    Zincati sets no header of its own, but its HTTP client (reqwest) turns credentials in
    ``base_url`` (``https://fleetlock:<token>@host/``) into Basic auth; with only a user part
    (``https://<token>@host/``) the user is the token.
    """
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
        user, _, password = decoded.partition(":")
        return password or user
    return ""


def token_ok(group: LockGroup, authorization: str) -> bool:
    """Whether a request may use ``group``: always without a token, else the right one."""
    if group.token_sha256 is None:
        return True
    digest = hashlib.sha256(presented_token(authorization).encode()).hexdigest()
    return hmac.compare_digest(digest, group.token_sha256)


def may_lock(group: LockGroup, holders: Iterable[str], node_id: str, now: datetime) -> LockDecision:
    """Recursive lock: a holder keeps its slot; others need a free slot inside a window."""
    holders = set(holders)
    if node_id in holders:
        return LockDecision(True, already_held=True)
    if not in_any_window(now, group.windows, group.timezone):
        return LockDecision(False, f"group {group.name} is outside its reboot windows")
    if len(holders) >= group.max_holders:
        return LockDecision(False, f"group {group.name} has all {group.max_holders} slot(s) taken")
    return LockDecision(True)
