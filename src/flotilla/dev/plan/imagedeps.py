"""Images built from other images: ``FROM`` and ``COPY --from`` naming another ``docker_build``.

Tilt reads the Dockerfile, builds the images it names first, and builds the dependent one from
the fresh tag. Here: ``dockerfile_refs`` lists the image refs a Dockerfile names (``ARG``
defaults and build args substituted, stage names left out); ``deps_of`` keeps those that are
declared images; ``order`` sorts images so each comes after what it is built from;
``rewrite`` points the Dockerfile at the built refs. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flotilla.dev.plan.manifests import exact_names, refers_to

_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.IGNORECASE)
_FROM = re.compile(r"^(\s*FROM\s+(?:--\S+\s+)*)(\S+)(.*)$", re.IGNORECASE)
_COPY_FROM = re.compile(r"^(\s*(?:COPY|ADD|RUN)\s.*?--(?:from|mount=[^\s]*from)=)([^\s,]+)(.*)$",
                        re.IGNORECASE)  # fmt: skip
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ImageCycleError(ValueError):
    """Images that are built from each other."""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _expand(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return env.get(name) or (m.group(2) or "")

    return _VAR.sub(sub, text)


def _lines(text: str) -> list[str]:
    """Logical lines: backslash continuations joined."""
    return re.sub(r"\\\r?\n", " ", text).splitlines()


def _scan(text: str, build_args: dict[str, str]) -> list[tuple[int, str, str]]:
    """(logical line index, kind 'from'|'copy', expanded image ref) for each image a line names."""
    env: dict[str, str] = {}
    stages: set[str] = set()
    out: list[tuple[int, str, str]] = []
    for i, line in enumerate(_lines(text)):
        arg = _ARG.match(line)
        if arg:
            name = arg.group(1)
            env[name] = build_args.get(name, _unquote(_expand(arg.group(2) or "", env)))
            continue
        frm = _FROM.match(line)
        if frm:
            ref = _expand(frm.group(2), env)
            alias = re.search(r"\bAS\s+(\S+)", frm.group(3), re.IGNORECASE)
            if ref.lower() not in stages and ref.lower() != "scratch":
                out.append((i, "from", ref))
            if alias:
                stages.add(alias.group(1).lower())
            continue
        cp = _COPY_FROM.match(line)
        if cp:
            ref = _expand(cp.group(2), env)
            if ref.lower() not in stages and not ref.isdigit():
                out.append((i, "copy", ref))
    return out


def dockerfile_refs(text: str, build_args: dict[str, str] | None = None) -> list[str]:
    """Image refs the Dockerfile builds from or copies from, in order, without duplicates."""
    refs: list[str] = []
    for _, _, ref in _scan(text, dict(build_args or {})):
        if ref not in refs:
            refs.append(ref)
    return refs


def deps_of(text: str, build_args: dict[str, str], declared: Iterable[str]) -> tuple[str, ...]:
    """The declared image refs a Dockerfile names."""
    declared = list(declared)
    exact = exact_names(declared)
    out: list[str] = []
    for ref in dockerfile_refs(text, build_args):
        # one image per name in the Dockerfile: the first declared that matches, as in Tilt
        cand = next((c for c in declared if refers_to(ref, c, exact)), None)
        if cand is not None and cand not in out:
            out.append(cand)
    return tuple(out)


def order(deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Refs with every image after the images it is built from; a cycle raises its path."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(ref: str) -> None:
        if ref in done:
            return
        if ref in visiting:
            cycle = [*visiting[visiting.index(ref) :], ref]
            raise ImageCycleError("images are built from each other: " + " -> ".join(cycle))
        visiting.append(ref)
        for dep in deps.get(ref, ()):
            visit(dep)
        visiting.pop()
        done.append(ref)

    for ref in deps:
        visit(ref)
    return done


def rewrite(text: str, build_args: dict[str, str], built: dict[str, str]) -> str:
    """The Dockerfile with each ``FROM``/``--from`` naming a built image pointed at ``built``."""
    if not built:
        return text
    hits = {i: ref for i, _, ref in _scan(text, build_args)}
    lines = _lines(text)
    for i, ref in hits.items():
        exact = exact_names(built)
        final = next((b for dep, b in built.items() if refers_to(ref, dep, exact)), None)
        if final is None:
            continue
        m = _FROM.match(lines[i]) or _COPY_FROM.match(lines[i])
        if m:
            lines[i] = f"{m.group(1)}{final}{m.group(3)}"
    return "\n".join(lines) + "\n"
