"""Durations and quantities: what users write parses, everything else is a clear ValueError."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla.core.units import (
    MAX_QUANTITY,
    format_duration,
    format_quantity,
    parse_duration,
    parse_quantity,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1h 30m", 5400), ("7d", 604800),
    ("90", 90), (90, 90), (0, 0), ("0s", 0), ("500ms", 0.5), ("1.5h", 5400), ("2M", 120),
    (" 45m ", 2700), (2.5, 2.5), ("1d2h3m4s5ms", 93784.005),
])
def test_durations_users_write(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", [
    "", "s", "-5s", -5, "5x", "5s garbage", "1h-30m", "h1", "5 s s", True, float("nan"),
    "9" * 5000 + "d", "1" * 70, "999999999d", "1e3s", "1,5h",
])
def test_durations_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12))
def test_format_duration_round_trips(millis: int) -> None:
    duration = timedelta(milliseconds=millis)
    assert parse_duration(format_duration(duration)) == duration


def test_format_duration_is_short() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta()) == "0s"
    assert format_duration(timedelta(seconds=0.25)) == "250ms"


@pytest.mark.parametrize(("text", "size"), [
    ("1Gi", 2**30), ("500M", 500 * 10**6), ("1e3", 1000), ("1.5Ki", 1536), ("0.1", 1),
    (".5k", 500), ("100", 100), ("1E3", 1000), ("7Ei", 7 * 2**60),
])
def test_quantities(text: str, size: int) -> None:
    assert parse_quantity(text) == size


@pytest.mark.parametrize("text", [
    "", "Gi", "1GB", "1ki", "1Mb", "-1Gi", "1 Gi", "1e9999999", "1e-9999999", "8Ei", "9" * 100,
    "1.2.3",
])
def test_quantities_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


@given(st.integers(min_value=0, max_value=MAX_QUANTITY))
def test_format_quantity_round_trips(size: int) -> None:
    assert parse_quantity(format_quantity(size)) == size
