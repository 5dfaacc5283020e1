"""Taking over pages branches built by helm and chart-releaser: --skip-existing/--adopt,
index-only layouts with GitHub Releases URLs, --index-path/--packages-dir, push errors."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from chart_factory import simple_chart, write
from charts_support import Helm
from test_charts_publish import URL, branch_file, commits, git, remote  # noqa: F401
from typer.testing import CliRunner

from flotilla.charts import index as idx
from flotilla.charts.cli import app
from flotilla.charts.errors import GitError, PublishConflictError
from flotilla.charts.existing import Layout
from flotilla.charts.publishing import PublishOptions, publish

runner = CliRunner()


def push_branch(bare: Path, files: Path, branch: str = "gh-pages") -> None:
    """Commit the contents of ``files`` as ``branch`` of ``bare``, as another tool would."""
    work = files.parent / f"{files.name}-work"
    shutil.copytree(files, work)
    git("init", "-q", "-b", branch, str(work))
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "theirs", cwd=work)
    git("push", "-q", "-f", str(bare), branch, cwd=work)


def charts_v1(root: Path) -> Path:
    simple_chart(root, "alpha", "1.0.0", "first")
    simple_chart(root, "beta", "0.1.0", "second")
    return root


def helm_repo(helm: Helm, charts: Path, out: Path, url: str) -> Path:
    """What `helm package` + `helm repo index --url` leave for gh-pages."""
    out.mkdir(parents=True, exist_ok=True)
    for chart in sorted(p for p in charts.iterdir() if (p / "Chart.yaml").is_file()):
        helm.run("package", str(chart), "-d", str(out))
    helm.run("repo", "index", str(out), "--url", url)
    return out


def entries(index_text: str) -> dict[tuple[str, str], dict[str, object]]:
    index = idx.load(index_text.encode())
    return {(e.name, e.version): dict(e.data) for e in index.all_versions()}


def test_adopts_a_helm_built_branch(tmp_path: Path, remote: Path, helm: Helm) -> None:  # noqa: F811
    charts = charts_v1(tmp_path / "charts")
    push_branch(remote, helm_repo(helm, charts, tmp_path / "theirs", URL))
    before = entries(branch_file(remote, "index.yaml"))
    simple_chart(charts, "gamma", "2.0.0", "new")
    result = publish(charts, PublishOptions(repo=str(remote), pages_url=URL))
    assert result.published == ["gamma-2.0.0"]
    assert sorted(result.unchanged) == ["alpha-1.0.0", "beta-0.1.0"] and result.skipped == []
    after = entries(branch_file(remote, "index.yaml"))
    assert {k: after[k] for k in before} == before, "helm's entries must stay verbatim"
    assert after[("gamma", "2.0.0")]["urls"] == [f"{URL}/gamma-2.0.0.tgz"]


def releases_layout(helm: Helm, charts: Path, tmp_path: Path, serve: Callable[[Path], str]) -> str:
    """chart-releaser's default: archives on GitHub Releases, only index.yaml on the branch."""
    releases = tmp_path / "releases"
    packaged = tmp_path / "packaged"
    helm_repo(helm, charts, packaged, "")
    base = serve(releases)
    pages = tmp_path / "pages"
    pages.mkdir()
    index = idx.load((packaged / "index.yaml").read_bytes())
    for entry in index.all_versions():
        tag = f"{entry.name}-{entry.version}"
        (releases / tag).mkdir(parents=True)
        shutil.copy(packaged / f"{tag}.tgz", releases / tag / f"{tag}.tgz")
        entry.data["urls"] = [f"{base}/{tag}/{tag}.tgz"]  # type: ignore[index]
    (pages / "index.yaml").write_text(idx.dump(index))
    (pages / "README.md").write_text("# my charts\n")
    return base


def test_adopts_chart_releaser_index_only_layout(
    tmp_path: Path,
    remote: Path,  # noqa: F811
    helm: Helm,
    serve: Callable[[Path], str],
) -> None:
    charts = charts_v1(tmp_path / "charts")
    base = releases_layout(helm, charts, tmp_path, serve)
    push_branch(remote, tmp_path / "pages")
    before = entries(branch_file(remote, "index.yaml"))
    write(charts / "alpha" / "Chart.yaml", 'apiVersion: v2\nname: alpha\nversion: "1.1.0"\n')
    result = publish(charts, PublishOptions(repo=str(remote), pages_url=URL))
    assert result.published == ["alpha-1.1.0"] and result.unchanged == ["beta-0.1.0"]
    after = entries(branch_file(remote, "index.yaml"))
    assert after[("alpha", "1.0.0")] == before[("alpha", "1.0.0")]
    assert after[("alpha", "1.0.0")]["urls"] == [f"{base}/alpha-1.0.0/alpha-1.0.0.tgz"]
    files = git("--git-dir", str(remote), "ls-tree", "--name-only", "gh-pages").split()
    assert "alpha-1.1.0.tgz" in files and "beta-0.1.0.tgz" not in files
    assert "index.html" not in files and ".nojekyll" not in files, "their Jekyll site stays"


def test_different_content_refused_unless_skip_existing(
    tmp_path: Path,
    remote: Path,  # noqa: F811
    helm: Helm,
    serve: Callable[[Path], str],
) -> None:
    charts = charts_v1(tmp_path / "charts")
    releases_layout(helm, charts, tmp_path, serve)
    push_branch(remote, tmp_path / "pages")
    write(charts / "beta" / "templates" / "extra.yaml", "apiVersion: v1\nkind: Secret\n")
    simple_chart(charts, "gamma", "2.0.0")
    options = PublishOptions(repo=str(remote), pages_url=URL)
    with pytest.raises(PublishConflictError, match=r"beta 0\.1\.0 .* content differs") as e:
        publish(charts, options)
    assert "--skip-existing" in str(e.value) and commits(remote) == 1
    before = branch_file(remote, "index.yaml")
    cli = runner.invoke(
        app, ["publish", str(charts), "--repo", str(remote), "--url", URL, "--skip-existing"]
    )
    assert cli.exit_code == 0, cli.output
    assert "skipped: beta 0.1.0" in cli.output and "published: gamma-2.0.0" in cli.output
    after = entries(branch_file(remote, "index.yaml"))
    assert after[("beta", "0.1.0")] == entries(before)[("beta", "0.1.0")]


def test_unreachable_release_asset(tmp_path: Path, remote: Path) -> None:  # noqa: F811
    charts = charts_v1(tmp_path / "charts")
    pages = tmp_path / "pages"
    index = idx.Index(generated="2020-01-01T00:00:00Z")
    index.entries["alpha"] = [
        idx.ChartVersion(
            {
                "apiVersion": "v2",
                "name": "alpha",
                "version": "1.0.0",
                "digest": "0" * 64,
                "created": "2020-01-01T00:00:00Z",
                "urls": ["http://127.0.0.1:9/alpha-1.0.0/alpha-1.0.0.tgz"],
            }
        )
    ]
    write(pages / "index.yaml", idx.dump(index))
    push_branch(remote, pages)
    options = PublishOptions(repo=str(remote), pages_url=URL)
    with pytest.raises(PublishConflictError, match=r"could not be compared: http://127\.0\.0\.1:9"):
        publish(charts, options)
    result = publish(charts, PublishOptions(repo=str(remote), pages_url=URL, skip_existing=True))
    assert result.published == ["beta-0.1.0"] and len(result.skipped) == 1


def test_index_path_and_packages_dir(
    tmp_path: Path,
    remote: Path,  # noqa: F811
    helm: Helm,
    serve: Callable[[Path], str],
) -> None:
    charts = charts_v1(tmp_path / "charts")
    site = tmp_path / "site"
    write(site / "index.html", "<h1>My project</h1>\n")
    push_branch(remote, site)
    export = tmp_path / "export"
    base = serve(export)
    url = f"{base}/helm"
    cli = runner.invoke(
        app,
        [
            *("publish", str(charts), "--repo", str(remote), "--url", url),
            *("--index-path", "helm/index.yaml", "--packages-dir", "packages"),
        ],
    )
    assert cli.exit_code == 0, cli.output
    files = git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "gh-pages").split()
    assert {"helm/index.yaml", "helm/packages/alpha-1.0.0.tgz", "index.html"} <= set(files)
    assert branch_file(remote, "index.html") == "<h1>My project</h1>\n"
    export.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", str(remote), "archive", "gh-pages"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(export)], input=archive, check=True)
    helm.run("repo", "add", "mine", url)
    (tmp_path / "pulled").mkdir()
    helm.run("pull", "mine/alpha", "--version", "1.0.0", "-d", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled" / "alpha-1.0.0.tgz").is_file()
    with pytest.raises(Exception, match="relative path inside the branch"):
        Layout("../index.yaml")


def test_push_refused_by_a_hook_shows_the_server_message(
    tmp_path: Path,
    remote: Path,  # noqa: F811
) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: gh-pages is frozen until Monday' >&2\nexit 1\n")
    hook.chmod(0o755)
    attempts: list[int] = []
    options = PublishOptions(repo=str(remote), pages_url=URL, before_push=attempts.append)
    with pytest.raises(GitError, match="policy: gh-pages is frozen until Monday") as e:
        publish(charts_v1(tmp_path / "charts"), options)
    assert "pre-receive hook declined" in str(e.value)
    assert "other publishers" not in str(e.value) and attempts == [1]
