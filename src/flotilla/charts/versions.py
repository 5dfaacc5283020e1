"""Chart versions in helm's dialect: Masterminds/semver v3 ``NewVersion`` as helm 3 calls it.

helm parses ``Chart.yaml``'s ``version`` with ``semver.NewVersion`` (coercing mode, the library's
default): a leading ``v`` is accepted, minor and patch may be left out (``1.2`` is ``1.2.0``),
numbers may carry leading zeros (``01.2.3`` is ``1.2.3``) and must fit 64 bits, but a numeric
pre-release identifier with a leading zero (``1.0.0-01``) is refused, by ``helm package`` and
``helm lint`` alike, and so here. Strings over 256 bytes are refused too. ``helm lint`` further
requires ``>0.0.0-0``. Everything about what a version *is* and how two compare comes from the
strict SemVer 2 core (``flotilla.core.semver``); the cases are checked against the real helm in
``tests/charts/test_versions_helm.py``.

helm's constraint ranges (``>=1.2 <2``, ``~1.2``, ``^1.2``, ``1.2.x``, ``||``) are not
implemented: Flotilla never resolves chart dependencies by range (it vendors ``file://``
dependencies and requires the others in ``charts/``), so it has nothing to evaluate them for.

helm sorts index entries newest first by SemVer precedence and leaves the order of versions that
differ only in build metadata undefined. We keep them as distinct versions and break the tie on
the build metadata, so the order is total and stable across runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from flotilla.core import semver

_IDENT = r"[0-9A-Za-z-]+"
# Masterminds' loose form, which its coercing NewVersion matches: optional "v", minor and patch
# may be omitted, leading zeros allowed in the numbers. ASCII digits only, like Go's [0-9].
_LOOSE = re.compile(
    rf"v?([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?"
    rf"(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+({_IDENT}(?:\.{_IDENT})*))?\Z"
)

PartKey = tuple[int, int, str]


@dataclass(frozen=True)
class Version:
    """A parsed chart version; ``original`` is the exact string, which is the identity we index.

    ``precedence`` is SemVer 2 precedence (build metadata does not count, a release beats its
    pre-releases), computed once at parse time because sorting an index asks for it often.
    """

    major: int
    minor: int
    patch: int
    prerelease: str
    build: str
    original: str
    precedence: semver.PrecedenceKey = field(compare=False, repr=False)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)


def _identifiers_key(text: str) -> tuple[PartKey, ...]:
    """Build metadata as a tie-break key: numeric identifiers numerically, below alphanumeric."""
    if not text:
        return ()
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in text.split("."))


@lru_cache(maxsize=65536)
def parse(text: str) -> Version | None:
    """Parse as helm does (``v1.2`` is accepted, ``1.0.0-01`` is not); ``None`` when invalid."""
    if len(text) > semver.MAX_LENGTH:  # non-ASCII never matches, so characters are bytes
        return None
    m = _LOOSE.match(text)
    if m is None:
        return None
    major, minor, patch, pre, build = m.groups()
    numbers = (int(major), int(minor or 0), int(patch or 0))
    if max(numbers) > semver.UINT64_MAX:
        return None
    try:
        identifiers = semver.prerelease_identifiers(pre) if pre else ()
    except semver.InvalidVersionError:
        return None
    return Version(
        *numbers, pre or "", build or "", text, semver.precedence_key(*numbers, identifiers)
    )


def is_strict(text: str) -> bool:
    """True for a strict SemVer 2 string; Flotilla's lint warns about anything else."""
    try:
        semver.parse(text)
    except semver.InvalidVersionError:
        return False
    return True


def sort_key(text: str) -> tuple[int, semver.PrecedenceKey, tuple[PartKey, ...], str]:
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


_ZERO_PRERELEASE = semver.precedence_key(0, 0, 0, (0,))


def above_zero(text: str) -> bool:
    """helm lint requires ``version`` to satisfy ``>0.0.0-0``."""
    v = parse(text)
    return v is not None and v.precedence > _ZERO_PRERELEASE
