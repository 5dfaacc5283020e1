"""Lint and package 30 charts one process per chart, flotilla beside helm, and in bulk.

    .venv/bin/python bench/charts_per_chart.py [--charts 30] [--runs 3]

Each chart is a small application chart (Chart.yaml, values.yaml with a values.schema.json,
three templates). Per chart: one ``python -m flotilla.charts lint|package CHART`` process per
chart against one ``helm lint|package CHART`` process per chart. Bulk: one process for all
charts. ``flotilla lint`` renders with the same helm binary (``FLOTILLA_HELM``), so its lint
includes a ``helm template`` run; ``--no-render`` measures it without (helm hidden from PATH).
Start-up alone is ``lint --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "charts"))

from helm_build import ensure_helm  # noqa: E402

SCHEMA = {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}}


def make_charts(root: Path, count: int) -> list[Path]:
    charts = []
    for i in range(count):
        d = root / f"chart{i:02d}"
        (d / "templates").mkdir(parents=True)
        (d / "Chart.yaml").write_text(
            f'apiVersion: v2\nname: chart{i:02d}\nversion: "1.{i}.0"\nappVersion: "2.0"\n'
            "description: benchmark chart\nicon: https://example.com/i.png\n"
        )
        (d / "values.yaml").write_text("replicas: 2\nimage: nginx:1.27\n")
        (d / "values.schema.json").write_text(json.dumps(SCHEMA))
        for kind in ("ConfigMap", "Secret", "Service"):
            (d / "templates" / f"{kind.lower()}.yaml").write_text(
                f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {{{{ .Release.Name }}}}\n"
            )
        charts.append(d)
    return charts


def timed(argvs: list[list[str]], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charts", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    helm = str(ensure_helm())
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        root = Path(tmp)
        charts = [str(c) for c in make_charts(root / "src", args.charts)]
        out = root / "out"
        out.mkdir()
        env = dict(os.environ, FLOTILLA_HELM=helm)
        bare = dict(os.environ, PATH="/usr/bin:/bin")
        bare.pop("FLOTILLA_HELM", None)
        fl = [py, "-m", "flotilla.charts"]
        cases = {
            "start-up (lint --help)": (
                [[*fl, "lint", "--help"]] * args.charts,
                [[helm, "lint", "--help"]] * args.charts,
                env,
            ),
            "lint, per chart (renders with helm)": (
                [[*fl, "lint", c] for c in charts],
                [[helm, "lint", c] for c in charts],
                env,
            ),
            "lint, per chart, no rendering": (
                [[*fl, "lint", c] for c in charts],
                [[helm, "lint", c] for c in charts],
                bare,
            ),
            "package, per chart (lint + render + archive)": (
                [[*fl, "package", c, "-d", str(out)] for c in charts],
                [[helm, "package", c, "-d", str(out)] for c in charts],
                env,
            ),
            "lint, bulk (one process)": ([[*fl, "lint", *charts]], [[helm, "lint", *charts]], env),
            "package, bulk (one process)": (
                [[*fl, "package", *charts, "-d", str(out)]],
                [[helm, "package", *charts, "-d", str(out)]],
                env,
            ),
        }
        print(f"{args.charts} charts, median of {args.runs} runs\n")
        print("| case | flotilla | helm | flotilla/helm | flotilla per chart |")
        print("|---|---|---|---|---|")
        for name, (ours, theirs, case_env) in cases.items():
            ours_s, theirs_s = [], []
            for _ in range(args.runs):
                ours_s.append(timed(ours, case_env, root))
                theirs_s.append(timed(theirs, case_env, root))
            a, b = statistics.median(ours_s), statistics.median(theirs_s)
            per = a / args.charts
            print(f"| {name} | {a:.2f} s | {b:.2f} s | {a / b:.1f}x | {per * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
