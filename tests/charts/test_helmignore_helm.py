"""``.helmignore`` against the real helm: both tools package the same tree with each rule set,
and the archives must hold the same files (or both tools must refuse the rules)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from charts_support import Helm

from flotilla.charts.errors import ChartError
from flotilla.charts.helmignore import ignored, parse_rules
from flotilla.charts.packaging import PackageOptions, package_chart

TREE = [
    "values.yaml",
    "README.md",
    "x.md",
    "notes.txt",
    "foo.bak",
    ".hidden",
    "#hash.txt",
    "!bang.txt",
    "a[1].txt",
    "a1.txt",
    "ab.txt",
    "a!.txt",
    "space name.txt",
    "sub/x.md",
    "sub/deep/y.md",
    "sub/deep/z.txt",
    "docs/a.md",
    "docs/b.md",
    "docs/img/logo.png",
    "templates/cm.yaml",
    "templates/.hidden.yaml",
    "templates/_helpers.tpl",
    "templates/tests/t.yaml",
    "ci/values.yaml",
    "files/x.txt",
    "files/nested/x.md",
    "dir.md/inner.txt",
]

RULES = [
    "*.md",
    "/x.md",
    "x.md",
    "sub/x.md",
    "sub/",
    "/sub/",
    "deep/",
    "sub/deep/",
    "sub/deep",
    "sub/*",
    "sub/*/y.md",
    "*/x.md",
    "*/*/*.md",
    "**/*.md",
    "docs/**",
    "\\#hash.txt",
    "#hash.txt",
    "\\!bang.txt",
    "!*.yaml",
    "*.bak\n!foo.bak",
    "!foo.bak\n*.bak",
    "*.txt\n!notes.txt",
    "a[1].txt",
    "a\\[1\\].txt",
    "a[0-9].txt",
    "a[^0-9].txt",
    "a[!1].txt",
    "a[z-a].txt",
    "[",
    "a[]",
    "a[\\]].txt",
    "?.md",
    "??.md",
    "x.m?",
    "*",
    "templates/",
    "templates/tests/",
    "templates/*.tpl",
    "/templates/_helpers.tpl",
    ".hidden",
    ".*",
    "  *.bak  ",
    "*.bak\\ ",
    "files/nested",
    "nested",
    "dir.md/",
    "*.md/",
    "dir.md",
    "/",
    "!",
    "docs/*.md\n!docs/a.md",
    "space name.txt",
    "space\\ name.txt",
    "\ufeff*.md",
    "*.md\r\n*.txt\r\n",
    "values.yaml",
    "ci/\n# a comment\n\n*.png",
]


def make_chart(root: Path, rules: str) -> Path:
    chart = root / "app"
    for rel in TREE:
        path = chart / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("apiVersion: v1\nkind: ConfigMap\n" if rel.endswith(".yaml") else rel)
    (chart / "Chart.yaml").write_text('apiVersion: v2\nname: app\nversion: "1.0.0"\n')
    (chart / ".helmignore").write_bytes(rules.encode())
    return chart


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(m.name.removeprefix("app/") for m in tar.getmembers() if m.isfile())


@pytest.mark.parametrize("rules", RULES)
def test_same_files_as_helm(tmp_path: Path, helm: Helm, rules: str) -> None:
    chart = make_chart(tmp_path, rules)
    out = tmp_path / "out"
    theirs = helm.run("package", str(chart), "-d", str(out), check=False)
    if theirs.returncode != 0:
        with pytest.raises(ChartError):
            package_chart(chart, PackageOptions())
        return
    ours = names(package_chart(chart, PackageOptions()).data)
    assert theirs.returncode == 0, f"we packaged what helm refused: {theirs.stderr}"
    assert ours == names((out / "app-1.0.0.tgz").read_bytes())


def test_table_is_big_enough_and_semantics_spelled_out() -> None:
    assert len(RULES) >= 40
    anchored = parse_rules("/x.md")
    assert ignored(anchored, "x.md", False) and not ignored(anchored, "sub/x.md", False)
    rules = parse_rules("*.txt\n!notes.txt")
    # unlike gitignore, the first rule decides: notes.txt stays ignored
    assert ignored(rules, "a.txt", False) and ignored(rules, "notes.txt", False)
    assert ignored(rules, "templates", True), "a negated rule ignores whatever it does not match"
    assert ignored(rules, "templates/.x", False)
    with pytest.raises(ChartError, match=r"line 1: '\*\*/\*\.md': double-star"):
        parse_rules("**/*.md")
