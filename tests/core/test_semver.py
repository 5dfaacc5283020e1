"""The strict SemVer 2.0.0 core every version dialect stands on."""

from __future__ import annotations

import itertools

import pytest

from flotilla.core.semver import InvalidVersionError, Version, parse


def test_precedence_follows_the_spec_example() -> None:
    # SemVer 2.0.0 §11's own chain, plus numbers that compare numerically, not as text.
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "1.10.0",
        "2.0.0",
    ]
    parsed = [parse(v) for v in chain]
    assert parsed == sorted(parsed)
    assert all(a < b for a, b in itertools.pairwise(parsed))
    assert sorted(reversed(parsed)) == parsed


def test_build_metadata_is_kept_but_ignored_for_precedence() -> None:
    a, b = parse("1.0.0+build.1"), parse("1.0.0+build.2")
    assert a == b and hash(a) == hash(b) and not a < b
    assert a.build == ("build", "1")
    assert str(parse("1.2.3-rc.1+exp.sha.5114f85")) == "1.2.3-rc.1+exp.sha.5114f85"
    assert parse("1.0.0-rc.1+b") < parse("1.0.0")


def test_identifiers() -> None:
    v = parse("1.2.3-0a.1.x-y")
    assert v == Version(1, 2, 3, ("0a", 1, "x-y"))
    assert v.is_prerelease and not parse("1.2.3").is_prerelease
    assert parse("1.0.0+001").build == ("001",)  # build identifiers may have leading zeros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.2",
        "v1.2.3",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "1.2.3-01",
        "1.2.3-rc.01",
        "1.2.3-",
        "1.2.3+",
        "1.2.3-a..b",
        "1.2.3+a..b",
        "1.2.3-a_b",
        "1.2.3+a+b",
        "1.2.3.4",
        " 1.2.3",
        "1.2.3 ",
        "1.2.3\n",
        "1.2.3-\u00e9",
        "\u0661.2.3",
        "1.2.3-" + "a" * 300,
    ],
)
def test_refuses_what_is_not_strict_semver(text: str) -> None:
    with pytest.raises(InvalidVersionError, match="version"):
        parse(text)
