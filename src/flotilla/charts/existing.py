"""Versions already on a pages branch: where their archive is, and whether ours is the same chart.

Repositories built by ``helm repo index`` or chart-releaser hold archives that differ from ours
byte for byte (helm re-marshals Chart.yaml, stamps mtimes, uses another zlib), and
chart-releaser's default layout keeps no archive on the branch at all: the index points at
GitHub Releases. So "already published" is decided on content: the same files, Chart.yaml
compared as parsed metadata and vendored subchart archives compared by their content in turn.
"""

from __future__ import annotations

import posixpath
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flotilla.charts import index as idx
from flotilla.charts.archives import ArchiveLimits, read_archive
from flotilla.charts.chartfile import parse_chart_yaml
from flotilla.charts.errors import ChartError, InvalidChartError

FETCH_TIMEOUT_S = 30
MAX_NESTING = 4


@dataclass(frozen=True)
class Layout:
    """Where index.yaml and new archives go on the branch."""

    index_path: str = "index.yaml"
    """Path of index.yaml in the branch; the repository URL (``--url``) is its directory."""
    packages_dir: str = ""
    """Directory for new archives, relative to the index's directory."""

    def __post_init__(self) -> None:
        for value in (self.index_path, self.packages_dir):
            parts = value.split("/")
            if value.startswith("/") or ".." in parts or "\\" in value or ".git" in parts:
                raise ChartError(f"{value!r}: must be a relative path inside the branch")
        if not self.index_path.endswith((".yaml", ".yml", ".json")):
            raise ChartError(f"--index-path {self.index_path!r}: must name a .yaml file")

    @property
    def index_dir(self) -> str:
        return posixpath.dirname(self.index_path)

    def archive_path(self, archive_name: str) -> str:
        """Path of a new archive in the branch."""
        return posixpath.join(self.index_dir, self.packages_dir, archive_name)

    def archive_url(self, pages_url: str, archive_name: str) -> str:
        return idx.url_join(pages_url, self.packages_dir, archive_name)


def locate(
    entry: idx.ChartVersion, tree: Path, layout: Layout, pages_url: str
) -> Path | str | None:
    """The branch file an entry's URL names, or the URL itself when it is elsewhere, or None."""
    base = pages_url.rstrip("/") + "/"
    remote: str | None = None
    for url in entry.urls:
        if "://" not in url:
            rel = url.split("?", 1)[0]
        elif url.startswith(base):
            rel = url[len(base) :]
        else:
            remote = remote or url
            continue
        clean = posixpath.normpath(posixpath.join(layout.index_dir, rel))
        if clean.startswith(("../", "/")) or clean == "..":
            continue
        path = tree / clean
        if path.is_file() and not path.is_symlink():
            return path
    return remote


def fetch(url: str, limit: int) -> bytes:
    """GET an archive over HTTP(S), at most ``limit`` bytes."""
    if not url.startswith(("https://", "http://")):
        raise ChartError(f"{url}: only http(s) URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": "flotilla-charts"})
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            data: bytes = response.read(limit + 1)
    except OSError as e:
        raise ChartError(f"{url}: {e}") from e
    if len(data) > limit:
        raise ChartError(f"{url}: larger than {limit} bytes")
    return data


def same_chart(
    ours: dict[str, bytes], theirs: dict[str, bytes], limits: ArchiveLimits, depth: int = 0
) -> bool:
    """True when two unpacked charts hold the same chart (see the module docstring)."""
    if ours.keys() != theirs.keys():
        return False
    for path, content in ours.items():
        other = theirs[path]
        if content == other:
            continue
        if path == "Chart.yaml":
            try:
                if parse_chart_yaml(content).fields != parse_chart_yaml(other).fields:
                    return False
            except InvalidChartError:
                return False
        elif path.startswith("charts/") and path.endswith(".tgz") and path.count("/") == 1:
            if depth >= MAX_NESTING:
                return False
            try:
                a = read_archive(content, path, limits, keep_files=True)[2]
                b = read_archive(other, path, limits, keep_files=True)[2]
            except ChartError:
                return False
            if not same_chart(a, b, limits, depth + 1):
                return False
        else:
            return False
    return True
