"""skipRange in OLM's dialect (blang/semver v4 ParseRange): a table of verdicts, held twice.

The pure tests hold Flotilla's parser to the table. The oracle test asks blang itself (a small Go
program built from the real library, see ``blang_oracle.py``) about the same table and about a
few hundred generated ranges, so no verdict is our guess and we never accept what OLM refuses.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from flotilla.operators.catalog import parse_catalog
from flotilla.operators.semver import (
    InvalidVersionError,
    Version,
    VersionRange,
    parse_version,
    range_warnings,
)
from tests.operators.blang_oracle import OracleBuildError, ask, ensure_oracle

PROBES = [
    "0.9.0",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.5",
    "1.1.0",
    "1.2.0",
    "1.2.9",
    "1.3.0",
    "2.0.0",
    "2.1.0",
    "2.1.5",
    "2.2.0",
    "3.0.0",
]
INVALID = None

# range -> the probes it matches, or INVALID when blang refuses to parse it
CASES: dict[str, set[str] | None] = {
    ">=1.2.0 <2.1.0": {"1.2.0", "1.2.9", "1.3.0", "2.0.0"},
    ">= 1.2.0 < 2.1.0": {"1.2.0", "1.2.9", "1.3.0", "2.0.0"},  # space after an operator glues
    "<1.0.0 || >=3.0.0": {"0.9.0", "1.0.0-rc.1", "3.0.0"},
    "1.0.0": {"1.0.0"},
    "=1.0.0": {"1.0.0"},
    "==1.0.0": {"1.0.0"},
    "!=1.0.0 <1.1.0": {"0.9.0", "1.0.0-rc.1", "1.0.5"},
    "!1.0.0 <1.1.0": {"0.9.0", "1.0.0-rc.1", "1.0.5"},
    ">1.0.0-rc.1 <=1.0.5": {"1.0.0", "1.0.5"},
    "2.1.x": {"2.1.0", "2.1.5"},  # patch wildcard
    "2.x": {"2.0.0", "2.1.0", "2.1.5", "2.2.0"},  # minor wildcard
    "1.x.x": {"1.0.0", "1.0.5"},  # blang reads this as a patch wildcard: >=1.0.0 <1.1.0
    ">=1.2.x": {"1.2.0", "1.2.9", "1.3.0", "2.0.0", "2.1.0", "2.1.5", "2.2.0", "3.0.0"},
    ">1.2.x <2.x": {"1.3.0"},
    "<=2.1.x >1.x": {"2.0.0", "2.1.0", "2.1.5"},
    "<2.x": {"0.9.0", "1.0.0-rc.1", "1.0.0", "1.0.5", "1.1.0", "1.2.0", "1.2.9", "1.3.0"},
    "!=1.x": set(),  # expands to "<1.0.0 >=2.0.0": nothing
    "~1.x": {"1.0.0"},  # unknown operator before a wildcard is dropped: "1.0.0"
    "1.0.0 - 2.0.0": set(),  # no hyphen ranges: "-" is dropped, leaving =1.0.0 AND =2.0.0
    "v1.0.0": INVALID,
    ">=v1.0.0": INVALID,
    "~1.2.0": INVALID,
    "^1.2.0": INVALID,
    "*": INVALID,
    "x": INVALID,
    "1.2": INVALID,
    ">=1.2": INVALID,
    "1.2.x.x": INVALID,
    "1.0.0-x": INVALID,  # contains an x, so a wildcard with nothing to widen
    ">=1.0.0-x": {
        "1.0.0",
        "1.0.5",
        "1.1.0",
        "1.2.0",
        "1.2.9",
        "1.3.0",
        "2.0.0",
        "2.1.0",
        "2.1.5",
        "2.2.0",
        "3.0.0",
    },
    "=>1.0.0": INVALID,
    ">=1.0.0 ||": INVALID,
    "|| >=1.0.0": INVALID,
    ">=1.0.0||<0.5.0": INVALID,  # "||" must stand alone
    "": INVALID,
    "  ": INVALID,
    ">=01.0.0": INVALID,
    ">=1.0.0-01": INVALID,
    ">=1.0.0\t<2.0.0": INVALID,
    ">=1.0.0 <2.0.0 \u00e9": INVALID,
    ">=18446744073709551616.0.0": INVALID,
}


@pytest.mark.parametrize("text", sorted(CASES))
def test_flotilla_follows_the_blang_table(text: str) -> None:
    expected = CASES[text]
    if expected is INVALID:
        with pytest.raises(InvalidVersionError):
            VersionRange.parse(text)
        return
    rng = VersionRange.parse(text)
    assert {p for p in PROBES if parse_version(p) in rng} == expected


def test_bundle_versions_are_strict() -> None:
    assert parse_version("1.2.3-rc.1+b.01") == Version(1, 2, 3, ("rc", 1))
    for bad in ("v1.2.3", "1.2", "01.2.3", "1.2.3-01", "18446744073709551616.0.0", "1.2.3\n"):
        with pytest.raises(InvalidVersionError, match="not a semantic version"):
            parse_version(bad)


def test_warnings_point_at_ranges_that_mean_nothing() -> None:
    assert any("hyphen" in w for w in range_warnings("1.0.0 - 2.0.0"))
    assert any("AND" in w for w in range_warnings("!=1.x"))
    assert range_warnings(">=1.0.0 <2.0.0") == []


def test_one_bad_entry_does_not_spoil_the_catalog(tmp_path: Path) -> None:
    docs: list[Any] = [
        {"schema": "olm.package", "name": "p", "defaultChannel": "stable"},
        {
            "schema": "olm.channel",
            "package": "p",
            "name": "stable",
            "entries": [
                {"name": "p.v1.0.0"},
                {"name": "p.v2.0.0", "replaces": "p.v1.0.0", "skipRange": "~1.2.0"},
            ],
        },
        {"schema": "olm.bundle", "name": "p.v1.0.0", "package": "p", "image": "b1"},
        {"schema": "olm.bundle", "name": "p.v2.0.0", "package": "p", "image": "b2"},
        {
            "schema": "olm.bundle",
            "name": "p.vbad",
            "package": "p",
            "image": "b3",
            "properties": [{"type": "olm.package", "value": {"package": "p", "version": "v3"}}],
        },
    ]
    cat = parse_catalog(docs, tmp_path)
    pkg = cat.package("p")
    assert sorted(pkg.bundles) == ["p.v1.0.0", "p.v2.0.0"]
    assert pkg.channel(None).entry("p.v2.0.0").skip_range is None  # type: ignore[union-attr]
    assert len(cat.problems) == 2
    assert "p.v2.0.0" in cat.problems[0] and "'~1.2.0'" in cat.problems[0]
    assert cat.problems[1].startswith(f"{tmp_path}: olm.bundle p.vbad left out")


@pytest.fixture(scope="module")
def oracle() -> Path:
    try:
        return ensure_oracle()
    except OracleBuildError as exc:
        pytest.fail(str(exc))


def _ours(text: str) -> tuple[bool, tuple[bool, ...]]:
    try:
        rng = VersionRange.parse(text)
    except ValueError:
        return False, ()
    return True, tuple(parse_version(p) in rng for p in PROBES)


def test_the_table_is_what_blang_does(oracle: Path) -> None:
    texts = sorted(CASES)
    wrong = []
    for text, verdict in zip(texts, ask(oracle, [(t, PROBES) for t in texts]), strict=True):
        expected = CASES[text]
        matched = {p for p, m in zip(PROBES, verdict.matches, strict=False) if m}
        if (expected is INVALID) != (not verdict.valid) or (verdict.valid and matched != expected):
            wrong.append(f"{text!r}: table {expected}, blang valid={verdict.valid} {matched}")
    assert not wrong, "\n".join(wrong)


def test_generated_ranges_agree_with_blang(oracle: Path) -> None:
    ops = ["", "=", ">", ">=", "<", "<=", "!=", "!", "~", "> ", "=>"]
    versions = [
        "1.2.3",
        "1.2.x",
        "1.x",
        "1.x.x",
        "2.1.0-rc.1",
        "v1.0.0",
        "1.2",
        "01.0.0",
        "x.1.2",
        "1.-1.x",
        "1.+1.x",
    ]
    singles = [op + v for op, v in itertools.product(ops, versions)]
    pairs = [f"{a} {b}" for a, b in itertools.product(singles[::3], singles[1::4])]
    ors = [f"{a} || {b}" for a, b in itertools.product(singles[::5], singles[2::7])]
    texts = (
        singles
        + pairs
        + ors
        + ["1.0.0 - 2.0.0", "- 1.0.0", "1.0.0 -", "* || 1.0.0", ">=1.0.0 || || <0.5.0"]
    )
    disagree = []
    for text, verdict in zip(texts, ask(oracle, [(t, PROBES) for t in texts]), strict=True):
        valid, matches = _ours(text)
        # A range blang parses but then crashes on when it is used counts as refused.
        valid_blang = verdict.valid and not verdict.panics
        if valid != valid_blang or (valid and matches != verdict.matches):
            disagree.append(f"{text!r}: ours valid={valid} {matches}, blang {verdict}")
    assert len(texts) > 300
    assert not disagree, "\n".join(disagree[:20])
