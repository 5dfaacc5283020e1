"""SemVer parsing and ordering as helm's index uses it (Masterminds/semver), plus build metadata.

helm sorts index entries newest first by SemVer precedence and leaves the order of versions that
differ only in build metadata undefined. We keep them as distinct versions and break the tie on
the build metadata, so the order is total and stable across runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_IDENT = r"[0-9A-Za-z-]+"
# Masterminds' lenient form: optional "v", minor and patch may be omitted.
_LENIENT = re.compile(
    rf"^v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+({_IDENT}(?:\.{_IDENT})*))?\Z"
)
_NUM = r"0|[1-9]\d*"
_PRE_IDENT = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_STRICT = re.compile(
    rf"^({_NUM})\.({_NUM})\.({_NUM})(?:-({_PRE_IDENT}(?:\.{_PRE_IDENT})*))?"
    rf"(?:\+({_IDENT}(?:\.{_IDENT})*))?\Z"
)

PartKey = tuple[int, int, str]


@dataclass(frozen=True)
class Version:
    """A parsed chart version; ``original`` is the exact string, which is the identity we index."""

    major: int
    minor: int
    patch: int
    prerelease: str
    build: str
    original: str

    @property
    def precedence(self) -> tuple[int, int, int, int, tuple[PartKey, ...]]:
        """SemVer 2 precedence: build metadata does not count, a release beats its pre-releases."""
        return (
            self.major,
            self.minor,
            self.patch,
            0 if self.prerelease else 1,
            _identifiers_key(self.prerelease),
        )

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)


def _identifiers_key(text: str) -> tuple[PartKey, ...]:
    """Numeric identifiers sort numerically and below alphanumeric ones (SemVer 2 §11)."""
    if not text:
        return ()
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in text.split("."))


@lru_cache(maxsize=65536)
def parse(text: str) -> Version | None:
    """Parse leniently like helm's loader does (``v1.2`` is accepted); ``None`` when invalid."""
    m = _LENIENT.match(text)
    if m is None:
        return None
    major, minor, patch, pre, build = m.groups()
    return Version(int(major), int(minor or 0), int(patch or 0), pre or "", build or "", text)


def is_strict(text: str) -> bool:
    """True for a strict SemVer 2 string; helm lint warns about anything else."""
    return _STRICT.match(text) is not None


def sort_key(text: str) -> tuple[int, tuple[int, int, int, int, tuple[PartKey, ...]],
                                 tuple[PartKey, ...], str]:
    """Key for ascending order; unparsable versions sort below every valid one."""
    v = parse(text)
    if v is None:
        return (0, (0, 0, 0, 0, ()), (), text)
    return (1, v.precedence, _identifiers_key(v.build), text)


def newest_first(versions: list[str]) -> list[str]:
    """Versions ordered as index.yaml lists them: newest first, invalid ones last."""
    valid = sorted((v for v in versions if parse(v) is not None), key=sort_key, reverse=True)
    invalid = [v for v in versions if parse(v) is None]
    return valid + invalid


def above_zero(text: str) -> bool:
    """helm lint requires ``version`` to satisfy ``>0.0.0-0``."""
    v = parse(text)
    return v is not None and v.precedence > (0, 0, 0, 0, ((0, 0, ""),))
