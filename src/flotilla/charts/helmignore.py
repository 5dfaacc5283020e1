"""``.helmignore`` rules exactly as helm's pkg/ignore applies them.

- Each line is trimmed; blank lines and lines starting with ``#`` are skipped (``\\#x`` is a
  pattern: the backslash escapes ``#``, as Go's ``filepath.Match`` reads it).
- ``**`` anywhere, or a malformed pattern, makes the whole file invalid: helm refuses to package.
- ``!`` negates, ``/`` at the end means directories only, a leading ``/`` or an inner ``/``
  matches the whole relative path, otherwise only the base name.
- Rules are tried in order and the first decisive one wins: a plain rule ignores what it
  matches; a negated rule ignores everything it does *not* match (and, with a trailing ``/``,
  every file), and lets a match go on to the next rule. This is not gitignore's "last match wins".
- helm appends the rule ``templates/.?*`` (hidden files in templates/ are never packaged).

Patterns follow Go's ``filepath.Match``: ``*`` and ``?`` never match ``/``, ``[...]`` classes
(``^`` negates, ``\\`` escapes) match any single character, ``\\`` escapes the next character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flotilla.charts.errors import InvalidChartError

DEFAULT_RULES = ("templates/.?*",)


class PatternError(ValueError):
    """Go's ``filepath.ErrBadPattern``."""


@dataclass(frozen=True)
class Rule:
    """One line of .helmignore."""

    raw: str
    negate: bool
    dir_only: bool
    whole_path: bool
    regex: re.Pattern[str]


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    """One character of a class (Go's ``getEsc``): ``-`` and ``]`` must be escaped here."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise PatternError
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise PatternError
    if i + 1 >= len(pattern):
        raise PatternError  # the class is never closed
    return pattern[i], i + 1


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Regex for the class starting after ``[`` at ``i``; returns it and the index after ``]``."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[tuple[str, str]] = []
    count = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and count > 0:
            i += 1
            break
        lo, i = _class_char(pattern, i)
        hi = lo
        if pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1)
        count += 1
        if lo <= hi:  # Go accepts a reversed range, which matches nothing
            ranges.append((lo, hi))
    body = "".join(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else "") for lo, hi in ranges)
    if not body:
        return ("[\\s\\S]" if negated else "(?!)"), i
    return f"[{'^' if negated else ''}{body}]", i


def translate(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match(pattern, name)`` as a compiled regex; PatternError when malformed."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise PatternError
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif c == "[":
            regex, i = _char_class(pattern, i + 1)
            out.append(regex)
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _parse_rule(line: str) -> Rule | None:
    rule = line.strip()
    if not rule or rule.startswith("#"):
        return None
    if "**" in rule:
        raise PatternError("double-star (**) syntax is not supported")
    translate(rule)  # helm checks the raw rule, '!' and '/' included
    raw = rule
    negate = rule.startswith("!")
    if negate:
        rule = rule[1:]
    dir_only = rule.endswith("/")
    if dir_only:
        rule = rule[:-1]
    whole_path = "/" in rule
    rule = rule.removeprefix("/")
    return Rule(raw, negate, dir_only, whole_path, translate(rule))


def parse_rules(text: str, source: str = ".helmignore") -> list[Rule]:
    """Parse .helmignore text and append helm's default rule; InvalidChartError as helm fails."""
    rules = []
    lines = text.removeprefix("\ufeff").split("\n")
    for number, line in enumerate((*lines, *DEFAULT_RULES), start=1):
        try:
            rule = _parse_rule(line)
        except PatternError as e:
            why = str(e) or "syntax error in pattern"
            raise InvalidChartError(f"{source}: line {number}: {line.strip()!r}: {why}") from e
        if rule is not None:
            rules.append(rule)
    return rules


def ignored(rules: list[Rule], path: str, is_dir: bool) -> bool:
    """helm's ``Rules.Ignore`` for ``path`` (relative, '/'-separated)."""
    if path in ("", ".", "./"):
        return False
    base = path.rsplit("/", 1)[-1]
    for rule in rules:
        matches = rule.regex.match(path if rule.whole_path else base) is not None
        if rule.negate:
            if (rule.dir_only and not is_dir) or not matches:
                return True
            continue
        if rule.dir_only and not is_dir:
            continue
        if matches:
            return True
    return False
