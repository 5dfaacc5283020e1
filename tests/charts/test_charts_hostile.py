"""Hostile YAML and JSON in every file the charts system reads: a clear error, fast, bounded.

Alias bombs, deep nesting and 100 MB documents in Chart.yaml, values.yaml, values.schema.json,
requirements.yaml and index.yaml (directly, through ``index --merge`` and on a pages branch), with
the C loader and PyYAML's pure-Python one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from chart_factory import simple_chart, write
from typer.testing import CliRunner

from flotilla.charts import index as idx
from flotilla.charts.chartfile import parse_chart_yaml
from flotilla.charts.cli import app
from flotilla.charts.errors import ChartError
from flotilla.charts.linting import lint_chart
from flotilla.core import yamlload

runner = CliRunner()
HUNDRED_MB = 100 * 2**20


def bomb(levels: int = 9, width: int = 9) -> str:
    """Nine levels of nine aliases: 387 million nodes once expanded."""
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\n"


def deep_flow(levels: int = 100_000) -> str:
    return "deep: " + "[" * levels + "]" * levels + "\n"


def deep_block(levels: int = 1_000) -> str:
    return "".join(" " * i + f"k{i}:\n" for i in range(levels)) + " " * levels + "x: 1\n"


HOSTILE = {"alias bomb": bomb(), "deep flow": deep_flow(), "deep block": deep_block()}
CHART_HEAD = 'apiVersion: v2\nname: app\nversion: "1.0.0"\n'


def timed(action: Callable[[], object]) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        action()
    except ChartError as e:
        return time.perf_counter() - started, str(e)
    raise AssertionError("hostile input was accepted")


@pytest.fixture(params=["C", "pure"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure":
        monkeypatch.setattr(yamlload, "SafeLoader", yaml.SafeLoader)
    return str(request.param)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_chart_yaml(kind: str, loader: str) -> None:
    elapsed, message = timed(lambda: parse_chart_yaml((CHART_HEAD + HOSTILE[kind]).encode()))
    assert elapsed < 1.0
    assert "Chart.yaml" in message
    assert any(word in message for word in ("alias bomb", "nest", "deep")), message


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_index_yaml(kind: str) -> None:
    raw = ("apiVersion: v1\nentries: {}\n" + HOSTILE[kind]).encode()
    elapsed, message = timed(lambda: idx.load(raw, "index.yaml"))
    assert elapsed < 1.0 and message.startswith("index.yaml: not valid YAML or JSON")


def test_index_json_deep() -> None:
    raw = b'{"apiVersion": "v1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    elapsed, message = timed(lambda: idx.load(raw, "index.yaml"))
    assert elapsed < 1.0 and "nested too deeply" in message


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_values_yaml_lint_and_package(tmp_path: Path, kind: str) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    (chart / "values.yaml").write_text(HOSTILE[kind])
    started = time.perf_counter()
    result = lint_chart(chart)
    assert time.perf_counter() - started < 1.0
    assert [f.path for f in result.errors] == [str(chart / "values.yaml")]
    assert "invalid YAML" in result.errors[0].message
    package = runner.invoke(app, ["package", str(chart), "-d", str(tmp_path / "out")])
    assert package.exit_code == 1 and "values.yaml" in package.output
    assert not (tmp_path / "out").exists()


def test_schema_json_deep(tmp_path: Path) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    (chart / "values.schema.json").write_text("[" * 100_000 + "]" * 100_000)
    errors = lint_chart(chart).errors
    assert len(errors) == 1 and "nested too deeply" in errors[0].message


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_requirements_yaml(tmp_path: Path, kind: str) -> None:
    chart = write(tmp_path / "old" / "Chart.yaml", 'apiVersion: v1\nname: old\nversion: "1.0.0"\n')
    (chart.parent / "requirements.yaml").write_text("dependencies: []\n" + HOSTILE[kind])
    started = time.perf_counter()
    errors = lint_chart(chart.parent).errors
    assert time.perf_counter() - started < 1.0
    assert errors and "requirements.yaml" in str(errors[0]), errors


def big_file(path: Path, head: str) -> Path:
    """A 100 MB file (sparse on disk): a valid head, then zero bytes."""
    with path.open("wb") as f:
        f.write(head.encode())
        f.truncate(HUNDRED_MB)
    return path


@pytest.mark.parametrize("name", ["Chart.yaml", "values.yaml", "values.schema.json"])
def test_100_mb_chart_files_refused_unread(tmp_path: Path, name: str) -> None:
    chart = simple_chart(tmp_path, "app", "1.0.0")
    head = CHART_HEAD if name == "Chart.yaml" else "{}" if name.endswith("json") else "a: 1\n"
    big_file(chart / name, head)
    started = time.perf_counter()
    errors = lint_chart(chart).errors
    assert time.perf_counter() - started < 1.0
    assert errors and "-byte limit" in errors[0].message, errors


def run_measured(*args: str) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run the CLI in a fresh process; return it, seconds and peak memory in MiB."""
    script = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(p.stdout + p.stderr)\n"
        "sys.exit(p.returncode)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-m", "flotilla.charts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    seconds, rss_kib = proc.stdout.split()
    return proc, float(seconds), int(rss_kib) // 1024


def test_100_mb_index_merge_is_refused_fast_with_bounded_memory(tmp_path: Path) -> None:
    old = big_file(tmp_path / "old.yaml", "apiVersion: v1\nentries:\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    proc, seconds, rss_mib = run_measured("index", str(repo), "--merge", str(old))
    assert proc.returncode == 1 and "-byte limit" in proc.stderr, proc.stderr
    assert seconds < 3.0  # start-up included
    assert rss_mib < 150


def test_alias_bomb_index_merge_via_cli_fast_and_bounded(tmp_path: Path) -> None:
    old = write(tmp_path / "old.yaml", "apiVersion: v1\nentries: {}\n" + bomb(12))
    repo = tmp_path / "repo"
    repo.mkdir()
    proc, seconds, rss_mib = run_measured("index", str(repo), "--merge", str(old))
    assert proc.returncode == 1 and "alias bomb" in proc.stderr, proc.stderr
    assert seconds < 3.0 and rss_mib < 150


def test_alias_bomb_chart_yaml_via_cli(tmp_path: Path) -> None:
    chart = write(tmp_path / "app" / "Chart.yaml", CHART_HEAD + bomb(12))
    for command in (["lint"], ["package", "-d", str(tmp_path / "out")]):
        proc, seconds, rss_mib = run_measured(*command, str(chart.parent))
        assert proc.returncode == 1 and "alias bomb" in proc.stderr, proc.stderr
        assert seconds < 3.0 and rss_mib < 150
