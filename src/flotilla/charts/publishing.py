"""``flotilla charts publish``: decide what to add to a pages branch, then do it with git.

:func:`plan_publish` is the pure decision (what is new, what is already there, what conflicts).
:func:`publish` drives the adapters: package, fetch the branch, plan, write, commit, push; on a
lost push race it fetches again and re-plans on top of the new branch, so a concurrent publisher's
entries are merged, never dropped.
"""

from __future__ import annotations

import hashlib
import logging
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flotilla.charts import index as idx
from flotilla.charts.archives import ArchiveLimits, read_archive
from flotilla.charts.bounded import MAX_INDEX_BYTES, read_bounded
from flotilla.charts.chartfile import ChartMetadata
from flotilla.charts.errors import ChartError, DuplicateVersionError, PublishConflictError
from flotilla.charts.existing import Layout, fetch, locate, same_chart
from flotilla.charts.gitpages import PagesCheckout
from flotilla.charts.linting import package_checked
from flotilla.charts.packaging import PackageOptions, write_atomic
from flotilla.charts.pages import PAGE_MARKER, check_artifacthub_repo, render_html
from flotilla.charts.provenance import SigningKey, provenance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """A packaged chart that may need publishing."""

    metadata: ChartMetadata
    data: bytes
    source: Path

    @property
    def archive_name(self) -> str:
        return self.metadata.archive_name

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def key(self) -> tuple[str, str]:
        return (self.metadata.name, self.metadata.version)


@dataclass(frozen=True)
class PublishPlan:
    """What a publish run will do to the branch."""

    add: list[Candidate] = field(default_factory=list)
    unchanged: list[Candidate] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Versions already in the index that ``skip_existing`` left alone, each with why."""


def plan_publish(
    published: idx.Index,
    candidates: list[Candidate],
    published_files: Mapping[str, dict[str, bytes] | str],
    limits: ArchiveLimits = ArchiveLimits(),  # noqa: B008
    skip_existing: bool = False,
) -> PublishPlan:
    """Split candidates into new, already published, skipped and conflicting.

    A digest match means published. Otherwise ``published_files[archive_name]`` holds the
    branch's archive unpacked (or why it could not be read): the same chart there (see
    :func:`flotilla.charts.existing.same_chart`) counts as published too. Anything else is a
    conflict, or with ``skip_existing`` a reported skip; the existing entry is never touched.
    """
    plan = PublishPlan()
    for c in candidates:
        existing = published.get(*c.key)
        if existing is None:
            plan.add.append(c)
            continue
        if existing.digest == c.digest:
            plan.unchanged.append(c)
            continue
        old_files = published_files.get(c.archive_name, "the published archive was not found")
        if isinstance(old_files, dict):
            _, _, new_files = read_archive(c.data, c.archive_name, limits, keep_files=True)
            if same_chart(new_files, old_files, limits):
                plan.unchanged.append(c)
                continue
            why = "its content differs from this build"
        else:
            why = f"it could not be compared: {old_files}"
        what = (
            f"{c.metadata.name} {c.metadata.version} (from {c.source}) is already published "
            f"with digest {existing.digest[:12]}…, this build has {c.digest[:12]}… and {why}"
        )
        if skip_existing:
            plan.skipped.append(f"{what}; the published entry is kept as it is")
        else:
            plan.conflicts.append(
                f"{what}; published versions are never overwritten: bump the chart version, "
                f"or pass --skip-existing to keep the published one and go on"
            )
    return plan


@dataclass(frozen=True)
class PublishOptions:
    """Everything a publish needs besides the charts."""

    repo: str
    """Git repository holding the pages branch: a local path or a URL git can push to."""
    pages_url: str
    """Public URL of the pages site; archive URLs in index.yaml start with it."""
    branch: str = "gh-pages"
    sign: SigningKey | None = None
    artifacthub_repo: Path | None = None
    """An artifacthub-repo.yml to publish next to index.yaml."""
    title: str = "Helm chart repository"
    max_attempts: int = 5
    """Push attempts before giving up when other publishers keep winning the race."""
    package: PackageOptions = field(default_factory=PackageOptions)
    before_push: Callable[[int], None] | None = None
    """Test hook: called with the attempt number just before each push."""
    skip_existing: bool = False
    """Leave versions already in the index alone even when their content differs (reported)."""
    layout: Layout = field(default_factory=Layout)
    fetch_remote: bool = True
    """Download archives the index points at outside the branch (GitHub Releases) to compare."""


@dataclass(frozen=True)
class PublishResult:
    """What happened, for the CLI to report."""

    published: list[str]
    unchanged: list[str]
    attempts: int
    pushed: bool
    skipped: list[str] = field(default_factory=list)


def find_chart_dirs(charts_dir: Path) -> list[Path]:
    """The chart itself when ``charts_dir`` is one, else every direct child holding Chart.yaml."""
    if (charts_dir / "Chart.yaml").is_file():
        return [charts_dir]
    return sorted(p for p in charts_dir.iterdir() if (p / "Chart.yaml").is_file())


def package_all(chart_dirs: list[Path], options: PackageOptions) -> list[Candidate]:
    """Package every chart or raise one error listing every broken chart; nothing partial."""
    candidates: list[Candidate] = []
    errors: list[str] = []
    for d in chart_dirs:
        try:
            packaged = package_checked(d, options)
        except ChartError as e:
            errors.append(f"{d}: {e}")
            continue
        candidates.append(Candidate(packaged.metadata, packaged.data, d))
    if errors:
        raise ChartError("nothing published; fix these charts first:\n  " + "\n  ".join(errors))
    seen: dict[tuple[str, str], Path] = {}
    for c in candidates:
        if c.key in seen:
            raise DuplicateVersionError(
                f"duplicate version: {c.key[0]} {c.key[1]} comes from both {seen[c.key]} and "
                f"{c.source}"
            )
        seen[c.key] = c.source
    return candidates


def _published_files(
    tree: Path, published: idx.Index, candidates: list[Candidate], options: PublishOptions
) -> dict[str, dict[str, bytes] | str]:
    """The published archive, unpacked, of each candidate whose digest differs from our build."""
    limits = options.package.limits
    found: dict[str, dict[str, bytes] | str] = {}
    for c in candidates:
        existing = published.get(*c.key)
        if existing is None or existing.digest == c.digest:
            continue
        where = locate(existing, tree, options.layout, options.pages_url)
        try:
            if where is None:
                raise ChartError(f"no archive on {options.branch} for {existing.urls}")
            if isinstance(where, str):
                if not options.fetch_remote:
                    raise ChartError(f"{where} is not on {options.branch}")
                data = fetch(where, limits.max_total_bytes)
            else:
                data = read_bounded(where, limits.max_total_bytes, "archive")
            found[c.archive_name] = read_archive(data, c.archive_name, limits, keep_files=True)[2]
        except ChartError as e:
            found[c.archive_name] = str(e)
    return found


def _owns_pages(tree: Path, directory: Path, existed: bool) -> bool:
    """Whether index.html is ours to write: a new branch, our own page, or no page at all."""
    page = directory / "index.html"
    if not existed:
        return True
    if page.is_file():
        text = page.read_text(errors="replace")
        # pages written before the marker existed end with this line
        return PAGE_MARKER in text or '<p>Index: <a href="index.yaml">index.yaml</a></p>' in text
    return not any((directory / name).exists() for name in ("index.md", "README.md", "_config.yml"))


def _write_branch(
    tree: Path,
    published: idx.Index,
    plan: PublishPlan,
    options: PublishOptions,
    provs: Mapping[str, str],
    existed: bool,
) -> None:
    now = idx.timestamp()
    layout = options.layout
    new_entries = [
        idx.new_entry(
            c.metadata, c.digest, layout.archive_url(options.pages_url, c.archive_name), now
        )
        for c in plan.add
    ]
    index = idx.add_entries(published, new_entries, now) if plan.add else published
    for c in plan.add:
        target = tree / layout.archive_path(c.archive_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, c.data)
        if c.archive_name in provs:
            write_atomic(target.with_name(f"{c.archive_name}.prov"), provs[c.archive_name].encode())
    index_file = tree / layout.index_path
    index_file.parent.mkdir(parents=True, exist_ok=True)
    if plan.add or not index_file.exists():
        if not index.generated:
            index.generated = now
        write_atomic(index_file, idx.dump(index).encode())
    if _owns_pages(tree, index_file.parent, existed):
        page = render_html(index, options.pages_url, options.title)
        write_atomic(index_file.parent / "index.html", page.encode())
        if not existed or index_file.parent == tree:
            (tree / ".nojekyll").touch()
    if options.artifacthub_repo is not None:
        raw = options.artifacthub_repo.read_bytes()
        write_atomic(
            index_file.parent / "artifacthub-repo.yml",
            check_artifacthub_repo(raw, str(options.artifacthub_repo)),
        )


def publish(charts_dir: Path, options: PublishOptions) -> PublishResult:
    """Publish every chart under ``charts_dir`` whose version is not on the pages branch yet."""
    chart_dirs = find_chart_dirs(charts_dir)
    if not chart_dirs:
        raise ChartError(f"{charts_dir}: no Chart.yaml there or in its direct subdirectories")
    candidates = package_all(chart_dirs, options.package)
    if options.artifacthub_repo is not None:
        if not options.artifacthub_repo.is_file():
            raise ChartError(f"--artifacthub-repo {options.artifacthub_repo}: no such file")
        check_artifacthub_repo(options.artifacthub_repo.read_bytes(), str(options.artifacthub_repo))
    provs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="flotilla-pages-") as tmp:
        tree = Path(tmp) / "pages"
        checkout = PagesCheckout(options.repo, options.branch, tree)
        for attempt in range(1, options.max_attempts + 1):
            existed = checkout.sync()
            index_file = tree / options.layout.index_path
            published = (
                idx.load(
                    read_bounded(index_file, MAX_INDEX_BYTES, "index"),
                    f"{options.branch}:{options.layout.index_path}",
                )
                if index_file.exists()
                else idx.Index()
            )
            plan = plan_publish(
                published,
                candidates,
                _published_files(tree, published, candidates, options),
                options.package.limits,
                options.skip_existing,
            )
            if plan.conflicts:
                raise PublishConflictError("\n".join(plan.conflicts))
            if options.sign is not None:
                for c in plan.add:
                    if c.archive_name not in provs:
                        provs[c.archive_name] = provenance(
                            c.metadata.fields, c.archive_name, c.data, options.sign
                        )
            _write_branch(tree, published, plan, options, provs, existed)
            added = [f"{c.metadata.name}-{c.metadata.version}" for c in plan.add]
            unchanged = [f"{c.metadata.name}-{c.metadata.version}" for c in plan.unchanged]
            message = ("Publish " + ", ".join(added)) if added else "Update repository pages"
            if not checkout.commit(message):
                return PublishResult([], unchanged, attempt, pushed=False, skipped=plan.skipped)
            if options.before_push is not None:
                options.before_push(attempt)
            if checkout.push():
                logger.info("published %s to %s", added or "pages", options.branch)
                return PublishResult(added, unchanged, attempt, True, plan.skipped)
            time.sleep(min(0.2 * 2**attempt, 5.0) * random.uniform(0.5, 1.5))
    raise ChartError(
        f"gave up after {options.max_attempts} attempts: other publishers kept pushing to "
        f"{options.branch}; nothing of this run was lost, re-run to publish"
    )
