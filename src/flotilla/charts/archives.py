"""Chart archives: read them defensively, write them reproducibly.

Reading refuses what helm's loader refuses (absolute paths, ``..``, content outside the base
directory) and what it silently skips (links, devices), and bounds sizes, so a hostile archive
fails with a message instead of filling memory. Writing sorts entries, fixes every mtime, mode and
owner, and leaves the gzip header without a file name or time, so the same files always give the
same bytes, hence the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flotilla.charts.chartfile import ChartMetadata, load_strict, merge_requirements
from flotilla.charts.errors import InvalidChartError, UnsafeArchiveError
from flotilla.charts.tarstream import Member, gunzip, members

# 1980-01-01T00:00:00Z, the floor of zip timestamps; used when SOURCE_DATE_EPOCH is not set.
DEFAULT_MTIME = 315532800


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what we unpack; helm 3.17+ uses the same defaults."""

    max_file_bytes: int = 5 * 1024 * 1024
    """Largest single decompressed member, in bytes."""
    max_total_bytes: int = 100 * 1024 * 1024
    """Largest decompressed chart, in bytes."""
    max_members: int = 20_000
    """Most tar members in one archive."""


@dataclass(frozen=True)
class ChartArchive:
    """What we learned from reading an archive: its metadata, digest and (optionally) files."""

    path: Path
    metadata: ChartMetadata
    digest: str
    base: str
    files: dict[str, bytes] = field(default_factory=dict)


def _check_member(member: Member, name: str) -> str:
    """Return the normalized member path, or raise if it could escape or is not a plain file."""
    raw = member.name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchiveError(f"{name}: member {member.name!r} has an absolute path")
    if ".." in raw.split("/"):
        raise UnsafeArchiveError(f"{name}: member {member.name!r} references the parent directory")
    if member.is_link:
        raise UnsafeArchiveError(
            f"{name}: member {member.name!r} is a link to {member.linkname!r}; links are refused"
        )
    if not (member.is_file or member.is_dir):
        raise UnsafeArchiveError(f"{name}: member {member.name!r} is not a regular file")
    clean = posixpath.normpath(raw)
    if clean in (".", ""):
        raise UnsafeArchiveError(f"{name}: member {member.name!r} lies outside the base directory")
    return clean


def read_archive(
    data: bytes,
    name: str,
    limits: ArchiveLimits = ArchiveLimits(),
    keep_files: bool = False,
) -> tuple[ChartMetadata, str, dict[str, bytes]]:
    """Validate every member and parse ``<base>/Chart.yaml``; return metadata, base and files.

    ``files`` (paths without the base directory) is filled only with ``keep_files``, because
    indexing thousands of archives needs only Chart.yaml.
    """
    files: dict[str, bytes] = {}
    chart_yaml: bytes | None = None
    requirements: bytes | None = None
    base: str | None = None
    total = 0
    # Headers and padding cost at most 2 KiB per member on top of the content.
    tar = gunzip(data, limits.max_total_bytes + 2048 * limits.max_members, name)
    for count, member in enumerate(members(tar, name, limits.max_file_bytes), start=1):
        if count > limits.max_members:
            raise UnsafeArchiveError(f"{name}: more than {limits.max_members} members")
        path = _check_member(member, name)
        if not member.is_file:
            continue
        size = len(member.data)
        if size > limits.max_file_bytes:
            raise UnsafeArchiveError(
                f"{name}: member {member.name!r} is {size} bytes, over the "
                f"{limits.max_file_bytes}-byte limit per file"
            )
        total += size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"{name}: decompressed size exceeds {limits.max_total_bytes} bytes"
            )
        top, _, rest = path.partition("/")
        if base is None:
            base = top
        elif top != base:
            raise UnsafeArchiveError(
                f"{name}: member {member.name!r} lies outside base directory {base!r}"
            )
        if not rest:
            raise UnsafeArchiveError(f"{name}: file {member.name!r} outside a chart directory")
        if rest == "Chart.yaml":
            chart_yaml = member.data
        elif rest == "requirements.yaml":
            requirements = member.data
        if keep_files:
            files[rest] = member.data
    if chart_yaml is None or base is None:
        raise InvalidChartError(f"{name}: no Chart.yaml in the archive's base directory")
    metadata = load_strict(chart_yaml, f"{name}:{base}/Chart.yaml")
    if requirements is not None:
        path = f"{name}:{base}/requirements.yaml"
        metadata = merge_requirements(metadata, requirements, path)
        if metadata.errors:
            raise InvalidChartError("; ".join(str(f) for f in metadata.errors))
    return metadata, base, files


def load_archive(
    path: Path,
    limits: ArchiveLimits = ArchiveLimits(),
    keep_files: bool = False,
) -> ChartArchive:
    """Read an archive from disk, hashing the same bytes we parse."""
    data = path.read_bytes()
    metadata, base, files = read_archive(data, path.name, limits, keep_files)
    return ChartArchive(path, metadata, hashlib.sha256(data).hexdigest(), base, files)


def build_archive(files: Iterable[tuple[str, bytes]], mtime: int = DEFAULT_MTIME) -> bytes:
    """A byte-for-byte reproducible ``.tgz``: sorted members, fixed metadata, bare gzip header."""
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member_name, content in sorted(files):
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar_buffer.getvalue())
    return out.getvalue()
