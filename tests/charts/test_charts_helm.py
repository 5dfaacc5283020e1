"""The real helm client against what we publish: repo add, search, pull --verify, template,
and `helm repo index` compared with `flotilla charts index` on the same directory."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from chart_factory import big_values_chart, library_chart, simple_chart, webapp_chart
from charts_support import GpgKey, Helm
from helm_build import HelmBuildError, ensure_helm

from flotilla.charts import index as idx
from flotilla.charts import versions, yamlread
from flotilla.charts.indexing import index_directory
from flotilla.charts.packaging import write_package
from flotilla.charts.provenance import SigningKey
from flotilla.charts.publishing import PublishOptions, publish

WEBAPP_VERSIONS = ("1.0.0", "1.1.0-rc.1", "1.1.0-rc.1+build.2", "1.1.0+build.7", "2.0.0-alpha.1")


def _export_branch(bare: Path, branch: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "--git-dir", str(bare), "archive", "--format=tar", branch],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


@pytest.fixture
def published_site(
    tmp_path: Path, gpg_key: GpgKey, serve: Callable[[Path], str]
) -> tuple[str, Path]:
    """Publish realistic charts (signed) to a bare repo and serve its gh-pages over HTTP."""
    site = tmp_path / "site"
    site.mkdir()
    url = serve(site)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    options = PublishOptions(
        repo=str(bare), pages_url=url, sign=SigningKey(gpg_key.name, gpg_key.secret_keyring)
    )
    for version in WEBAPP_VERSIONS:
        publish(webapp_chart(tmp_path / "src" / version, version=version).parent, options)
    publish(big_values_chart(tmp_path / "src" / "big"), options)
    _export_branch(bare, "gh-pages", site)
    return url, site


def test_helm_adds_searches_pulls_verifies_and_templates(
    published_site: tuple[str, Path], helm: Helm, gpg_key: GpgKey, tmp_path: Path
) -> None:
    url, _ = published_site
    helm.run("repo", "add", "flot", url)
    found = json.loads(
        helm.run("search", "repo", "flot/", "--devel", "--versions", "-o", "json").stdout
    )
    listed = {(c["name"], c["version"]) for c in found}
    assert {("flot/webapp", v) for v in WEBAPP_VERSIONS} <= listed
    assert {("flot/common", "0.3.0"), ("flot/bigvalues", "0.1.0")} <= listed
    stable = json.loads(helm.run("search", "repo", "flot/webapp", "-o", "json").stdout)
    assert [c["version"] for c in stable] == ["1.1.0+build.7"]

    dest = tmp_path / "pulled"
    dest.mkdir()
    for version in ("1.0.0", "2.0.0-alpha.1"):
        out = helm.run(
            "pull",
            "flot/webapp",
            "--version",
            version,
            "--verify",
            "--keyring",
            str(gpg_key.public_keyring),
            "-d",
            str(dest),
        )
        assert "Signed by: Flotilla Charts Test" in out.stdout + out.stderr
    rendered = helm.run(
        "template", "demo", str(dest / "webapp-1.0.0.tgz"), "--kube-version", "1.30.0"
    ).stdout
    assert "app.kubernetes.io/name: webapp" in rendered, "library chart dependency rendered"
    assert "name: demo-sidecar" in rendered, "vendored subchart rendered"
    big = helm.run("template", "big", "flot/bigvalues", "--version", "0.1.0").stdout
    assert 'count: "20000"' in big
    helm.run("lint", str(dest / "webapp-1.0.0.tgz"))


def test_helm_verify_rejects_tampering(
    published_site: tuple[str, Path], helm: Helm, gpg_key: GpgKey, tmp_path: Path
) -> None:
    _, site = published_site
    good = tmp_path / "webapp-1.0.0.tgz"
    shutil.copy(site / "webapp-1.0.0.tgz", good)
    shutil.copy(site / "webapp-1.0.0.tgz.prov", tmp_path / "webapp-1.0.0.tgz.prov")
    helm.run("verify", str(good), "--keyring", str(gpg_key.public_keyring))
    good.write_bytes(good.read_bytes() + b"\0")
    tampered = helm.run("verify", str(good), "--keyring", str(gpg_key.public_keyring), check=False)
    assert tampered.returncode != 0 and "sha256 sum does not match" in tampered.stderr


def _precedence_groups(entries: list[dict[str, object]]) -> list[set[str]]:
    """Group consecutive versions of equal SemVer precedence (helm leaves their order open)."""
    groups: list[set[str]] = []
    last = None
    for e in entries:
        parsed = versions.parse(str(e["version"]))
        key = parsed.precedence if parsed else None
        if groups and key == last:
            groups[-1].add(str(e["version"]))
        else:
            groups.append({str(e["version"])})
        last = key
    return groups


def test_index_matches_helm_repo_index(tmp_path: Path, helm: Helm) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    src = tmp_path / "src"
    for version in (*WEBAPP_VERSIONS, "1.1.0", "0.9.0"):
        write_package(webapp_chart(src / version, version=version), ours)
    write_package(library_chart(src / "lib2", version="0.4.0-beta.1"), ours / "sub")
    write_package(big_values_chart(src / "big", entries=2000), ours)
    write_package(simple_chart(src, "plain", "v1.2"), ours)
    shutil.copytree(ours, theirs)
    url = "https://example.github.io/charts"
    index_directory(ours, url)
    helm.run("repo", "index", str(theirs), "--url", url)
    a = yaml.safe_load((ours / "index.yaml").read_text())
    b = yaml.safe_load((theirs / "index.yaml").read_text())
    helm_text = (theirs / "index.yaml").read_text()
    assert yamlread.load(helm_text) == yaml.load(helm_text, Loader=idx._NoTimestampLoader)
    assert a["apiVersion"] == b["apiVersion"] == "v1"
    assert sorted(a["entries"]) == sorted(b["entries"])
    for name in a["entries"]:
        ea, eb = a["entries"][name], b["entries"][name]
        assert _precedence_groups(ea) == _precedence_groups(eb), name
        by_version = {e["version"]: e for e in eb}
        for entry in ea:
            other = by_version[entry["version"]]
            for field in ("created",):
                entry.pop(field), other.pop(field)
            assert entry == other, (name, entry["version"])


def test_helm_build_is_cached_and_failures_say_why(
    helm_binary: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mtime = helm_binary.stat().st_mtime_ns
    assert ensure_helm() == helm_binary and helm_binary.stat().st_mtime_ns == mtime
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HelmBuildError, match="no `go` on PATH"):
        ensure_helm()
