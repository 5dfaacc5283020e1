"""Flatcar versions: strict SemVer 2 from the core, numbers of at most ten digits."""

from __future__ import annotations

import pytest

from flotilla.updates.models import InvalidVersionError, Version

ACCEPTED = ["3815.2.0", "3815.2.0+2023-01-01", "0.0.0", "3975.0.0-alpha.1", "9999999999.0.0"]
REFUSED = [
    "",
    "v3815.2.0",
    "3815.2",
    "03815.2.0",
    "3815.2.0-01",
    "3815.2.0\n",
    " 3815.2.0",
    "10000000000.0.0",
    "3815.2.0+",
    "3815.2.0.1",
    "latest",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_accepts_flatcar_versions(text: str) -> None:
    assert str(Version.parse(text)) == text


@pytest.mark.parametrize("text", REFUSED)
def test_refuses_everything_else(text: str) -> None:
    with pytest.raises(InvalidVersionError, match="not a semantic version"):
        Version.parse(text)


def test_order_is_semver_precedence() -> None:
    chain = ["0.0.0", "3815.2.0-rc.1", "3815.2.0", "3815.2.1", "3815.10.0", "3975.0.0"]
    parsed = [Version.parse(v) for v in chain]
    assert sorted(reversed(parsed)) == parsed
    assert Version.parse("3815.2.0+a") == Version.parse("3815.2.0+b")
