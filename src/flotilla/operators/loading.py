"""Read what the user points at — bundles, charts, manifest files, directories — into manifests.

This is the adapter side (file system walks, ``helm template``); the line-numbered YAML loader
and the bundle shape live in the pure ``documents`` module and are re-exported here.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flotilla.operators.documents import Bundle, InputError, LineDict, line_of, load_yaml_documents
from flotilla.operators.models import Manifest, Source

__all__ = [
    "Bundle",
    "InputError",
    "LineDict",
    "find_helm",
    "line_of",
    "load_bundle",
    "load_inputs",
    "load_yaml_documents",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _manifests_from_docs(docs: Iterable[Any], file: str, origin: str) -> Iterator[Manifest]:
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from _manifests_from_docs(doc["items"], file, origin)
            continue
        if "kind" not in doc or "apiVersion" not in doc:
            continue
        yield Manifest(body=doc, source=Source(file, line_of(doc, 1)), origin=origin)


def load_file(path: Path, origin: str = "", display: str | None = None) -> list[Manifest]:
    """Kubernetes objects in one file (multi-document YAML, JSON, or a ``List``)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: cannot read: {exc}") from exc
    return list(_manifests_from_docs(load_yaml_documents(text, name), name, origin or name))


def is_bundle(path: Path) -> bool:
    """A bundle has ``manifests/`` and ``metadata/annotations.yaml`` side by side."""
    return (path / "manifests").is_dir() and (path / "metadata" / "annotations.yaml").is_file()


def is_chart(path: Path) -> bool:
    return (path / "Chart.yaml").is_file()


def load_bundle(path: Path) -> Bundle:
    """Read a bundle directory; the manifests directory is the one annotations.yaml names."""
    ann_file = path / "metadata" / "annotations.yaml"
    docs = load_yaml_documents(ann_file.read_text(encoding="utf-8"), str(ann_file))
    annotations: dict[str, str] = {}
    if docs and isinstance(docs[0], dict) and isinstance(docs[0].get("annotations"), dict):
        annotations = {str(k): str(v) for k, v in docs[0]["annotations"].items()}
    manifests_dir = (
        annotations.get("operators.operatorframework.io.bundle.manifests.v1", "manifests/").strip(
            "/"
        )
        or "manifests"
    )
    mdir = path / manifests_dir
    if not mdir.resolve().is_relative_to(path.resolve()):
        raise InputError(f"{path}: manifests directory {manifests_dir!r} escapes the bundle")
    manifests: list[Manifest] = []
    for file in sorted(mdir.iterdir()) if mdir.is_dir() else []:
        if file.is_file() and file.suffix in MANIFEST_SUFFIXES:
            manifests.extend(load_file(file, origin=str(path)))
    return Bundle(path=path, manifests=manifests, annotations=annotations)


def find_helm() -> str | None:
    """A helm binary on PATH or the one our tooling builds into ~/.cache/flotilla/tools."""
    found = shutil.which("helm")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flotilla" / "tools"
    candidates = sorted(glob.glob(str(cache / "helm-*" / "helm")), reverse=True)
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def render_chart(
    path: Path, *, release: str = "audit", namespace: str = "default"
) -> list[Manifest]:
    """``helm template`` the chart; each manifest points at its template via helm's Source line."""
    helm = find_helm()
    if helm is None:
        raise InputError(
            f"{path}: is a Helm chart, but no helm binary was found on PATH or in "
            "~/.cache/flotilla/tools/helm-*/helm; render it yourself (helm template) and audit "
            "the output"
        )
    proc = subprocess.run(
        [helm, "template", release, str(path), "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise InputError(f"{path}: helm template failed: {proc.stderr.strip()}")
    manifests: list[Manifest] = []
    # helm prefixes each document with "# Source: chart/templates/x.yaml"; keep it as the file.
    # Lines count from the document's first line after that comment: rendered, not template lines.
    for chunk in proc.stdout.split("\n---"):
        _, marker, body = chunk.partition("# Source: ")
        template, _nl, rest = body.partition("\n")
        if marker:
            chunk = rest
        inside = template.strip().split("/", 1)[-1]
        display = str(path / inside) if marker else f"{path} (rendered)"
        docs = load_yaml_documents(chunk, display)
        manifests.extend(_manifests_from_docs(docs, display, str(path)))
    return manifests


def load_inputs(
    paths: Iterable[Path], *, namespace: str = "default"
) -> tuple[list[Manifest], list[str]]:
    """Every input's manifests, plus per-input errors: one bad input doesn't hide the others."""
    manifests: list[Manifest] = []
    errors: list[str] = []
    for path in paths:
        try:
            manifests.extend(_load_one(path, namespace))
        except InputError as exc:
            errors.append(str(exc))
    return manifests, errors


def _load_one(path: Path, namespace: str) -> list[Manifest]:
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        return load_file(path)
    if is_bundle(path):
        return load_bundle(path).manifests
    if is_chart(path):
        return render_chart(path, namespace=namespace)
    result: list[Manifest] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        here = Path(root)
        if here != path and (is_bundle(here) or is_chart(here)):
            dirs.clear()
            result.extend(_load_one(here, namespace))
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in sorted(files):
            if name.endswith(MANIFEST_SUFFIXES) and not _is_bundle_metadata(here, name):
                result.extend(load_file(here / name, origin=str(path)))
    return result


def _is_bundle_metadata(directory: Path, name: str) -> bool:
    return directory.name == "metadata" and name in ("annotations.yaml", "dependencies.yaml")
