"""``flotilla charts``: lint, package, index and publish Helm chart repositories.

The entry point reads flags and builds the option dataclasses; file-system errors become
:class:`ChartError`, which ``flotilla.core.cli`` shows as a message and exit status 1. Each
command imports what it runs inside its function, so ``--help`` and a lint of one chart don't pay
for YAML emitting, git, gpg or archives they never touch (start-up is most of a per-chart lint).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from flotilla.charts.errors import ChartError
from flotilla.core.cli import system_app

if TYPE_CHECKING:
    from flotilla.charts.provenance import SigningKey

app = system_app("Helm chart repositories: lint, package, index, publish to GitHub Pages.")

F = TypeVar("F", bound=Callable[..., Any])


def _os_errors_as_chart_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSError as e:  # flotilla.cli shows ChartError as "Error: ..." and exit 1
            raise ChartError(f"{e.filename or ''}: {e.strerror or e}") from e

    return wrapper  # type: ignore[return-value]


def _signing_key(
    sign: bool, key: str | None, keyring: Path | None, passphrase_file: Path | None
) -> SigningKey | None:
    if not sign:
        return None
    if not key:
        raise ChartError("--sign needs --key NAME (user id, e-mail or fingerprint)")
    from flotilla.charts.provenance import SigningKey

    return SigningKey(key, keyring, passphrase_file)


SIGN = typer.Option(False, "--sign", help="Write a .prov provenance file next to each archive.")
KEY = typer.Option(None, "--key", help="GnuPG key (user id, e-mail or fingerprint) to sign with.")
KEYRING = typer.Option(None, "--keyring", help="Secret keyring file; default: $GNUPGHOME.")
PASSPHRASE = typer.Option(None, "--passphrase-file", help="File holding the key's passphrase.")
DIRS = typer.Argument(..., help="Chart directories.")
STRICT = typer.Option(False, "--strict", help="Fail on warnings too.")
DESTINATION = typer.Option(Path("."), "-d", "--destination", help="Output directory.")
ARCHIVE_DIR = typer.Argument(..., help="Directory of chart archives.")
INDEX_URL = typer.Option("", "--url", help="Repository URL; archive URLs are relative to it.")
MERGE = typer.Option(None, "--merge", help="Existing index to merge into.")
SKIP_INVALID = typer.Option(
    False, "--skip-invalid", help="Index the good archives even when some are bad."
)
CHARTS_DIR = typer.Argument(..., help="A chart, or a directory of charts.")
REPO = typer.Option(..., "--repo", help="Git repository (path or URL) to push to.")
PAGES_URL = typer.Option(..., "--url", help="Public URL of the pages site.")
BRANCH = typer.Option("gh-pages", "--branch", help="Pages branch; created if absent.")
ARTIFACTHUB = typer.Option(
    None, "--artifacthub-repo", help="artifacthub-repo.yml to publish next to index.yaml."
)
TITLE = typer.Option("Helm chart repository", "--title", help="Title of index.html.")
SKIP_EXISTING = typer.Option(
    False,
    "--skip-existing",
    "--adopt",
    help="Keep versions already in the index as they are, even if this build differs (reported).",
)
INDEX_PATH = typer.Option(
    "index.yaml", "--index-path", help="Path of index.yaml in the branch (--url is its directory)."
)
PACKAGES_DIR = typer.Option(
    "", "--packages-dir", help="Directory for new archives, relative to the index's directory."
)
DEPS = typer.Option(
    False, "--deps", help="Fetch remote dependencies into charts/ first (like `charts deps`)."
)
NO_FETCH = typer.Option(
    False, "--no-fetch", help="Never download published archives (GitHub Releases) to compare."
)


@app.command("lint")
@_os_errors_as_chart_errors
def lint_cmd(
    dirs: list[Path] = DIRS,
    strict: bool = STRICT,
) -> None:
    """Check Chart.yaml and the chart layout the way `helm lint` does."""
    from flotilla.charts.chartfile import Severity
    from flotilla.charts.linting import lint_directory

    failed = False
    for d in dirs:
        findings = lint_directory(d)
        for f in findings:
            color = {Severity.ERROR: typer.colors.RED, Severity.WARNING: typer.colors.YELLOW}.get(
                f.severity
            )
            typer.secho(str(f), fg=color)
        worst = max((f.severity for f in findings), default=Severity.INFO)
        bad = worst is Severity.ERROR or (strict and worst is Severity.WARNING)
        failed = failed or bad
        typer.echo(f"{d}: {'FAILED' if bad else 'ok'}")
    if failed:
        raise typer.Exit(1)


@app.command("package")
@_os_errors_as_chart_errors
def package_cmd(
    dirs: list[Path] = DIRS,
    destination: Path = DESTINATION,
    sign: bool = SIGN,
    key: str | None = KEY,
    keyring: Path | None = KEYRING,
    passphrase_file: Path | None = PASSPHRASE,
) -> None:
    """Build reproducible `<name>-<version>.tgz` archives (and `.prov` files with --sign)."""
    from flotilla.charts.linting import package_checked
    from flotilla.charts.packaging import PackageOptions, default_mtime, write_atomic
    from flotilla.charts.provenance import provenance

    signing = _signing_key(sign, key, keyring, passphrase_file)
    options = PackageOptions(mtime=default_mtime())
    for d in dirs:
        packaged = package_checked(d, options)  # the same checks as lint; refuses what fails
        destination.mkdir(parents=True, exist_ok=True)
        archive = destination / packaged.metadata.archive_name
        write_atomic(archive, packaged.data)
        typer.echo(f"packaged {archive}")
        if signing is not None:
            prov = archive.with_name(archive.name + ".prov")
            prov.write_text(
                provenance(packaged.metadata.fields, archive.name, packaged.data, signing)
            )
            typer.echo(f"signed {prov}")


@app.command("index")
@_os_errors_as_chart_errors
def index_cmd(
    directory: Path = ARCHIVE_DIR,
    url: str = INDEX_URL,
    merge: Path | None = MERGE,
    skip_invalid: bool = SKIP_INVALID,
) -> None:
    """Write DIR/index.yaml like `helm repo index`, keeping `created` of unchanged charts."""
    from flotilla.charts.indexing import index_directory

    if not directory.is_dir():
        raise ChartError(f"{directory} is not a directory")
    index, skipped = index_directory(directory, url, merge, skip_invalid)
    for message in skipped:
        typer.secho(f"skipped: {message}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"wrote {directory / 'index.yaml'}: {len(index)} versions of {len(index.entries)} charts"
    )


@app.command("publish")
@_os_errors_as_chart_errors
def publish_cmd(
    charts_dir: Path = CHARTS_DIR,
    repo: str = REPO,
    url: str = PAGES_URL,
    branch: str = BRANCH,
    artifacthub_repo: Path | None = ARTIFACTHUB,
    title: str = TITLE,
    sign: bool = SIGN,
    key: str | None = KEY,
    keyring: Path | None = KEYRING,
    passphrase_file: Path | None = PASSPHRASE,
    skip_existing: bool = SKIP_EXISTING,
    deps: bool = DEPS,
    index_path: str = INDEX_PATH,
    packages_dir: str = PACKAGES_DIR,
    no_fetch: bool = NO_FETCH,
) -> None:
    """Package unpublished chart versions; push them and the merged index to the pages branch."""
    from flotilla.charts.existing import Layout
    from flotilla.charts.packaging import PackageOptions, default_mtime
    from flotilla.charts.publishing import PublishOptions, find_chart_dirs, publish

    if deps:
        from flotilla.charts.deps import build_dependencies

        for chart in find_chart_dirs(charts_dir):
            for got in build_dependencies(chart):
                typer.echo(f"fetched {got.archive} from {got.repository}")

    options = PublishOptions(
        repo=repo,
        pages_url=url,
        branch=branch,
        artifacthub_repo=artifacthub_repo,
        title=title,
        sign=_signing_key(sign, key, keyring, passphrase_file),
        package=PackageOptions(mtime=default_mtime()),
        skip_existing=skip_existing,
        layout=Layout(index_path.strip("/"), packages_dir.strip("/")),
        fetch_remote=not no_fetch,
    )
    from flotilla.core.progress import activity

    with activity(f"publishing {charts_dir} to {repo} ({branch})"):
        result = publish(charts_dir, options)
    for message in result.skipped:
        typer.secho(f"skipped: {message}", fg=typer.colors.YELLOW)
    for name in result.unchanged:
        typer.echo(f"already published: {name}")
    for name in result.published:
        typer.echo(f"published: {name}")
    if not result.published:
        typer.echo("nothing new to publish" + ("" if result.pushed else "; branch unchanged"))


@app.command("deps")
@_os_errors_as_chart_errors
def deps_cmd(dirs: list[Path] = DIRS) -> None:
    """Fetch remote dependencies (HTTP repos, oci://) into charts/; honour and write the lock."""
    from flotilla.charts.deps import build_dependencies

    for d in dirs:
        fetched = build_dependencies(d)
        for got in fetched:
            typer.echo(f"fetched {got.archive} from {got.repository}")
        if not fetched:
            typer.echo(f"{d}: no remote dependencies")


PUSH_ARCHIVE = typer.Argument(..., help="Chart archive (.tgz).")
PUSH_REMOTE = typer.Argument(..., help="oci://REGISTRY/PATH")
PLAIN_HTTP = typer.Option(
    False, "--plain-http", help="Speak HTTP (default only for localhost and 127.0.0.1)."
)


@app.command("push")
@_os_errors_as_chart_errors
def push_cmd(
    archive: Path = PUSH_ARCHIVE,
    remote: str = PUSH_REMOTE,
    plain_http: bool = PLAIN_HTTP,
) -> None:
    """Push an archive to an OCI registry as `helm push` does."""
    from flotilla.charts.archives import load_archive
    from flotilla.charts.oci import Reference, Registry, tag_of

    ref = Reference.parse(remote)
    loaded = load_archive(archive)
    meta = loaded.metadata
    registry = Registry(ref.host, plain_http or None)
    try:
        digest = registry.push_chart(
            ref.repository(meta.name), meta.version, archive.read_bytes(), meta.fields
        )
    finally:
        registry.close()
    typer.echo(f"pushed {remote.rstrip('/')}/{meta.name}:{tag_of(meta.version)} ({digest})")
