"""Image archives that ctr and docker can import: consistent digests, clean root layers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from flotilla.testenv.images import BUSYBOX_IMAGE, IMAGES, image_archive, rootfs_layer


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {
            m.name: tar.extractfile(m).read()
            for m in tar.getmembers()  # type: ignore[union-attr]
            if m.isfile()
        }


def test_the_oci_layout_is_self_consistent() -> None:
    layer = rootfs_layer_of({"bin/sh": b"#!sh"})
    spec = next(s for s in IMAGES if s.reference == BUSYBOX_IMAGE)
    files = _members(image_archive(layer, spec, "2026-01-01T00:00:00Z"))
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(files["index.json"])
    manifest_desc = index["manifests"][0]
    assert manifest_desc["annotations"]["io.containerd.image.name"] == BUSYBOX_IMAGE
    manifest = json.loads(files["blobs/sha256/" + manifest_desc["digest"][7:]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Cmd"] == ["/bin/sh"]
    docker = json.loads(files["manifest.json"])
    assert docker[0]["RepoTags"] == [BUSYBOX_IMAGE]


def rootfs_layer_of(files: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name, data in files.items():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_bytes(data)
        return rootfs_layer(base)


def test_root_layers_leave_out_runtime_mounts_and_caches(tmp_path: Path) -> None:
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "status").write_text("x")
    (tmp_path / "var" / "cache" / "apt").mkdir(parents=True)
    (tmp_path / "var" / "cache" / "apt" / "pkgcache.bin").write_text("x")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("ID=debian\n")
    os.symlink("/etc/os-release", tmp_path / "etc" / "link")
    os.mkfifo(tmp_path / "etc" / "fifo")
    with tarfile.open(fileobj=io.BytesIO(rootfs_layer(tmp_path))) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert "etc/os-release" in names
    assert names["etc/link"].issym()
    assert names["etc/link"].linkname == "/etc/os-release"
    assert "etc/fifo" not in names
    assert "proc/1/status" not in names
    assert "var/cache/apt/pkgcache.bin" not in names
    assert names["proc"].isdir()
    assert names["tmp"].mode == 0o1777
    assert all(m.uname == "" for m in names.values())


def test_layers_round_trip_and_binary_images_are_cached_by_content(tmp_path: Path) -> None:
    from flotilla.testenv.images import archive_layers, binary_image, files_layer

    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF fake")
    binary.chmod(0o755)
    archive = binary_image("flotilla.local/tool:1", binary, cache=tmp_path / "cache")
    assert binary_image("flotilla.local/tool:1", binary, cache=tmp_path / "cache") == archive
    (layer,) = archive_layers(archive)
    assert layer == files_layer({"tool": binary})
    binary.write_bytes(b"\x7fELF changed")
    assert binary_image("flotilla.local/tool:1", binary, cache=tmp_path / "cache") != archive


def test_the_flotilla_image_key_ignores_zip_timestamps(tmp_path: Path) -> None:
    import zipfile

    from flotilla.testenv.flotilla_image import wheel_key

    constraints = tmp_path / "constraints.txt"
    constraints.write_text("httpx==1\n")
    wheels = []
    for stamp in ((2020, 1, 1, 0, 0, 0), (2026, 1, 1, 0, 0, 0)):
        wheel = tmp_path / f"w{stamp[0]}.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(zipfile.ZipInfo("flotilla/__init__.py", stamp), "x = 1\n")
        wheels.append(wheel)
    before = wheel_key(wheels[0], constraints)
    assert before == wheel_key(wheels[1], constraints)
    constraints.write_text("httpx==2\n")  # a new pin is a new image
    assert wheel_key(wheels[0], constraints) != before


def test_a_multi_layer_image_has_one_history_entry_per_layer() -> None:
    """go-containerregistry pairs history entries with layers by index (kaniko panicked with an
    index out of range on the two-layer Node base image before)."""
    from flotilla.testenv.images import NODE_IMAGE

    spec = next(s for s in IMAGES if s.reference == NODE_IMAGE)
    layers = (rootfs_layer_of({"bin/sh": b"#!sh"}), rootfs_layer_of({"usr/local/bin/node": b"x"}))
    files = _members(image_archive(layers, spec, "2026-01-01T00:00:00Z"))
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert len(config["history"]) == len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    assert spec.archive_name.endswith("-r2.oci.tar")  # rebuilt, not the cached one-entry archive
