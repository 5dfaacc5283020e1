"""Remote dependencies (a repository Flotilla serves, the local OCI registry) and OCI push,
each checked with the real helm."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from chart_factory import simple_chart
from charts_support import Helm
from typer.testing import CliRunner

from flotilla.charts import index as idx
from flotilla.charts.cli import app
from flotilla.charts.deps import build_dependencies, satisfies
from flotilla.charts.errors import ChartError
from flotilla.charts.indexing import index_directory
from flotilla.charts.packaging import write_package

runner = CliRunner()


@pytest.mark.parametrize(
    ("version", "constraint", "expected"),
    [
        ("1.2.3", "^1.2", True),
        ("2.0.0", "^1.2", False),
        ("1.2.9", "~1.2", True),
        ("1.3.0", "~1.2", False),
        ("0.3.1", "^0.3", True),
        ("0.4.0", "^0.3", False),
        ("2.5.0", "2.x", True),
        ("3.0.0", "2.x", False),
        ("1.5.0", ">=1 <2", True),
        ("1.5.0", ">= 1, < 1.5", False),
        ("0.5.0", "<1 || >=1.5", True),
        ("1.0.0-rc.1", ">=0.1", False),
        ("1.0.0-rc.1", ">=1.0.0-0", True),
        ("4.0.0", "*", True),
        ("4.0.0", "", True),
        ("1.2.3", "1.2.3", True),
        ("1.2.4", "!=1.2.3", True),
    ],
)
def test_ranges(version: str, constraint: str, expected: bool) -> None:
    assert satisfies(version, constraint) is expected


def served_repo(root: Path, serve: Callable[[Path], str]) -> str:
    repo = root / "repo"
    for version in ("0.1.0", "0.2.0", "1.0.0"):
        write_package(simple_chart(root / f"src-{version}", "sub", version), repo)
    url = serve(repo)
    index_directory(repo, url)
    return url


def parent(root: Path, repository: str, version: str) -> Path:
    chart = simple_chart(root, "parent", "1.0.0")
    with (chart / "Chart.yaml").open("a") as f:
        f.write(f"dependencies:\n- name: sub\n  version: {version!r}\n")
        f.write(f"  repository: {repository}\n")
    return chart


def test_deps_from_an_http_repo_honour_and_write_the_lock(
    tmp_path: Path, serve: Callable[[Path], str], helm: Helm
) -> None:
    url = served_repo(tmp_path, serve)
    chart = parent(tmp_path, url, "<1.0.0")
    cli = runner.invoke(app, ["deps", str(chart)])
    assert cli.exit_code == 0, cli.output
    assert sorted(p.name for p in (chart / "charts").iterdir()) == ["sub-0.2.0.tgz"]
    lock = yaml.safe_load((chart / "Chart.lock").read_text())
    assert lock["dependencies"] == [{"name": "sub", "repository": url, "version": "0.2.0"}]
    helm.run("repo", "add", "subs", url)
    helm.run("dependency", "build", str(chart))  # helm checks the lock's digest
    lock["dependencies"][0]["version"] = "0.1.0"
    (chart / "Chart.lock").write_text(yaml.safe_dump(lock))
    assert [f.archive for f in build_dependencies(chart)] == ["sub-0.1.0.tgz"]
    assert sorted(p.name for p in (chart / "charts").iterdir()) == ["sub-0.1.0.tgz"]
    assert runner.invoke(app, ["lint", str(chart)]).exit_code == 0


def test_deps_digest_mismatch_is_refused(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    url = served_repo(tmp_path, serve)
    index_file = tmp_path / "repo" / "index.yaml"
    index = idx.load(index_file.read_bytes())
    for entry in index.entries["sub"]:
        entry.data["digest"] = "0" * 64  # type: ignore[index]
    index_file.write_text(idx.dump(index))
    with pytest.raises(ChartError, match="is not the index's digest"):
        build_dependencies(parent(tmp_path, url, "1.0.0"))


def test_push_to_oci_pull_with_helm_and_deps_from_oci(
    tmp_path: Path, oci_registry: str, helm: Helm
) -> None:
    packaged = write_package(simple_chart(tmp_path / "src", "sub", "0.1.0+build.7"), tmp_path)
    assert packaged.path is not None
    remote = f"oci://{oci_registry}/charts"
    cli = runner.invoke(app, ["push", str(packaged.path), remote])
    assert cli.exit_code == 0, cli.output
    assert f"pushed {remote}/sub:0.1.0_build.7" in cli.output
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm.run(
        "pull", f"{remote}/sub", "--version", "0.1.0+build.7", "--plain-http", "-d", str(pulled)
    )
    assert (pulled / "sub-0.1.0+build.7.tgz").read_bytes() == packaged.data
    helm.run("template", "x", f"{remote}/sub", "--version", "0.1.0+build.7", "--plain-http")
    chart = parent(tmp_path, remote, ">=0.1.0")
    fetched = build_dependencies(chart)
    assert [f.archive for f in fetched] == ["sub-0.1.0+build.7.tgz"]
    assert (chart / "charts" / "sub-0.1.0+build.7.tgz").read_bytes() == packaged.data


def test_publish_with_deps(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    url = served_repo(tmp_path, serve)
    charts = tmp_path / "charts"
    parent(charts, url, "~1.0")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    args = ["publish", str(charts), "--repo", str(bare), "--url", "https://e.x/c"]
    assert runner.invoke(app, args).exit_code == 1, "sub is missing without --deps"
    cli = runner.invoke(app, [*args, "--deps"])
    assert cli.exit_code == 0, cli.output
    assert "fetched sub-1.0.0.tgz" in cli.output and "published: parent-1.0.0" in cli.output
