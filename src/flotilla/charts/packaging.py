"""Package a chart directory into ``<name>-<version>.tgz`` with helm's layout, reproducibly.

The filesystem walk is the adapter; the file list it produces goes straight into
:func:`flotilla.charts.archives.build_archive`. Dependencies must be in ``charts/`` (as helm
package requires), except ``file://`` ones, which we package from their directory on the fly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from flotilla.charts.archives import DEFAULT_MTIME, ArchiveLimits, build_archive, read_archive
from flotilla.charts.bounded import MAX_CHART_FILE_BYTES, read_bounded
from flotilla.charts.chartfile import (
    MAX_CHART_YAML_BYTES,
    ChartMetadata,
    load_strict,
    merge_requirements,
    parse_chart_yaml,
)
from flotilla.charts.errors import InvalidChartError, MissingDependencyError
from flotilla.charts.helmignore import ignored, parse_rules

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageOptions:
    """How to build archives."""

    mtime: int = DEFAULT_MTIME
    """Seconds since the epoch stamped on every member; SOURCE_DATE_EPOCH overrides the default."""
    limits: ArchiveLimits = ArchiveLimits()  # noqa: RUF009 - frozen dataclass
    """Size limits, applied to the source files as well as to vendored archives."""


@dataclass(frozen=True)
class PackagedChart:
    """The result of packaging: metadata, the archive bytes and where they were written."""

    metadata: ChartMetadata
    data: bytes
    path: Path | None = None


def default_mtime() -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else a fixed date."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_MTIME


def read_metadata(chart_dir: Path) -> ChartMetadata:
    """Chart.yaml of a chart directory, with all findings (for lint)."""
    chart_yaml = chart_dir / "Chart.yaml"
    if chart_yaml.is_symlink() or not chart_yaml.is_file():
        raise InvalidChartError(f"{chart_dir}: no Chart.yaml (is this a chart directory?)")
    meta = parse_chart_yaml(
        read_bounded(chart_yaml, MAX_CHART_YAML_BYTES, "Chart.yaml"), str(chart_yaml)
    )
    requirements = chart_dir / "requirements.yaml"
    if requirements.is_file() and not requirements.is_symlink():
        raw = read_bounded(requirements, MAX_CHART_YAML_BYTES, "requirements.yaml")
        meta = merge_requirements(meta, raw, str(requirements))
    return meta


def collect_files(chart_dir: Path, limits: ArchiveLimits) -> list[tuple[str, bytes]]:
    """Every file helm would package, relative to the chart, honouring .helmignore."""
    ignore_file = chart_dir / ".helmignore"
    text = ""
    if ignore_file.is_file():
        text = read_bounded(ignore_file, MAX_CHART_FILE_BYTES, ".helmignore").decode(
            "utf-8", "replace"
        )
    rules = parse_rules(text, str(ignore_file))
    files: list[tuple[str, bytes]] = []
    total = 0
    for root, dirs, names in os.walk(chart_dir):
        rel_root = Path(root).relative_to(chart_dir).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        for d in list(dirs):
            if (Path(root) / d).is_symlink():
                raise InvalidChartError(
                    f"{Path(root) / d}: symlinked directories are not packaged; copy it instead"
                )
            if ignored(rules, rel_root + d, is_dir=True):
                dirs.remove(d)
        dirs.sort()
        for n in sorted(names):
            rel = rel_root + n
            full = Path(root) / n
            if ignored(rules, rel, is_dir=False):
                continue
            if full.is_symlink():
                raise InvalidChartError(
                    f"{full}: symlinks are not packaged (they can escape the chart); copy the file"
                )
            if not full.is_file():
                raise InvalidChartError(f"{full}: not a regular file")
            size = full.stat().st_size
            if size > limits.max_file_bytes:
                raise InvalidChartError(
                    f"{full}: {size} bytes is over the {limits.max_file_bytes}-byte limit per file"
                )
            total += size
            if total > limits.max_total_bytes:
                raise InvalidChartError(
                    f"{chart_dir}: chart exceeds {limits.max_total_bytes} bytes"
                )
            files.append((rel, full.read_bytes()))
    if not any(rel == "Chart.yaml" for rel, _ in files):
        raise InvalidChartError(f"{ignore_file}: excludes Chart.yaml; helm cannot package that")
    return files


def _vendored_names(files: list[tuple[str, bytes]], limits: ArchiveLimits) -> dict[str, str]:
    """Map subchart name -> path in charts/, for directories and archives alike."""
    found: dict[str, str] = {}
    for rel, content in files:
        if not rel.startswith("charts/"):
            continue
        parts = rel.split("/")
        if len(parts) == 2 and rel.endswith(".tgz"):
            meta, _, _ = read_archive(content, rel, limits)
            found[meta.name] = rel
        elif len(parts) == 3 and parts[2] == "Chart.yaml":
            found[load_strict(content, rel).name] = "/".join(parts[:2])
    return found


def _check_dependencies(
    chart_dir: Path,
    meta: ChartMetadata,
    files: list[tuple[str, bytes]],
    options: PackageOptions,
    seen: frozenset[Path],
) -> None:
    """Vendor ``file://`` dependencies; refuse when any other one is missing from charts/."""
    vendored = _vendored_names(files, options.limits)
    for dep in meta.dependencies:
        name = dep["name"]
        if name in vendored:
            continue
        repo = dep.get("repository", "")
        if repo.startswith("file://"):
            dep_dir = (chart_dir / repo.removeprefix("file://")).resolve()
            if dep_dir in seen:
                raise InvalidChartError(f"{chart_dir}: dependency cycle through {dep_dir}")
            sub = package_chart(dep_dir, options, seen | {dep_dir})
            files.append((f"charts/{sub.metadata.archive_name}", sub.data))
            vendored[name] = f"charts/{sub.metadata.archive_name}"
            continue
        raise MissingDependencyError(
            f"{chart_dir / 'Chart.yaml'}: dependencies: {name!r} is declared but missing from "
            f"charts/; run `helm dependency build {chart_dir}` first or use a file:// repository"
        )


def package_chart(
    chart_dir: Path,
    options: PackageOptions | None = None,
    seen: frozenset[Path] = frozenset(),
) -> PackagedChart:
    """Build the archive bytes for one chart directory; raises on any lint error."""
    options = options or PackageOptions(mtime=default_mtime())
    chart_dir = chart_dir.resolve()
    meta = read_metadata(chart_dir)
    if meta.errors:
        raise InvalidChartError("\n".join(str(f) for f in meta.errors))
    files = collect_files(chart_dir, options.limits)
    _check_dependencies(chart_dir, meta, files, options, seen | {chart_dir})
    members = [(f"{meta.name}/{rel}", content) for rel, content in files]
    return PackagedChart(meta, build_archive(members, options.mtime))


def write_package(
    chart_dir: Path, out_dir: Path, options: PackageOptions | None = None
) -> PackagedChart:
    """Package and write atomically to ``out_dir/<name>-<version>.tgz``."""
    packaged = package_chart(chart_dir, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / packaged.metadata.archive_name
    write_atomic(target, packaged.data)
    logger.info("packaged %s", target)
    return PackagedChart(packaged.metadata, packaged.data, target)


def write_atomic(target: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)
