"""``.helmignore`` rules, as helm's pkg/ignore applies them (no ``**``; ``!`` negates)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

# helm always adds this rule: hidden files in templates/ are never packaged.
DEFAULT_RULES = ("templates/.?*",)


@dataclass(frozen=True)
class Rule:
    """One line of .helmignore."""

    pattern: str
    negate: bool
    dir_only: bool
    has_path: bool


def parse_rules(text: str) -> list[Rule]:
    """Parse .helmignore text plus helm's default rule."""
    rules = []
    for line in (*DEFAULT_RULES, *text.splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.strip("/") if dir_only else line.lstrip("/")
        if not line or "**" in line:
            continue
        rules.append(Rule(line, negate, dir_only, "/" in line))
    return rules


def ignored(rules: list[Rule], path: str, is_dir: bool) -> bool:
    """True when ``path`` (relative, '/'-separated) is excluded; the last matching rule wins."""
    result = False
    base = path.rsplit("/", 1)[-1]
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        target = path if rule.has_path else base
        if fnmatch.fnmatchcase(target, rule.pattern):
            result = not rule.negate
    return result
