"""Start-up time of `flotilla` commands that do (almost) nothing, beside `helm version`.

Each command runs as a new process, ``--runs`` times (default 10), the commands interleaved
round by round so a burst of load on the machine hits all of them alike. For each we print the
median wall time and the median CPU time (user + system, the process and its children, from
``getrusage(RUSAGE_CHILDREN)``) and, when helm is here, the ratio of the wall time to helm's.

    .venv/bin/python bench/startup.py [--runs 10] [--helm PATH]

helm is the one tests/charts/helm_build.py builds into ~/.cache/flotilla/tools/helm-<version>/;
without it the figures are printed alone. ``python -c pass`` is printed as the floor: no Python
command can start faster than the interpreter.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELM_VERSION = "v3.21.4"
SYSTEMS = ("charts", "dev", "fn", "localpv", "operators", "testenv", "updates")


def flotilla_binary() -> str:
    """The console script of this interpreter's environment, as a user would run it."""
    beside = Path(sys.executable).with_name("flotilla")
    return str(beside) if beside.exists() else shutil.which("flotilla") or "flotilla"


def default_helm() -> Path | None:
    path = Path.home() / ".cache" / "flotilla" / "tools" / f"helm-{HELM_VERSION}" / "helm"
    return path if path.exists() else None


def small_chart(root: Path) -> Path:
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n"
                                      "description: A chart with one ConfigMap.\n")
    (chart / "values.yaml").write_text("answer: 42\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  answer: {{ .Values.answer | quote }}\n")
    return chart


def commands(flotilla: str, chart: Path) -> dict[str, list[str]]:
    cases = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "flotilla --version": [flotilla, "--version"],
        "flotilla --help": [flotilla, "--help"],
    }
    for system in SYSTEMS:
        cases[f"flotilla {system} --help"] = [flotilla, system, "--help"]
    cases["flotilla charts lint --help"] = [flotilla, "charts", "lint", "--help"]
    cases["flotilla charts lint (one tiny chart)"] = [flotilla, "charts", "lint", str(chart)]
    return cases


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, with children) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--helm", type=Path, default=None, help="helm binary to compare with")
    args = parser.parse_args()
    helm = args.helm or default_helm()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HELM_CONFIG_HOME": tmp, "HELM_CACHE_HOME": tmp,
               "HELM_DATA_HOME": tmp, "NO_COLOR": "1"}
        cases = commands(flotilla_binary(), small_chart(Path(tmp)))
        if helm is not None:
            cases["helm version"] = [str(helm), "version"]
        for argv in cases.values():  # warm the page cache and .pyc files once
            run_once(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                wall, cpu = run_once(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"median of {args.runs} runs; load average after: {' '.join(load)}")
    helm_wall = statistics.median(walls["helm version"]) if helm is not None else None
    if helm is None:
        print("helm not found (build it with tests/charts/helm_build.py): no ratios")
    print(f"{'command':<40} {'wall ms':>8} {'cpu ms':>8} {'x helm':>7}")
    for name in cases:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        ratio = f"{wall / helm_wall:7.1f}" if helm_wall else f"{'-':>7}"
        print(f"{name:<40} {wall * 1000:8.0f} {cpu * 1000:8.0f} {ratio}")


if __name__ == "__main__":
    main()
