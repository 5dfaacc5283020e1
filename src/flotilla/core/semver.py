"""Strict Semantic Versioning 2.0.0: parse, precedence, build metadata. Pure, no I/O.

Every system's version dialect (helm's Masterminds rules in ``charts.versions``, OLM's blang
rules in ``operators.semver``, Flatcar's versions in ``updates.models``) stands on this core: the
dialects decide what text they accept, this module decides what a version *is* and how two
compare.

Written here rather than taken from PyPI: ``semver`` (python-semver 3) and ``packaging`` were
considered. ``packaging`` implements PEP 440, not SemVer (``1.0.0-rc.1`` normalises to
``1.0.0rc1`` and numeric/alphanumeric pre-release ordering differs). ``semver`` does implement the
spec, but its parser is one regular expression we could not bend to the dialects (Masterminds
coerces ``v1.2``, blang does not; both bound numbers to 64 bits) and it would add a runtime
dependency to every system for about a hundred lines that a table of cases pins down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_LENGTH",
    "UINT64_MAX",
    "InvalidVersionError",
    "Version",
    "build_identifiers",
    "parse",
    "precedence_key",
    "prerelease_identifiers",
]

MAX_LENGTH = 256
"""Longer strings are refused before any work (hostile input; helm's library has the same cap)."""
UINT64_MAX = 2**64 - 1
"""The Go libraries store numbers as uint64; dialects that follow them refuse larger numbers."""

Identifier = int | str
PrereleaseKey = tuple[tuple[int, int, str], ...]
PrecedenceKey = tuple[int, int, int, int, PrereleaseKey]

_ASCII_IDENT = re.compile(r"[0-9A-Za-z-]+\Z")
_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_PRE_IDENT = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_PRERELEASE = re.compile(rf"{_PRE_IDENT}(?:\.{_PRE_IDENT})*\Z")
_CORE = re.compile(
    r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([^+]*))?(?:\+(.*))?\Z", re.DOTALL
)


class InvalidVersionError(ValueError):
    """Text that is not a version in the dialect asked for; the message says why."""


def _shown(text: str) -> str:
    return repr(text[:64] + ("..." if len(text) > 64 else ""))


def prerelease_identifiers(text: str) -> tuple[Identifier, ...]:
    """Dot-separated pre-release identifiers: non-empty ``[0-9A-Za-z-]``, numbers without leading
    zeros (SemVer 2 §9). Numeric identifiers become ints so they compare numerically."""
    if _PRERELEASE.match(text):  # the common, valid case in one pass
        return tuple(int(p) if p.isdigit() else p for p in text.split("."))
    out: list[Identifier] = []
    for part in text.split("."):
        if not _ASCII_IDENT.match(part):
            raise InvalidVersionError(
                f"pre-release identifier {part!r} must be non-empty [0-9A-Za-z-]"
            )
        if part.isdigit():
            if not _NUMBER.match(part):
                raise InvalidVersionError(
                    f"numeric pre-release identifier {part!r} has a leading zero"
                )
            out.append(int(part))
        else:
            out.append(part)
    return tuple(out)


def build_identifiers(text: str) -> tuple[str, ...]:
    """Dot-separated build identifiers: non-empty ``[0-9A-Za-z-]``; leading zeros are allowed."""
    parts = tuple(text.split("."))
    for part in parts:
        if not _ASCII_IDENT.match(part):
            raise InvalidVersionError(f"build identifier {part!r} must be non-empty [0-9A-Za-z-]")
    return parts


def precedence_key(
    major: int, minor: int, patch: int, prerelease: tuple[Identifier, ...]
) -> PrecedenceKey:
    """SemVer 2 §11 as a sort key: numbers numerically, a release above its pre-releases,
    numeric identifiers below alphanumeric ones, a longer identifier list above its prefix."""
    if not prerelease:
        return (major, minor, patch, 1, ())
    pre: PrereleaseKey = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in prerelease)
    return (major, minor, patch, 0, pre)


@dataclass(frozen=True)
class Version:
    """A version as SemVer 2 defines it. Equality, hashing and ordering follow precedence:
    build metadata is kept (and printed) but ignored, so ``1.0.0+a == 1.0.0+b``."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[Identifier, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        return parse(text)

    def key(self) -> PrecedenceKey:
        return precedence_key(self.major, self.minor, self.patch, self.prerelease)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Version) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Version) -> bool:
        return self.key() >= other.key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def parse(text: str) -> Version:
    """Strict SemVer 2: ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``, no ``v``, no leading zeros."""
    if len(text) > MAX_LENGTH:
        raise InvalidVersionError(f"version is longer than {MAX_LENGTH} characters")
    m = _CORE.match(text)
    if m is None:
        raise InvalidVersionError(f"not a semantic version (MAJOR.MINOR.PATCH): {_shown(text)}")
    major, minor, patch, pre, build = m.groups()
    try:
        return Version(
            int(major),
            int(minor),
            int(patch),
            prerelease_identifiers(pre) if pre is not None else (),
            build_identifiers(build) if build is not None else (),
        )
    except InvalidVersionError as exc:
        raise InvalidVersionError(f"not a semantic version: {_shown(text)}: {exc}") from None
