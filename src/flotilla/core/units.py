"""Durations (``90s``, ``5m``, ``1h30m``) and byte quantities (``1Gi``, ``500M``), parsed once.

Both come from users and from objects Flotilla did not write, so each parser refuses, with a
``ValueError`` naming the input, anything it does not fully understand: trailing text, negative
values, numbers too large for the units they count. Systems wrap the ``ValueError`` in their own
error where they need one.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation

MAX_DURATION = timedelta(days=100 * 365)
"""Longer than any wait, retention or timeout anyone means; beyond it is a typo or an attack."""
MAX_QUANTITY = 2**63 - 1
"""Kubernetes keeps quantities in an int64."""

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_QUANTITY_SUFFIXES = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY = re.compile(
    r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([-+]?[0-9]+))?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_MAX_TEXT = 64


def parse_duration(value: str | int | float) -> timedelta:
    """``90s``, ``500ms``, ``45m``, ``1h30m``, ``1.5h``, ``7d``; a bare number is seconds.

    Units are case-insensitive and may be separated by spaces (``1h 30m``). Negative, empty and
    over-long (:data:`MAX_DURATION`) durations are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    is_number = isinstance(value, int | float)
    seconds = float(value) if is_number else _duration_seconds(str(value))
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"a duration cannot be negative: {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {str(value)[:_MAX_TEXT]!r} is over {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def _duration_seconds(text: str) -> float:
    stripped = text.strip()
    if len(stripped) > _MAX_TEXT:
        raise ValueError(f"not a duration (too long): {stripped[:_MAX_TEXT]!r}...")
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        return float(stripped)
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(stripped):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
    if pos == 0 or pos != len(stripped):
        raise ValueError(f"not a duration (use e.g. 90s, 45m, 1h30m, 7d): {stripped!r}")
    return total


def format_duration(duration: timedelta) -> str:
    """The shortest text :func:`parse_duration` reads back as ``duration`` (to the millisecond)."""
    millis = round(duration.total_seconds() * 1000)
    if millis < 0:
        raise ValueError("a duration cannot be negative")
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if millis >= size:
            parts.append(f"{millis // size}{unit}")
            millis %= size
    return "".join(parts) or "0s"


def parse_quantity(text: str) -> int:
    """A Kubernetes resource quantity (``1Gi``, ``500M``, ``1.5G``, ``1e3``) in whole bytes,
    rounded up; over :data:`MAX_QUANTITY` is refused."""
    stripped = str(text).strip()
    match = _QUANTITY.match(stripped) if len(stripped) <= _MAX_TEXT else None
    if not match:
        raise ValueError(f"not a quantity: {str(text)[:_MAX_TEXT]!r}")
    number, exponent, suffix = match.groups()
    if exponent and abs(int(exponent)) > 30:
        raise ValueError(f"quantity {stripped!r} is out of range")
    try:
        value = Decimal(number) * Decimal(_QUANTITY_SUFFIXES[suffix or ""])
        if exponent:
            value *= Decimal(10) ** int(exponent)
    except (InvalidOperation, ArithmeticError) as exc:
        raise ValueError(f"not a quantity: {stripped!r}") from exc
    result = int(value.to_integral_value(rounding=ROUND_CEILING))
    if result > MAX_QUANTITY:
        raise ValueError(f"quantity {stripped!r} is out of range")
    return result


def format_quantity(size: int) -> str:
    """``size`` bytes in the largest binary suffix that divides it (``1073741824`` -> ``1Gi``)."""
    if size < 0:
        raise ValueError("a quantity cannot be negative")
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _QUANTITY_SUFFIXES[suffix]
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
