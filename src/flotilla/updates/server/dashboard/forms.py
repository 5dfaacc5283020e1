"""Form fields to typed values, with an error per field: pure functions, no I/O.

The policy form is checked by the same :func:`fleetspec.policy_problems` as fleet files and the
REST API, so the three can never disagree on what a valid policy is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from flotilla.updates.models import InvalidVersionError, Version
from flotilla.updates.server.fleetspec import policy_problems

MAX_FORM = 64 * 1024
"""Bytes a dashboard form may send."""

BOOL_FIELDS = ("updates_enabled", "safe_mode", "office_hours")
INT_FIELDS = ("max_updates_per_period", "max_failures")
TEXT_FIELDS = ("timezone", "period_interval", "update_timeout")
OPTIONAL = ("max_failures", "pinned_version")


class FormTooLargeError(ValueError):
    """A form body over :data:`MAX_FORM`."""


def parse_form(body: bytes) -> dict[str, str]:
    """A urlencoded body as single values (the last one wins), limited in size."""
    if len(body) > MAX_FORM:
        raise FormTooLargeError(f"form larger than {MAX_FORM} bytes")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def policy_from_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(policy dict, field -> error). Every field of the form is sent, so an absent checkbox
    means false and an empty optional field means "not set"."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {k: form.get(k) in ("on", "true", "1") for k in BOOL_FIELDS}
    for k in TEXT_FIELDS:
        out[k] = form.get(k, "").strip()
        if not out[k]:
            errors[k] = "required"
    for k in INT_FIELDS:
        raw = form.get(k, "").strip()
        if not raw and k in OPTIONAL:
            out[k] = None
        elif re.fullmatch(r"\d{1,9}", raw):
            out[k] = int(raw)
        else:
            out[k] = raw  # shown again as typed, beside its error
            errors[k] = "must be a whole number >= 0" + (" or empty" if k in OPTIONAL else "")
    raw = form.get("rollout_percent", "").strip()
    try:
        out["rollout_percent"] = float(raw)
    except ValueError:
        out["rollout_percent"] = raw
        errors["rollout_percent"] = "must be a number from 0 to 100"
    windows = re.split(r"[,\n;]", form.get("maintenance_windows", ""))
    out["maintenance_windows"] = [w.strip() for w in windows if w.strip()]
    pin = form.get("pinned_version", "").strip()
    out["pinned_version"] = pin or None
    clean = {k: v for k, v in out.items() if k not in errors}
    for k, msg in policy_problems(clean):
        errors.setdefault(k, msg)
    return out, errors


def version_from_form(raw: str, allowed: list[str]) -> tuple[str | None, str | None]:
    """(version, error) for the channel form: a semantic version that has a package."""
    v = raw.strip()
    if not v:
        return None, "pick a version"
    try:
        Version.parse(v)
    except InvalidVersionError as e:
        return None, str(e)
    if v not in allowed:
        return None, f"no package of {v} in this application"
    return v, None
