"""Semantic versions and the range syntax OLM's ``skipRange`` uses (blang/semver).

``>=4.1.0 <4.1.2`` is an AND of comparators; ``||`` separates alternatives. Pre-release versions
sort before their release, as semver 2.0 says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Version", "VersionRange"]

_VERSION = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR = re.compile(r"^(>=|<=|!=|==|=|>|<)?\s*(\S+)$")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """``0.9.2``, ``v1.2.3-rc.1`` (build metadata ignored); ValueError otherwise."""
        m = _VERSION.match(text.strip())
        if not m:
            raise ValueError(f"not a semantic version: {text!r}")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), pre)

    def _pre_key(self) -> tuple[tuple[int, int, str], ...]:
        return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, self._pre_key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        pre = f"-{'.'.join(self.pre)}" if self.pre else ""
        return f"{self.major}.{self.minor}.{self.patch}{pre}"


@dataclass(frozen=True)
class VersionRange:
    """A parsed range: a list of alternatives, each a list of (operator, version)."""

    text: str
    alternatives: tuple[tuple[tuple[str, Version], ...], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        alternatives = []
        for alt in text.split("||"):
            # ">= 1.0.0" is written with a space in the wild; glue operators to their version.
            tokens = re.sub(r"(>=|<=|!=|==|=|>|<)\s+", r"\1", alt.strip()).split()
            if not tokens:
                raise ValueError(f"empty alternative in range {text!r}")
            comparators = []
            for tok in tokens:
                m = _COMPARATOR.match(tok)
                if not m:
                    raise ValueError(f"bad comparator {tok!r} in range {text!r}")
                comparators.append((m.group(1) or "=", Version.parse(m.group(2))))
            alternatives.append(tuple(comparators))
        return cls(text, tuple(alternatives))

    def __contains__(self, version: Version) -> bool:
        return any(all(_compare(version, op, bound) for op, bound in alt)
                   for alt in self.alternatives)


def _compare(v: Version, op: str, bound: Version) -> bool:
    if op in ("=", "=="):
        return v == bound
    if op == "!=":
        return v != bound
    if op == ">":
        return v > bound
    if op == ">=":
        return v >= bound
    if op == "<":
        return v < bound
    return v <= bound
