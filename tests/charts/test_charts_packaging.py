"""Packaging and indexing on the real filesystem: reproducibility, layout, hostile input."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest
from chart_factory import (
    CHART_YAML,
    big_values_chart,
    library_chart,
    member,
    raw_archive,
    simple_chart,
    webapp_chart,
    write,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from flotilla.charts import index as idx
from flotilla.charts.archives import ArchiveLimits, load_archive, read_archive
from flotilla.charts.chartfile import Severity
from flotilla.charts.errors import ChartError, InvalidChartError, UnsafeArchiveError
from flotilla.charts.indexing import index_directory
from flotilla.charts.linting import lint_directory
from flotilla.charts.packaging import PackageOptions, package_chart, write_package


def _members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getnames()


def test_archive_is_byte_identical_across_runs_and_mtimes(tmp_path: Path) -> None:
    chart = webapp_chart(tmp_path / "src")
    first = package_chart(chart).data
    for path in chart.rglob("*"):
        os.utime(path, (time.time() + 3600, time.time() + 3600))
    (chart / "values.yaml").chmod(0o600)
    second = package_chart(chart).data
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    header = first[:10]
    assert header[3] == 0, "gzip header must carry no file name or other flags"
    assert header[4:8] == b"\0\0\0\0", "gzip header must carry no time"
    (chart / "values.yaml").write_text("replicaCount: 3\n")
    assert package_chart(chart).data != first


def test_archive_layout_follows_helm(tmp_path: Path) -> None:
    packaged = package_chart(webapp_chart(tmp_path / "src", version="1.1.0-rc.1"))
    names = _members(packaged.data)
    assert names == sorted(names)
    assert "webapp/Chart.yaml" in names and "webapp/values.yaml" in names
    assert "webapp/charts/sidecar/Chart.yaml" in names
    assert "webapp/charts/common-0.3.0.tgz" in names, "file:// dependencies are vendored"
    assert not any(n.endswith((".bak", "junk.txt", ".hidden-scratch.yaml")) for n in names)
    with tarfile.open(fileobj=io.BytesIO(packaged.data), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert {(i.mode, i.uid, i.gid, i.mtime, i.type) for i in infos} == {
        (0o644, 0, 0, 315532800, tarfile.REGTYPE)
    }


def test_source_date_epoch_sets_the_mtime(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "plain", "1.0.0")
    data = package_chart(chart, PackageOptions(mtime=1700000000)).data
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert {i.mtime for i in tar.getmembers()} == {1700000000}


def test_write_package_names_the_archive(tmp_path: Path) -> None:
    packaged = write_package(big_values_chart(tmp_path / "src"), tmp_path / "out")
    assert packaged.path == tmp_path / "out" / "bigvalues-0.1.0.tgz"
    assert packaged.path.stat().st_size < 1_000_000 < len(packaged.path.read_bytes()) * 20


def test_missing_dependency_is_refused(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "needy", "1.0.0")
    with (chart / "Chart.yaml").open("a") as f:
        f.write(
            "dependencies:\n  - name: redis\n    version: 1.x\n"
            "    repository: https://charts.example.com\n"
        )
    with pytest.raises(InvalidChartError, match=r"'redis' is declared but missing from charts/"):
        package_chart(chart)


def test_symlinks_in_the_source_are_refused(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "linky", "1.0.0")
    (chart / "templates" / "secret.yaml").symlink_to("/etc/passwd")
    with pytest.raises(InvalidChartError, match="symlinks are not packaged"):
        package_chart(chart)


def test_oversized_source_file_is_refused(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "huge", "1.0.0")
    (chart / "blob.bin").write_bytes(b"\0" * 2048)
    with pytest.raises(InvalidChartError, match="over the 1024-byte limit"):
        package_chart(chart, PackageOptions(limits=ArchiveLimits(max_file_bytes=1024)))


def test_lint_reports_file_and_field(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "Bad_Name", "1.0")
    write(chart / "values.yaml", "a: [unclosed\n")
    findings = lint_directory(chart)
    text = "\n".join(str(f) for f in findings)
    assert "[WARNING]" in text and "Chart.yaml: name" in text
    assert f"[ERROR] {chart / 'values.yaml'}: invalid YAML" in text
    library = lint_directory(library_chart(tmp_path / "lib"))
    assert not [f for f in library if f.severity is not Severity.INFO], library


# --- hostile archives -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("members", "message"),
    [
        (
            [member("evil/Chart.yaml", CHART_YAML), member("evil/../../etc/cron.d/x", b"boom")],
            "references the parent directory",
        ),
        ([member("evil/Chart.yaml", CHART_YAML), member("/etc/passwd", b"boom")], "absolute path"),
        (
            [
                member("evil/Chart.yaml", CHART_YAML),
                member("evil/templates/x.yaml", kind=tarfile.SYMTYPE, link="/etc/shadow"),
            ],
            "is a link to '/etc/shadow'",
        ),
        (
            [
                member("evil/Chart.yaml", CHART_YAML),
                member("evil/hard", kind=tarfile.LNKTYPE, link="evil/Chart.yaml"),
            ],
            "is a link",
        ),
        (
            [member("evil/Chart.yaml", CHART_YAML), member("evil/dev", kind=tarfile.CHRTYPE)],
            "not a regular file",
        ),
        (
            [member("evil/Chart.yaml", CHART_YAML), member("other/values.yaml", b"")],
            "outside base directory",
        ),
        (
            [member("evil/Chart.yaml", CHART_YAML), member("evil/values.yaml", b"a" * 4096)],
            "over the 2048-byte limit per file",
        ),
        ([member("evil/values.yaml", b"")], "no Chart.yaml"),
        ([member("evil/Chart.yaml", b"apiVersion: v2\nname: [\n")], "invalid YAML"),
    ],
)
def test_hostile_archives_are_refused(
    members: list[tuple[tarfile.TarInfo, bytes | None]], message: str
) -> None:
    data = raw_archive(members)
    with pytest.raises(ChartError, match=message):
        read_archive(data, "evil-1.0.0.tgz", ArchiveLimits(max_file_bytes=2048))


def test_decompression_bomb_is_bounded() -> None:
    members = [member("evil/Chart.yaml", CHART_YAML)] + [
        member(f"evil/f{i}", b"\0" * 4000) for i in range(10)
    ]
    with pytest.raises(UnsafeArchiveError, match="decompressed size exceeds 16384 bytes"):
        read_archive(raw_archive(members), "bomb.tgz", ArchiveLimits(max_total_bytes=16384))


def test_garbage_is_not_an_archive() -> None:
    with pytest.raises(UnsafeArchiveError, match="not a valid gzip-compressed tar"):
        read_archive(b"PK\x03\x04 this is a zip", "x.tgz")
    with pytest.raises(UnsafeArchiveError, match=r"y\.tgz: corrupt tar header"):
        read_archive(gzip.compress(b"not a tar at all" * 100), "y.tgz")
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        read_archive(raw_archive([member("evil/Chart.yaml", CHART_YAML)])[:-20], "z.tgz")


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    with pytest.raises(UnsafeArchiveError, match="decompressed size exceeds"):
        read_archive(bomb, "bomb.tgz", ArchiveLimits(max_total_bytes=1 << 20, max_members=10))


def test_long_paths_in_pax_and_gnu_formats(tmp_path: Path) -> None:
    deep = "evil/templates/" + "d" * 120 + "/x.yaml"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
            for name, data in (("evil/Chart.yaml", CHART_YAML), (deep, b"kind: x\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        _, base, files = read_archive(buf.getvalue(), "long.tgz", keep_files=True)
        assert base == "evil" and files[deep.removeprefix("evil/")] == b"kind: x\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("evil/Chart.yaml"))
        link = tarfile.TarInfo("evil/templates/x.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "/" + "e" * 150
        tar.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="is a link to '/eeee"):
        read_archive(buf.getvalue(), "link.tgz")


# --- index a directory ------------------------------------------------------------------------
def _repo(tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    src = tmp_path / "src"
    for version in ("1.0.0", "1.1.0-rc.1", "1.1.0+build.7"):
        write_package(webapp_chart(src / version, version=version), out)
    write_package(library_chart(src / "lib"), out / "sub")
    return out


def test_index_directory_keeps_created_for_unchanged_archives(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    first, _ = index_directory(repo, "https://example.com/charts")
    assert [e.version for e in first.entries["webapp"]] in (
        ["1.1.0-rc.1", "1.1.0+build.7", "1.0.0"],
        ["1.1.0+build.7", "1.1.0-rc.1", "1.0.0"],
    )
    assert first.entries["common"][0].urls == ["https://example.com/charts/sub/common-0.3.0.tgz"]
    text1 = (repo / "index.yaml").read_text()
    time.sleep(0.01)
    second, _ = index_directory(repo, "https://example.com/charts")
    assert {e.created for e in second.all_versions()} == {e.created for e in first.all_versions()}
    assert second.generated != first.generated
    assert (repo / "index.yaml").read_text().split("generated")[0] == text1.split("generated")[0]


def test_index_merge_keeps_foreign_entries(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    old = tmp_path / "old-index.yaml"
    old.write_text(
        "apiVersion: v1\nentries:\n  legacy:\n  - name: legacy\n    version: 0.0.1\n"
        "    digest: abc\n    urls: [https://old.example.com/legacy-0.0.1.tgz]\n"
        "    created: '2020-01-01T00:00:00Z'\n"
    )
    index, _ = index_directory(repo, "", merge=old)
    assert index.entries["legacy"][0].created == "2020-01-01T00:00:00Z"
    assert index.entries["webapp"][0].urls[0].startswith("webapp-1.1.0")


def test_bad_archive_in_a_batch_leaves_the_index_alone(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    index_directory(repo, "https://example.com")
    before = (repo / "index.yaml").read_bytes()
    (repo / "evil-1.0.0.tgz").write_bytes(
        raw_archive([member("evil/Chart.yaml", CHART_YAML), member("evil/../../x", b"")])
    )
    with pytest.raises(ChartError, match=r"refusing to write the index; bad archives:\n.*evil"):
        index_directory(repo, "https://example.com")
    assert (repo / "index.yaml").read_bytes() == before
    index, skipped = index_directory(repo, "https://example.com", skip_invalid=True)
    assert len(skipped) == 1 and "evil" not in index.entries and len(index) == 4


def test_duplicate_versions_across_subdirectories_are_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "copy").mkdir()
    (repo / "copy" / "common-0.3.0.tgz").write_bytes(
        (repo / "sub" / "common-0.3.0.tgz").read_bytes()
    )
    with pytest.raises(ChartError, match=r"duplicate version: common 0\.3\.0"):
        index_directory(repo, "")


def test_loaded_archive_digest_is_plain_sha256(tmp_path: Path) -> None:
    packaged = write_package(simple_chart(tmp_path, "plain", "1.0.0"), tmp_path / "out")
    assert packaged.path is not None
    archive = load_archive(packaged.path)
    assert archive.digest == hashlib.sha256(packaged.data).hexdigest()
    entry = idx.new_entry(archive.metadata, archive.digest, "plain-1.0.0.tgz", "T")
    assert entry.data["digest"] == archive.digest and len(archive.digest) == 64


def test_merge_with_a_missing_index_is_an_error(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    with pytest.raises(ChartError, match="no such index file"):
        index_directory(repo, "", merge=tmp_path / "missing.yaml")
    assert not (tmp_path / "missing.yaml").exists()


_SEED_ARCHIVE = raw_archive(
    [
        member("evil/Chart.yaml", CHART_YAML),
        member("evil/values.yaml", b"a: 1\n"),
        member("evil/templates/" + "x" * 120 + ".yaml", b"kind: ConfigMap\n"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=8),
    st.booleans(),
)
def test_corrupted_archives_fail_only_with_chart_errors(
    edits: list[tuple[int, int]], truncate: bool
) -> None:
    tar = bytearray(gzip.decompress(_SEED_ARCHIVE))
    for offset, value in edits:
        tar[offset % len(tar)] = value
    if truncate:
        tar = tar[: edits[0][0] % len(tar)]
    with contextlib.suppress(ChartError):
        read_archive(gzip.compress(bytes(tar)), "fuzz.tgz", keep_files=True)


def test_symlinked_archive_in_the_directory_is_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "link-1.0.0.tgz").symlink_to(repo / "sub" / "common-0.3.0.tgz")
    with pytest.raises(ChartError, match=r"link-1\.0\.0\.tgz: is a symlink"):
        index_directory(repo, "")
