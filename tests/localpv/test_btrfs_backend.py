"""The btrfs backend against a real btrfs on a loop device (no cluster): limits and refusals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.localpv.backends import RootConfig, VolumeSpec
from flotilla.localpv.backends.btrfs import BtrfsBackend
from flotilla.localpv.policies import InvalidInput
from tests.localpv.kit import btrfs_mount

MiB = 2**20


@pytest.fixture(scope="module")
def btrfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("btrfs")
    with btrfs_mount(work / "img", work / "mnt", size_mb=256) as mount:
        yield mount


def test_limit_usage_expand_and_delete(btrfs: Path) -> None:
    backend = BtrfsBackend([RootConfig(str(btrfs))])
    spec = VolumeSpec(name="v1", pool=str(btrfs), size=8 * MiB, subpath=("ns", "v1"))
    path = Path(backend.create(spec).path)
    assert os.stat(path).st_ino == 256
    assert backend.create(spec).path == str(path), "idempotent"
    (path / "f").write_bytes(os.urandom(2 * MiB))
    os.sync()
    used = backend.usage(spec)
    assert used is not None and used >= 2 * MiB
    assert (
        backend.expand(VolumeSpec(name="v1", pool=str(btrfs), size=16 * MiB, subpath=("ns", "v1")))
        == 16 * MiB
    )
    assert backend.delete(spec) is True
    assert not path.exists() and not (btrfs / "ns").exists()
    assert backend.delete(spec) is False


def test_planted_symlinks_and_plain_directories_are_refused(btrfs: Path, tmp_path: Path) -> None:
    backend = BtrfsBackend([RootConfig(str(btrfs))], enable_quota=False)
    (btrfs / "evil").symlink_to(tmp_path)
    with pytest.raises(InvalidInput):
        backend.create(VolumeSpec(name="v", pool=str(btrfs), size=MiB, subpath=("evil", "v")))
    (btrfs / "plain").mkdir()
    with pytest.raises(InvalidInput, match="not a btrfs subvolume"):
        backend.create(VolumeSpec(name="p", pool=str(btrfs), size=MiB, subpath=("plain",)))
    with pytest.raises(InvalidInput, match="not a btrfs subvolume"):
        backend.delete(VolumeSpec(name="p", pool=str(btrfs), size=MiB, subpath=("plain",)))
    with pytest.raises(InvalidInput):
        backend.create(VolumeSpec(name="x", pool="/etc", size=MiB, subpath=("x",)))
    assert list(tmp_path.iterdir()) == []
    assert (btrfs / "plain").is_dir()
