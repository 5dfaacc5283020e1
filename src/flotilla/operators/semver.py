"""Bundle versions and ``skipRange`` in OLM's dialect: blang/semver v4, as OLM and opm use it.

Versions: blang's ``Parse`` is strict SemVer 2 (no ``v``, all three numbers, no leading zeros)
with numbers bounded to 64 bits; a catalog's ``olm.package`` version must pass it, so ours must.

Ranges: blang's ``ParseRange``, reproduced step by step because OLM accepts exactly what it
accepts, quirks included:

- comparators ``<``, ``<=``, ``>``, ``>=``, ``=``, ``==``, ``!=``, ``!`` and a bare version
  (equality); a space right after ``<``, ``>`` or ``=`` is glued to the version (``>= 1.0.0``);
- space-separated comparators are ANDed, ``||`` (its own space-separated token) ORs them;
- a token containing ``x`` is a wildcard: ``1.2.x`` is ``>=1.2.0 <1.3.0``, ``1.x`` is
  ``>=1.0.0 <2.0.0``, ``>1.2.x`` is ``>=1.3.0``, ``<=1.x`` is ``<2.0.0``. Note blang reads
  ``1.x.x`` as a *patch* wildcard (``>=1.0.0 <1.1.0``) and ``!=1.x`` as an AND that nothing
  satisfies; we do the same rather than silently differ from the cluster;
- no tilde, caret or hyphen ranges, no ``*``: ``~1.2.0`` and ``*`` are errors. A lone one-character
  token is dropped by blang's tokenizer, so ``1.0.0 - 2.0.0`` parses as ``=1.0.0 AND =2.0.0``
  (matches nothing); we accept it likewise but :func:`range_warnings` points it out.

Stricter than blang in two ways only: an empty alternative (``>=1.0.0 || || <0.5.0``), which
blang parses and then crashes on when it is used, is refused; and against hostile input a
version over 256 characters or a range over 1024 is refused (no real catalog comes near either).
Precedence comes from the strict SemVer 2 core (``flotilla.core.semver``). The verdicts are a
table in ``tests/operators/test_semver_blang.py``, checked there against blang itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flotilla.core import semver
from flotilla.core.semver import InvalidVersionError, Version

__all__ = ["InvalidVersionError", "Version", "VersionRange", "parse_version", "range_warnings"]

_INT64_MAX = 2**63 - 1
_OPERATORS = {
    "": "=",
    "=": "=",
    "==": "=",
    "!": "!=",
    "!=": "!=",
    ">": ">",
    ">=": ">=",
    "<": "<",
    "<=": "<=",
}
_GO_ATOI = re.compile(r"[+-]?[0-9]+\Z")


def parse_version(text: str) -> Version:
    """blang ``Parse``: strict SemVer 2 with every number within 64 bits."""
    v = semver.parse(text)
    numbers = [v.major, v.minor, v.patch] + [p for p in v.prerelease if isinstance(p, int)]
    if any(n > semver.UINT64_MAX for n in numbers):
        raise InvalidVersionError(
            f"not a semantic version: {text[:64]!r}: a number exceeds 64 bits"
        )
    return v


def _tokens(text: str) -> list[str]:
    """blang's splitAndTrim: split on spaces, except right after ``<``, ``>`` or ``=``; a token of
    one character is dropped (so ``-`` and ``*`` standing alone vanish)."""
    out: list[str] = []
    last, last_char = 0, ""
    for i, ch in enumerate(text):
        if ch == " " and last_char not in ("<", ">", "="):
            if last < i - 1:
                out.append(text[last:i])
            last = i + 1
        elif ch != " ":
            last_char = ch
    if last < len(text) - 1:
        out.append(text[last:])
    return [t.replace(" ", "") for t in out]


def _split_operator(token: str) -> tuple[str, str]:
    """The operator is everything before the first digit."""
    m = re.search(r"[0-9]", token)
    if m is None:
        raise InvalidVersionError(f"no version in {token!r}")
    return token[: m.start()].strip(), token[m.start() :]


def _go_atoi_increment(text: str) -> str:
    """``strconv.Itoa(Atoi(text) + 1)`` with Go's int64 wrap-around; "" when Atoi fails."""
    if not _GO_ATOI.match(text):
        return ""
    n = int(text)
    if not -_INT64_MAX - 1 <= n <= _INT64_MAX:
        return ""
    n += 1
    return str(n - 2**64 if n > _INT64_MAX else n)


def _bump(version: str, index: int) -> str:
    parts = version.split(".")
    if len(parts) <= index:
        return ""
    bumped = _go_atoi_increment(parts[index])
    if not bumped:
        return ""
    parts[index] = bumped
    return ".".join(parts)


def _expand_wildcard(token: str) -> list[str]:
    """blang's expandWildcardVersion for one token that contains an ``x``."""
    op, ver = _split_operator(token)
    parts = ver.split(".")
    kind = len(parts) if parts[-1] == "x" and len(parts) in (2, 3) else 0  # 2 minor, 3 patch
    flat = ver.replace(".x.x", ".x", 1).replace(".x", ".0", 1)
    if len(flat.split(".")) == 2:
        flat += ".0"
    prefix: list[str] = []
    increment = False
    if op == ">":
        result, increment = ">=", True
    elif op == ">=":
        result = ">="
    elif op == "<":
        result = "<"
    elif op == "<=":
        result, increment = "<", True
    elif op in ("", "=", "=="):
        prefix, result, increment = [">=" + flat], "<", True
    elif op in ("!=", "!"):
        prefix, result, increment = ["<" + flat], ">=", True
    else:
        result = ""  # blang drops an operator it does not know here (``~1.x`` is ``1.0.0``)
    if increment:
        bound = _bump(flat, 1) if kind == 3 else _bump(flat, 0) if kind == 2 else ""
    else:
        bound = flat
    return [*prefix, result + bound]


@dataclass(frozen=True)
class VersionRange:
    """A parsed range: alternatives (OR) of comparators (AND), each an (operator, version)."""

    text: str
    alternatives: tuple[tuple[tuple[str, Version], ...], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """blang ``ParseRange``; :class:`InvalidVersionError` (a ValueError) says what is wrong."""
        if len(text) > 4 * semver.MAX_LENGTH:
            raise InvalidVersionError(f"range is longer than {4 * semver.MAX_LENGTH} characters")
        if not text.isascii():
            raise InvalidVersionError(f"range {text[:64]!r} has non-ASCII characters")
        groups: list[list[str]] = [[]]
        tokens = _tokens(text)
        for i, tok in enumerate(tokens):
            if tok == "||":
                if i == 0:
                    raise InvalidVersionError(f"range {text!r} starts with '||'")
                groups.append([])
            else:
                groups[-1].append(tok)
        if not groups[-1]:
            raise InvalidVersionError(f"range {text[:64]!r} is empty or ends with '||'")
        if any(not g for g in groups):
            # blang builds this but then crashes when it evaluates it: refuse it up front.
            raise InvalidVersionError(f"range {text[:64]!r} has an empty alternative between '||'")
        alternatives = []
        for group in groups:
            expanded: list[str] = []
            for tok in group:
                expanded.extend(_expand_wildcard(tok) if "x" in tok else [tok])
            comparators = []
            for tok in expanded:
                op, ver = _split_operator(tok)
                if op not in _OPERATORS:
                    raise InvalidVersionError(f"unknown comparator {op!r} in range {text[:64]!r}")
                try:
                    comparators.append((_OPERATORS[op], parse_version(ver)))
                except InvalidVersionError as exc:
                    raise InvalidVersionError(f"range {text[:64]!r}: {exc}") from None
            alternatives.append(tuple(comparators))
        return cls(text, tuple(alternatives))

    def __contains__(self, version: Version) -> bool:
        return any(
            all(_compare(version, op, bound) for op, bound in alt) for alt in self.alternatives
        )


def range_warnings(text: str) -> list[str]:
    """Things OLM accepts in a skipRange but that surely do not mean what the author meant."""
    notes = []
    if re.search(r"(^|\s)-(\s|$)", text):
        notes.append("blang/semver has no hyphen ranges: 'A - B' means '=A AND =B' (nothing)")
    if re.search(r"(^|\s)\*(\s|$)", text):
        notes.append("a lone '*' is dropped by blang/semver's tokenizer")
    if re.search(r"(^|\s)(!=?)\s*[0-9]+(\.[0-9]+)?\.x", text):
        notes.append("blang/semver expands '!=A.x' to an AND that no version satisfies")
    return notes


def _compare(v: Version, op: str, bound: Version) -> bool:
    if op == "=":
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
