"""No-follow directory operations on a real filesystem, including symlinks planted mid-path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flotilla.localpv.backends import HostPathBackend, RootConfig, VolumeSpec, parse_root
from flotilla.localpv.backends.safefs import (
    Owner,
    UnsafePath,
    make_volume_dir,
    remove_volume_dir,
    tree_usage,
)
from flotilla.localpv.policies import InvalidInput


def test_create_sets_owner_and_mode_and_is_idempotent(tmp_path: Path) -> None:
    path = make_volume_dir(str(tmp_path), ("ns", "vol"), Owner(1234, 2345, 0o750))
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o750)
    assert make_volume_dir(str(tmp_path), ("ns", "vol"), Owner()) == path


def test_a_symlinked_parent_or_target_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "ns").symlink_to(outside)
    with pytest.raises(UnsafePath):
        make_volume_dir(str(root), ("ns", "vol"), Owner())
    (root / "vol").symlink_to(outside)
    with pytest.raises(UnsafePath):
        make_volume_dir(str(root), ("vol",), Owner())
    with pytest.raises(UnsafePath):
        remove_volume_dir(str(root), ("ns", "vol"))
    assert list(outside.iterdir()) == []


def test_a_symlinked_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath):
        make_volume_dir(str(tmp_path / "link"), ("vol",), Owner())


def test_delete_removes_exactly_the_volume_and_follows_no_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "precious").write_text("keep")
    path = Path(make_volume_dir(str(root), ("ns", "vol"), Owner()))
    (path / "sub").mkdir()
    (path / "sub" / "f").write_bytes(b"x" * 10000)
    (path / "escape").symlink_to(outside)
    (root / "ns" / "neighbour").mkdir()
    assert tree_usage(str(root), ("ns", "vol")) >= 10000
    assert remove_volume_dir(str(root), ("ns", "vol")) is True
    assert not path.exists()
    assert (outside / "precious").read_text() == "keep"
    assert (root / "ns" / "neighbour").is_dir()
    assert remove_volume_dir(str(root), ("ns", "vol")) is False


def test_empty_pattern_parents_are_pruned(tmp_path: Path) -> None:
    make_volume_dir(str(tmp_path), ("ns", "claim", "vol"), Owner())
    remove_volume_dir(str(tmp_path), ("ns", "claim", "vol"))
    assert list(tmp_path.iterdir()) == []


def test_traversal_in_a_subpath_is_refused(tmp_path: Path) -> None:
    for parts in (("..", "x"), ("a/../../b",), ("/etc",)):
        with pytest.raises(InvalidInput):
            make_volume_dir(str(tmp_path), parts, Owner())


def test_hostpath_backend_only_uses_allow_listed_roots(tmp_path: Path) -> None:
    backend = HostPathBackend([RootConfig(str(tmp_path), 10 * 2**20)])
    [pool] = backend.pools()
    assert pool.name == str(tmp_path) and pool.budget == 10 * 2**20 and pool.free > 0
    spec = VolumeSpec(name="pvc-1", pool=str(tmp_path), size=2**20, subpath=("pvc-1",))
    assert backend.create(spec).path == str(tmp_path / "pvc-1")
    with pytest.raises(InvalidInput):
        backend.create(VolumeSpec(name="pvc-2", pool="/etc", size=1, subpath=("pvc-2",)))
    assert backend.delete(spec) is True


def test_root_flags_parse_budgets() -> None:
    assert parse_root("/srv/x=1Gi") == RootConfig("/srv/x", 2**30)
    assert parse_root("/srv/x").budget is None
    with pytest.raises(InvalidInput):
        parse_root("relative/path")
