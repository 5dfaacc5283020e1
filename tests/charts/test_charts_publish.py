"""publish against real git repositories: orphan branch, idempotency, conflicts, push races."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from chart_factory import simple_chart, webapp_chart, write

from flotilla.charts import index as idx
from flotilla.charts.errors import ChartError, PublishConflictError
from flotilla.charts.publishing import PublishOptions, publish

URL = "https://example.github.io/charts"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with a main branch, as on GitHub before the first publish."""
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("charts\n")
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "init", cwd=work)
    git("push", "-q", str(bare), "main", cwd=work)
    return bare


def branch_file(bare: Path, path: str, branch: str = "gh-pages") -> str:
    return git("--git-dir", str(bare), "show", f"{branch}:{path}")


def branch_index(bare: Path) -> idx.Index:
    return idx.load(branch_file(bare, "index.yaml").encode())


def commits(bare: Path, branch: str = "gh-pages") -> int:
    return int(git("--git-dir", str(bare), "rev-list", "--count", branch).strip())


def test_first_publish_creates_an_orphan_branch(tmp_path: Path, remote: Path) -> None:
    charts = tmp_path / "charts"
    webapp_chart(charts, version="1.0.0")
    result = publish(charts, PublishOptions(repo=str(remote), pages_url=URL))
    assert sorted(result.published) == ["common-0.3.0", "webapp-1.0.0"]
    files = set(git("--git-dir", str(remote), "ls-tree", "--name-only", "gh-pages").split())
    assert files == {
        ".nojekyll",
        "common-0.3.0.tgz",
        "index.html",
        "index.yaml",
        "webapp-1.0.0.tgz",
    }
    assert commits(remote) == 1, "gh-pages must not carry main's history"
    index = branch_index(remote)
    assert index.entries["webapp"][0].urls == [f"{URL}/webapp-1.0.0.tgz"]
    assert "helm repo add charts " + URL in branch_file(remote, "index.html")


def test_publish_is_idempotent(tmp_path: Path, remote: Path) -> None:
    charts = tmp_path / "charts"
    webapp_chart(charts)
    options = PublishOptions(repo=str(remote), pages_url=URL)
    publish(charts, options)
    before = branch_file(remote, "index.yaml")
    again = publish(charts, options)
    assert again.published == [] and not again.pushed
    assert sorted(again.unchanged) == ["common-0.3.0", "webapp-1.0.0"]
    assert branch_file(remote, "index.yaml") == before and commits(remote) == 1


def test_new_versions_are_added_and_nothing_is_dropped(tmp_path: Path, remote: Path) -> None:
    options = PublishOptions(repo=str(remote), pages_url=URL)
    publish(simple_chart(tmp_path / "v1", "app", "1.0.0"), options)
    first = branch_index(remote).get("app", "1.0.0")
    for version in ("1.1.0-rc.1", "1.1.0-rc.1+build.2", "1.1.0"):
        publish(simple_chart(tmp_path / version, "app", version), options)
    index = branch_index(remote)
    assert [e.version for e in index.entries["app"]] == [
        "1.1.0",
        "1.1.0-rc.1+build.2",
        "1.1.0-rc.1",
        "1.0.0",
    ]
    assert index.get("app", "1.0.0") == first, "existing entries are kept verbatim"
    assert commits(remote) == 4


def test_changed_content_for_a_published_version_is_refused(tmp_path: Path, remote: Path) -> None:
    options = PublishOptions(repo=str(remote), pages_url=URL)
    chart = simple_chart(tmp_path, "app", "1.0.0")
    publish(chart, options)
    before = branch_file(remote, "index.yaml")
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n"
    write(chart / "templates" / "extra.yaml", extra)
    with pytest.raises(PublishConflictError, match=r"app 1\.0\.0 .* already published"):
        publish(chart, options)
    assert branch_file(remote, "index.yaml") == before


def test_a_bad_chart_in_the_batch_publishes_nothing(tmp_path: Path, remote: Path) -> None:
    charts = tmp_path / "charts"
    options = PublishOptions(repo=str(remote), pages_url=URL)
    publish(simple_chart(tmp_path / "first", "good", "0.9.0"), options)
    before = branch_file(remote, "index.yaml")
    simple_chart(charts, "good", "1.0.0")
    write(charts / "broken" / "Chart.yaml", "apiVersion: v2\nname: broken\nversion: 1.0\n")
    with pytest.raises(ChartError, match=r"(?s)nothing published.*broken.*version: must be a str"):
        publish(charts, options)
    assert branch_file(remote, "index.yaml") == before and commits(remote) == 1


def test_duplicate_versions_in_the_batch_are_refused(tmp_path: Path, remote: Path) -> None:
    charts = tmp_path / "charts"
    simple_chart(charts, "app", "1.0.0")
    simple_chart(charts / "copy", "app", "1.0.0", description="other")
    (charts / "copy" / "app").rename(charts / "app2")
    with pytest.raises(ChartError, match=r"duplicate version: app 1\.0\.0"):
        publish(charts, PublishOptions(repo=str(remote), pages_url=URL))


def test_push_race_is_resolved_by_fetch_and_merge(tmp_path: Path, remote: Path) -> None:
    """Another publisher pushes between our fetch and our push; both versions end up indexed."""
    rival = simple_chart(tmp_path / "rival", "rival", "2.0.0")

    def race(attempt: int) -> None:
        if attempt == 1:
            publish(rival, PublishOptions(repo=str(remote), pages_url=URL))

    ours = simple_chart(tmp_path / "ours", "ours", "1.0.0")
    result = publish(ours, PublishOptions(repo=str(remote), pages_url=URL, before_push=race))
    assert result.attempts == 2 and result.published == ["ours-1.0.0"]
    index = branch_index(remote)
    assert set(index.entries) == {"ours", "rival"}
    assert commits(remote) == 2


def test_concurrent_publishers_race_for_real(tmp_path: Path, remote: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    charts = [simple_chart(tmp_path / f"c{i}", f"chart{i}", "1.0.0") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda c: publish(
                    c, PublishOptions(repo=str(remote), pages_url=URL, max_attempts=10)
                ),
                charts,
            )
        )
    assert all(r.pushed for r in results)
    assert set(branch_index(remote).entries) == {f"chart{i}" for i in range(4)}


def test_artifacthub_metadata_and_custom_branch(tmp_path: Path, remote: Path) -> None:
    meta = write(
        tmp_path / "artifacthub-repo.yml",
        "repositoryID: 0b5d3a8e-1111-2222-3333-444455556666\n"
        "owners:\n  - name: ada\n    email: ada@example.com\n",
    )
    options = PublishOptions(repo=str(remote), pages_url=URL, branch="pages", artifacthub_repo=meta)
    publish(simple_chart(tmp_path, "app", "1.0.0"), options)
    assert "repositoryID" in branch_file(remote, "artifacthub-repo.yml", "pages")
    bad = write(tmp_path / "bad.yml", "repositoryId: typo\n")
    with pytest.raises(ChartError, match=r"unknown keys \['repositoryId'\]"):
        publish(
            simple_chart(tmp_path / "x", "app", "1.0.1"),
            PublishOptions(repo=str(remote), pages_url=URL, artifacthub_repo=bad),
        )


def test_publish_to_a_non_bare_repo_path(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    publish(
        simple_chart(tmp_path / "c", "app", "1.0.0"), PublishOptions(repo=str(work), pages_url=URL)
    )
    assert "app-1.0.0.tgz" in git("ls-tree", "--name-only", "gh-pages", cwd=work)


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="does not exist"):
        publish(
            simple_chart(tmp_path, "app", "1.0.0"),
            PublishOptions(repo=str(tmp_path / "nope"), pages_url=URL),
        )


def test_credentials_never_appear_in_errors(tmp_path: Path) -> None:
    url = "http://user:s3cr3t-token@127.0.0.1:9/owner/repo.git"
    with pytest.raises(ChartError) as caught:
        publish(simple_chart(tmp_path, "app", "1.0.0"), PublishOptions(repo=url, pages_url=URL))
    assert "s3cr3t-token" not in str(caught.value) and "***@" in str(caught.value)
