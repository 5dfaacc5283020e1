"""Which files belong to a build: ``.dockerignore``/``.tiltignore``/``ignore``/``only`` matching,
the build-context tarball and its content-derived tag.

Matching is pure (patterns and paths in, booleans out); walking and hashing read files only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from functools import lru_cache

from flotilla.dev.plan import imagedeps
from flotilla.dev.plan.model import ImageTarget

GENERATED_DOCKERFILE = ".flotilla.Dockerfile"
RESTART_SCRIPT = (
    'rf="${FLOTILLA_RESTART_FILE:-/tmp/.restart-proc}"; '
    'while :; do rm -f "$rf"; "$@" & pid=$!; echo "$pid" > "$rf.pid"; wait "$pid"; code=$?; '
    '[ -f "$rf" ] || exit "$code"; done'
)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    """A dockerignore pattern (Go filepath.Match plus ``**``) as a regex over ``/`` paths."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out[-1] = "(?:.*/)?"
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i)
            if end == -1:
                out.append(re.escape(ch))
            else:
                out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?$")


def clean_pattern(pattern: str) -> str:
    neg = pattern.startswith("!")
    body = os.path.normpath(pattern[1:] if neg else pattern).lstrip("/")
    body = "" if body == "." else body
    return ("!" if neg else "") + body


@dataclass(frozen=True)
class Matcher:
    """dockerignore semantics: later patterns win, ``!pattern`` re-includes."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: list[str] | tuple[str, ...]) -> Matcher:
        cleaned = (
            clean_pattern(p.strip())
            for p in patterns
            if p.strip() and not p.strip().startswith("#")
        )
        return cls(tuple(p for p in cleaned if p not in ("", "!")))

    def ignored(self, rel: str) -> bool:
        """Is ``rel`` (relative to the root, ``/`` separated) excluded?"""
        result = False
        for pat in self.patterns:
            neg = pat.startswith("!")
            if _compile(pat[1:] if neg else pat).match(rel):
                result = not neg
        return result


def read_ignore_file(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def _rel(path: str, root: str) -> str | None:
    rel = os.path.relpath(path, root)
    if rel == "." or rel.startswith(".."):
        return None if rel.startswith("..") else ""
    return rel.replace(os.sep, "/")


@dataclass(frozen=True)
class ContextFilter:
    """Decides which files under a root belong to an image or a resource's deps."""

    root: str
    ignore: Matcher = Matcher()
    only: tuple[str, ...] = ()  # relative paths; empty means everything
    extra_ignore: tuple[tuple[str, Matcher], ...] = ()  # (base dir, patterns) e.g. .tiltignore

    def includes(self, path: str) -> bool:
        rel = _rel(path, self.root)
        if rel is None or rel == "":
            return rel == ""
        if self.only and not any(
            rel == o or rel.startswith(o.rstrip("/") + "/") for o in self.only
        ):
            return False
        if self.ignore.ignored(rel):
            return False
        for base, matcher in self.extra_ignore:
            r = _rel(path, base)
            if r and matcher.ignored(r):
                return False
        return True


def image_filter(
    image: ImageTarget, tiltignore: tuple[tuple[str, Matcher], ...] = ()
) -> ContextFilter:
    """The files of ``image``'s context, as Docker and Tilt would send them."""
    patterns = [*read_ignore_file(os.path.join(image.context, ".dockerignore")), *image.ignore]
    only = tuple(clean_pattern(o) for o in image.only)
    return ContextFilter(image.context, Matcher.of(patterns), only, tiltignore)


def context_files(flt: ContextFilter) -> list[str]:
    """Sorted relative paths of every included regular file (symlinks kept as links)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(flt.root):
        rel_dir = _rel(dirpath, flt.root) or ""
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not (
                flt.ignore.ignored(f"{rel_dir}/{d}".lstrip("/"))
                and not any(p.startswith("!") for p in flt.ignore.patterns)
            )
        )
        for name in filenames:
            full = os.path.join(dirpath, name)
            if flt.includes(full):
                out.append(os.path.relpath(full, flt.root).replace(os.sep, "/"))
    return sorted(out)


def dockerfile_text(image: ImageTarget) -> str:
    """The Dockerfile to build with; ``docker_build_with_restart`` appends its wrapper."""
    if image.dockerfile_contents:
        text = image.dockerfile_contents
    else:
        with open(image.dockerfile) as fh:
            text = fh.read()
    if image.restart_entrypoint:
        entry = list(restart_command(image.restart_entrypoint))
        text = text.rstrip("\n") + "\nENTRYPOINT " + json.dumps(entry) + "\nCMD []\n"
    return text


def restart_command(entrypoint: tuple[str, ...]) -> tuple[str, ...]:
    """The restart wrapper's argv around ``entrypoint`` (``docker_build_with_restart``)."""
    return ("/bin/sh", "-c", RESTART_SCRIPT, "flotilla-restart", *entrypoint)


def link_image_deps(images: list[ImageTarget]) -> None:
    """Fill each docker image's ``image_deps`` from its Dockerfile; a cycle raises."""
    refs = [i.ref for i in images]
    for image in images:
        if image.kind == "docker":
            try:
                text = dockerfile_text(image)
            except OSError:
                continue
            others = [r for r in refs if r != image.ref]
            image.image_deps = imagedeps.deps_of(text, image.build_args, others)
        else:
            image.image_deps = tuple(r for r in image.image_deps if r in refs)
    imagedeps.order({i.ref: i.image_deps for i in images})


def build_context(
    image: ImageTarget,
    tiltignore: tuple[tuple[str, Matcher], ...] = (),
    base_refs: dict[str, str] | None = None,
) -> tuple[bytes, str]:
    """(gzip-free tarball of the context with the Dockerfile at ``GENERATED_DOCKERFILE``, tag).

    The tag is ``tilt-<sha256 of the tar content, build args and target>``: same input, same tag,
    so an unchanged image is never rebuilt or re-pushed.
    """
    flt = image_filter(image, tiltignore)
    digest = hashlib.sha256()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in context_files(flt):
            full = os.path.join(image.context, rel)
            info = tar.gettarinfo(full, arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            digest.update(f"{rel}\0{info.mode}\0{info.type!r}\0{info.linkname}\0".encode())
            if info.isfile():
                with open(full, "rb") as fh:
                    data = fh.read()
                digest.update(hashlib.sha256(data).digest())
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
        df = imagedeps.rewrite(dockerfile_text(image), image.build_args, base_refs or {}).encode()
        digest.update(b"Dockerfile\0" + hashlib.sha256(df).digest())
        info = tarfile.TarInfo(GENERATED_DOCKERFILE)
        info.size = len(df)
        tar.addfile(info, io.BytesIO(df))
    digest.update(json.dumps([sorted(image.build_args.items()), image.target]).encode())
    return buf.getvalue(), "tilt-" + digest.hexdigest()[:16]


def registry_ref(ref: str, registry: str, single_name: str = "") -> str:
    """Where ``ref`` goes under ``default_registry``: Tilt's rule, ``/`` in the name becomes ``_``.

    ``gcr.io/proj/app`` with registry ``localhost:5000`` → ``localhost:5000/gcr.io_proj_app``.
    Always without the declared tag: callers add the build's (``app:dev`` → ``app:tilt-…``, as
    Tilt does), never ``app:dev:tilt-…``.
    """
    name = ref.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name = name[:colon]
    if not registry:
        return name
    if single_name:
        return f"{registry.rstrip('/')}/{single_name}"
    return f"{registry.rstrip('/')}/{name.replace('/', '_')}"
