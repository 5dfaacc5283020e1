"""``flotilla charts index``: read a directory of archives and write its index.yaml.

The adapter around :mod:`flotilla.charts.index`: it finds archives exactly where ``helm repo
index`` looks (``DIR/*.tgz`` and one level below), reads them, and writes ``DIR/index.yaml``
atomically. Reading is serial on purpose: on the 2-core machines this runs on, a process pool
cost more in start-up and pickling than it saved (measured with bench/charts_index.py). A bad
archive is reported and, unless the caller asks to skip it, nothing is written: the old index
stays as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from flotilla.charts import index as idx
from flotilla.charts.archives import ArchiveLimits, load_archive
from flotilla.charts.bounded import MAX_INDEX_BYTES, read_bounded
from flotilla.charts.errors import ChartError
from flotilla.charts.packaging import write_atomic

logger = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """Entries for good archives and one message per bad one."""

    entries: list[idx.ChartVersion] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def find_archives(directory: Path) -> list[Path]:
    """``DIR/*.tgz`` and ``DIR/*/*.tgz`` (helm's ``**`` reaches exactly one level), sorted."""
    found = list(directory.glob("*.tgz")) + list(directory.glob("*/*.tgz"))
    return sorted(p for p in found if p.is_file() or p.is_symlink())


def _read_one(
    path: Path, directory: Path, base_url: str, limits: ArchiveLimits
) -> tuple[idx.ChartVersion | None, str]:
    if path.is_symlink():
        return None, f"{path}: is a symlink; archives must be regular files in the directory"
    try:
        archive = load_archive(path, limits)
    except (ChartError, OSError) as e:
        return None, str(e) if path.name in str(e) else f"{path}: {e}"
    rel = path.relative_to(directory).as_posix()
    return idx.new_entry(archive.metadata, archive.digest, idx.url_join(base_url, rel), ""), ""


def scan(
    directory: Path,
    base_url: str,
    limits: ArchiveLimits = ArchiveLimits(),  # noqa: B008
) -> ScanResult:
    """Read every archive under ``directory``; never raises for a single bad archive."""
    result = ScanResult()
    for path in find_archives(directory):
        entry, error = _read_one(path, directory, base_url, limits)
        if entry is None:
            result.errors.append(error)
        else:
            result.entries.append(entry)
    return result


def read_index_file(path: Path) -> idx.Index | None:
    """Load an index file, or None when it does not exist."""
    if not path.exists():
        return None
    return idx.load(read_bounded(path, MAX_INDEX_BYTES, "index"), str(path))


def index_directory(
    directory: Path,
    base_url: str,
    merge: Path | None = None,
    skip_invalid: bool = False,
    limits: ArchiveLimits = ArchiveLimits(),  # noqa: B008
) -> tuple[idx.Index, list[str]]:
    """Build and write ``directory/index.yaml``; return the index and the skipped errors.

    The existing ``directory/index.yaml`` (when present) lends ``created`` times to unchanged
    archives, so re-indexing the same files does not churn the index.
    """
    if merge is not None and not merge.is_file():
        raise ChartError(f"--merge {merge}: no such index file")
    result = scan(directory, base_url, limits)
    if result.errors and not skip_invalid:
        raise ChartError(
            "refusing to write the index; bad archives:\n  " + "\n  ".join(result.errors)
        )
    merged = read_index_file(merge) if merge is not None else None
    previous = read_index_file(directory / "index.yaml")
    index = idx.build_index(result.entries, idx.timestamp(), merged, previous)
    write_atomic(directory / "index.yaml", idx.dump(index).encode())
    logger.info("indexed %d chart versions in %s", len(index), directory)
    return index, result.errors
