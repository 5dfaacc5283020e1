"""A fast reader for the block-YAML subset that helm and Flotilla write in index.yaml.

PyYAML needs about 2 s for a 5,000-entry index, which every publish and ``--merge`` pays. Index
files written by ``helm repo index``, chart-releaser and :mod:`flotilla.charts.yamlemit` use a
small subset: block mappings and sequences, one-line plain or quoted scalars, ``|`` literal
blocks (helm writes multi-line annotations so), ``[]``, ``{}`` and one-line lists of plain
scalars (``keywords: [a, b]`` in Chart.yaml).
This reader handles that subset and raises :class:`UnsupportedYamlError` on anything else
(comments, anchors, folded scalars, multi-line flow scalars, flow collections, tabs), so the
caller can fall back to PyYAML. Timestamps stay strings; other plain scalars resolve as PyYAML's
YAML 1.1 resolver does.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import yaml
import yaml.resolver

from flotilla.core import yamlload

_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_SPECIAL_START = tuple("&*!|>%@`#{}[],")
_KEY = re.compile(r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^"'# ][^#]*?) *:(?: +|$)""")
_OTHER_BREAKS = re.compile("[\t\x85\u2028\u2029\ufeff]|\r(?!\n)")


MAX_DEPTH = 64


class Plain(str):
    """A plain (unquoted) scalar kept as its source text, for Chart.yaml's typing rules."""

    __slots__ = ()


class UnsupportedYamlError(Exception):
    """The text uses YAML outside the fast subset; parse it with PyYAML instead."""


@lru_cache(maxsize=1 << 16)
def plain_tag(text: str) -> str:
    """The tag PyYAML's YAML 1.1 resolver gives an unquoted scalar."""
    tag: str = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
        yaml.ScalarNode, text, (True, False))
    return tag


def _typed_plain(text: str, keep_plain: bool) -> Any:
    tag = plain_tag(text)
    if tag == "tag:yaml.org,2002:null":
        return None
    if keep_plain:
        if tag == "tag:yaml.org,2002:bool":
            return text.lower() in ("true", "yes", "on", "y")
        return Plain(text)
    if tag == _STR or tag == "tag:yaml.org,2002:timestamp":
        return text
    try:
        return yamlload.load(text)  # bool, int, float: rare in an index
    except yaml.YAMLError as e:
        raise UnsupportedYamlError from e


def _scalar(text: str, keep_plain: bool = False) -> Any:
    if not text:
        return None
    first = text[0]
    if first == '"':
        if len(text) < 2 or not text.endswith('"'):
            raise UnsupportedYamlError
        inner = text[1:-1]
        if "\\" in inner:
            try:
                value = yamlload.load(text)
            except yaml.YAMLError as e:
                raise UnsupportedYamlError from e
            if not isinstance(value, str):
                raise UnsupportedYamlError
            return value
        if '"' in inner:
            raise UnsupportedYamlError
        return inner
    if first == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise UnsupportedYamlError
        inner = text[1:-1]
        if "'" in inner.replace("''", ""):
            raise UnsupportedYamlError
        return inner.replace("''", "'")
    if text == "[]":
        return []
    if first == "[" and text.endswith("]"):
        inner = text[1:-1]
        if any(c in inner for c in "[]{}\"'#"):
            raise UnsupportedYamlError
        items = [item.strip(" ") for item in inner.split(",")]
        if not all(items):
            raise UnsupportedYamlError
        return [_scalar(item, keep_plain) for item in items]
    if text == "{}":
        return {}
    if text.startswith(_SPECIAL_START) or " #" in text or text.startswith(("- ", "? ")):
        raise UnsupportedYamlError
    if text in ("-", "?") or ": " in text or text.endswith(":"):
        raise UnsupportedYamlError
    return _typed_plain(text, keep_plain)


class _Parser:
    def __init__(self, text: str, keep_plain: bool) -> None:
        self.keep_plain = keep_plain
        self.depth = 0
        if _OTHER_BREAKS.search(text):
            raise UnsupportedYamlError
        self.raw = text.split("\n")
        if self.raw and self.raw[-1] == "":
            self.raw.pop()  # the final newline ends the last line; it starts none
        self.pos = 0

    def peek(self) -> tuple[int, str] | None:
        """The next structural line as (indent, body), skipping blank lines."""
        while self.pos < len(self.raw):
            line = self.raw[self.pos].rstrip(" \r")
            body = line.lstrip(" ")
            if not body:
                self.pos += 1
                continue
            if "\t" in line[: len(line) - len(body) + 1] or body.startswith(
                    ("#", "---", "...", "%")):
                raise UnsupportedYamlError
            return len(line) - len(body), body
        return None

    def replace(self, indent: int, body: str) -> None:
        self.raw[self.pos] = " " * indent + body

    def block(self, indent: int) -> Any:
        line = self.peek()
        if line is None or line[0] != indent:
            raise UnsupportedYamlError
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise UnsupportedYamlError
        try:
            if line[1] == "-" or line[1].startswith("- "):
                return self.sequence(indent)
            return self.mapping(indent)
        finally:
            self.depth -= 1

    def _nested(self, parent: int, allow_indentless: bool) -> Any:
        """The value of ``key:`` or ``-`` with nothing after it on the line."""
        line = self.peek()
        if line is None:
            return None
        level, body = line
        if level > parent:
            return self.block(level)
        if allow_indentless and level == parent and (body == "-" or body.startswith("- ")):
            return self.sequence(parent)
        return None

    def literal(self, header: str, parent: int) -> str:
        """A ``|`` block scalar (helm writes multi-line annotations so); ``>`` is declined."""
        chomp = header[1:]
        if chomp not in ("", "-", "+"):
            raise UnsupportedYamlError
        lines: list[str] = []
        content_indent: int | None = None
        while self.pos < len(self.raw):
            line = self.raw[self.pos].rstrip("\r")
            body = line.lstrip(" ")
            indent = len(line) - len(body)
            if body:
                if indent <= parent:
                    break
                if content_indent is None:
                    content_indent = indent
                if indent < content_indent:
                    raise UnsupportedYamlError
                if "\t" in line[:content_indent]:
                    raise UnsupportedYamlError
            lines.append(line[content_indent:] if content_indent is not None else "")
            self.pos += 1
        if content_indent is None:
            raise UnsupportedYamlError
        text = "\n".join(lines)
        if chomp == "+":
            return text + "\n"
        text = text.rstrip("\n")
        return text if chomp == "-" else text + "\n"

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while (line := self.peek()) is not None:
            level, body = line
            if level < indent:
                break
            if level > indent:
                raise UnsupportedYamlError
            if body.startswith("- ") or body == "-":
                break
            match = _KEY.match(body)
            if match is None:
                raise UnsupportedYamlError
            key = _scalar(match.group(1))
            if isinstance(key, Plain):
                key = str(key)
            if not isinstance(key, str) or key in result:
                raise UnsupportedYamlError
            rest = body[match.end():]
            self.pos += 1
            if rest.startswith("|"):
                result[key] = self.literal(rest, indent)
            else:
                result[key] = (_scalar(rest, self.keep_plain) if rest
                               else self._nested(indent, True))
        return result

    def sequence(self, indent: int) -> list[Any]:
        result: list[Any] = []
        while (line := self.peek()) is not None:
            level, body = line
            if level != indent or not (body == "-" or body.startswith("- ")):
                if level > indent:
                    raise UnsupportedYamlError
                break
            rest = body[2:].lstrip(" ")
            item_indent = indent + len(body) - len(rest)
            if not rest:
                self.pos += 1
                result.append(self._nested(indent, False))
            elif _KEY.match(rest):
                self.replace(item_indent, rest)
                result.append(self.mapping(item_indent))
            elif rest.startswith("|"):
                self.pos += 1
                result.append(self.literal(rest, indent))
            else:
                self.pos += 1
                result.append(_scalar(rest, self.keep_plain))
        return result


def load(text: str, keep_plain: bool = False) -> Any:
    """Parse ``text`` if it is in the subset; raise UnsupportedYamlError otherwise.

    With ``keep_plain``, unquoted scalars other than null and booleans come back as
    :class:`Plain` strings holding their source text (``1.10`` stays ``"1.10"``).
    """
    parser = _Parser(text, keep_plain)
    first = parser.peek()
    if first is None:
        return None
    value = parser.block(first[0])
    if parser.peek() is not None:
        raise UnsupportedYamlError
    return value
