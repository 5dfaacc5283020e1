"""Build a bundle image as opm does and push it: one reproducible layer with ``manifests/`` and
``metadata/``, the bundle annotations as labels."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from flotilla.operators.documents import read_documents
from flotilla.operators.oci import (
    BUNDLE_LABELS,
    LABEL,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageError,
    ImageRef,
    Registry,
    sha256_digest,
)

__all__ = ["build_bundle_image", "push_bundle"]


def _tar_dir(tar: tarfile.TarFile, directory: Path, arcname: str) -> None:
    """Add ``directory`` as opm's Dockerfile ``COPY`` would: files and dirs, fixed metadata."""
    info = tarfile.TarInfo(arcname)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)
    for path in sorted(directory.iterdir()):
        name = f"{arcname}/{path.name}"
        if path.is_symlink():
            raise ImageError(f"{path}: a symlink; a bundle holds plain files")
        if path.is_dir():
            _tar_dir(tar, path, name)
        elif path.is_file():
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def _bundle_labels(directory: Path) -> dict[str, str]:
    """The image labels: ``metadata/annotations.yaml`` as opm writes them into the Dockerfile."""
    ann = directory / "metadata" / "annotations.yaml"
    if not ann.is_file():
        raise ImageError(f"{directory}: no metadata/annotations.yaml: not a bundle directory")
    try:
        docs, problems = read_documents(ann.read_bytes().decode("utf-8"), str(ann))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageError(f"{ann}: cannot read: {exc}") from None
    if problems and problems[0].rule == "load-error":
        raise ImageError(str(problems[0]))
    annotations = docs[0].get("annotations") if docs and isinstance(docs[0], dict) else None
    if not isinstance(annotations, dict):
        raise ImageError(f"{ann}: no annotations mapping")
    labels = {**BUNDLE_LABELS, **{str(k): str(v) for k, v in annotations.items()}}
    if not labels.get(f"{LABEL}.package.v1"):
        raise ImageError(f"{ann}: no {LABEL}.package.v1 annotation")
    if not labels.get(f"{LABEL}.channels.v1"):
        raise ImageError(f"{ann}: no {LABEL}.channels.v1 annotation")
    for key in (f"{LABEL}.manifests.v1", f"{LABEL}.metadata.v1"):
        if labels[key].strip("/") not in ("manifests", "metadata"):
            raise ImageError(f"{ann}: {key} must be manifests/ or metadata/ (as opm builds)")
    return labels


def build_bundle_image(directory: Path) -> tuple[bytes, bytes, dict[str, str]]:
    """(config, gzip layer, labels) of the bundle image of ``directory``.

    One layer holding ``manifests/`` and ``metadata/``, reproducible (fixed times, owners and
    order), and a config whose labels are the bundle annotations, as opm's bundle Dockerfile.
    """
    labels = _bundle_labels(directory)
    if not (directory / "manifests").is_dir():
        raise ImageError(f"{directory}: no manifests/ directory: not a bundle directory")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("manifests", "metadata"):
            _tar_dir(tar, directory / name, name)
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar_bytes)]},
        "history": [{"created_by": "flotilla operators bundle build"}],
    }
    return json.dumps(config, sort_keys=True).encode(), layer, labels


def push_bundle(directory: Path, image: str) -> str:
    """Build the bundle image of ``directory`` and push it as ``image``; returns its digest."""
    ref = ImageRef.parse(image)
    if not ref.tag or ref.digest:
        raise ImageError(f"{image}: push to a tag (host/repository:tag), not a digest")
    config, layer, _labels = build_bundle_image(directory)
    registry = Registry(ref)
    try:
        config_digest = registry.push_blob(config)
        layer_digest = registry.push_blob(layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}],
        }
        body = json.dumps(manifest, separators=(",", ":")).encode()
        registry.push_manifest(ref.tag, body, OCI_MANIFEST)
        return sha256_digest(body)
    finally:
        registry.close()
