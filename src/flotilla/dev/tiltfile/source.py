"""Source-level help for starlark-rust: ``while`` loops, and every unresolved name at once.

Tilt's Starlark (starlark-go) enables ``while``; starlark-rust reserves the keyword and has no
dialect switch for it. ``rewrite_while`` turns ``while COND:`` into a bounded ``for`` whose first
statement is ``if not (COND): break``, found with Python's tokenizer (Starlark's lexical syntax
is Python's) so strings that mention ``while`` are left alone. The inserted lines shift line
numbers; ``LineMap`` maps them back so errors still name the Tiltfile's own lines.

starlark-rust stops at the first unknown name; ``unresolved_names`` lists them all, from Python's
``ast`` (a Tiltfile parses as Python), so one run reports every missing name with its line.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

# Names every Starlark module sees without defining them (starlark-rust's standard globals plus
# the library extensions the evaluator enables).
UNIVERSE = frozenset(
    {
        "None", "True", "False", "abs", "all", "any", "bool", "chr", "dict", "dir", "enumerate",
        "fail", "float", "getattr", "hasattr", "hash", "int", "len", "list", "max", "min", "ord",
        "print", "range", "repr", "reversed", "sorted", "str", "tuple", "type", "zip", "struct",
        "json", "map", "filter", "partial", "load",
    }
)  # fmt: skip

_MAX_ITERATIONS = "0x7FFFFFFF"  # range() takes a 32-bit int
_INSERTED = 2  # lines added after each ``while``
_HEADER = re.compile(r"^(?P<indent>[ \t]*)while\b")


@dataclass
class LineMap:
    """Where lines were inserted into a file's text, to map rewritten lines back."""

    headers: list[int] = field(default_factory=list)  # original lines of rewritten ``while``s

    def original(self, line: int) -> int:
        """The original line of rewritten ``line``; an inserted line maps to its ``while``."""
        shift = 0
        for head in sorted(self.headers):
            if line <= head + shift:
                break
            if line <= head + shift + _INSERTED:
                return head
            shift += _INSERTED
        return line - shift


def expand_tabs(text: str) -> str:
    """``text`` with its tabs outside strings turned into spaces; lines stay where they are.

    starlark-rust refuses any tab ("tabs are not allowed"); starlark-go, Tilt's, takes them as
    whitespace (indentation to the next multiple of 8, as Python), and Tiltfiles use them, e.g.
    to indent a list of compose files. Tabs inside string literals are kept.
    """
    if "\t" not in text:
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text  # the parser reports the real error
    lines = text.splitlines(keepends=True)
    keep: list[set[int]] = [set() for _ in lines]  # columns inside string literals, per line
    for tok in tokens:
        if tok.type != tokenize.STRING or "\t" not in tok.string:
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for row in range(r0, r1 + 1):
            start = c0 if row == r0 else 0
            end = c1 if row == r1 else len(lines[row - 1])
            keep[row - 1].update(range(start, end))
    out = []
    for i, line in enumerate(lines):
        body = line.lstrip(" \t")
        lead = line[: len(line) - len(body)]
        if lead and 0 not in keep[i]:
            line = lead.expandtabs(8) + body
            shift = len(lead.expandtabs(8)) - len(lead)
            kept = {c + shift for c in keep[i]}
        else:
            kept = keep[i]
        chars = (" " if ch == "\t" and c not in kept else ch for c, ch in enumerate(line))
        out.append("".join(chars))
    return "".join(out)


def rewrite_while(text: str) -> tuple[str, LineMap]:
    """``text`` with each ``while COND:`` turned into a ``for`` loop that breaks on ``not COND``."""
    lmap = LineMap()
    if "while" not in text:
        return text, lmap
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text, lmap
    lines = text.splitlines(keepends=True)
    # (header's first line, its last line, col of ':', body indent, condition)
    edits: list[tuple[int, int, int, int, str]] = []
    at_start = True
    for i, tok in enumerate(tokens):
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            at_start = True
            continue
        if tok.type == tokenize.COMMENT:
            continue
        if at_start and tok.type == tokenize.NAME and tok.string == "while":
            colon = _header_colon(tokens, i)
            if colon is not None:
                start, end = tok.end, tokens[colon].start
                cond = _between(lines, start, end)
                edits.append((start[0], end[0], end[1], _body_indent(tokens, colon), cond))
        at_start = False
    for line, last, col, indent, cond in reversed(edits):
        head = _HEADER.match(lines[line - 1])
        if head is None or indent < 0:
            continue
        rest = lines[last - 1][col + 1 :]
        pad = " " * indent
        lines[line - 1] = f"{head.group('indent')}for _while_ in range({_MAX_ITERATIONS}):{rest}"
        if not lines[line - 1].endswith("\n"):
            lines[line - 1] += "\n"
        for i in range(line, last):  # the rest of a header split over lines: blank
            lines[i] = "\n"
        lines.insert(last, f"{pad}if not ({cond}):\n{pad}    break\n")
        lmap.headers.append(last)
    return "".join(lines), lmap


def _between(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """Source text from ``start`` to ``end`` (token positions), on one line."""
    if start[0] == end[0]:
        return lines[start[0] - 1][start[1] : end[1]].strip()
    parts = [lines[start[0] - 1][start[1] :]]
    parts += lines[start[0] : end[0] - 1]
    parts.append(lines[end[0] - 1][: end[1]])
    return " ".join(p.strip() for p in parts)


def _header_colon(tokens: list[tokenize.TokenInfo], start: int) -> int | None:
    depth = 0
    for j in range(start + 1, len(tokens)):
        tok = tokens[j]
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.type == tokenize.OP and tok.string == ":" and depth == 0:
            return j
        elif tok.type == tokenize.NEWLINE:
            return None
    return None


def _body_indent(tokens: list[tokenize.TokenInfo], colon: int) -> int:
    """Column of the loop body's first statement (-1 for a one-line ``while c: stmt``)."""
    for tok in tokens[colon + 1 :]:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
            continue
        if tok.type == tokenize.INDENT:
            continue
        return tok.start[1] if tok.start[0] > tokens[colon].start[0] else -1
    return -1


def unresolved_names(text: str, known: set[str]) -> list[tuple[str, int]]:
    """Every name ``text`` reads that nothing defines, with its first line; [] if unparsable."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    bound = set(known) | set(UNIVERSE)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            bound.add(node.name)
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    bound.add(arg.arg)
        elif isinstance(node, ast.Lambda):
            for arg in [*node.args.args, *node.args.kwonlyargs, node.args.vararg]:
                if arg is not None:
                    bound.add(arg.arg)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load":
            for a2 in node.args[1:]:
                if isinstance(a2, ast.Constant) and isinstance(a2.value, str):
                    bound.add(a2.value)
            bound.update(k.arg for k in node.keywords if k.arg)
    seen: dict[str, int] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id not in bound
            and (node.id not in seen or node.lineno < seen[node.id])
        ):
            seen[node.id] = node.lineno
    return sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))


def top_level_names(text: str) -> list[str]:
    """Names a file binds at top level (assignments, defs), public ones only."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.FunctionDef):
            continue
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and not n.id.startswith("_") and n.id not in names:
                    names.append(n.id)
    return names
