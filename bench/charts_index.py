"""Index 5,000 chart archives with `flotilla charts index` and with `helm repo index`.

Each runs as a separate process on the same directory in the same run, alternating, with the
index removed before every run; we report wall time and peak memory (PSS summed over the process
and its children, sampled every 10 ms) and the ratio. ``flotilla`` is the real command (its start-up
imports every system); ``flotilla-m`` is ``python -m flotilla.charts``, the charts system alone.

    .venv/bin/python bench/charts_index.py [--charts 5000] [--runs 3]

The helm binary comes from the test cache (~/.cache/flotilla/tools/helm-<version>/helm) and is
built there first when missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "charts"))

from helm_build import ensure_helm  # noqa: E402

from flotilla.charts.archives import build_archive  # noqa: E402

VALUES = "".join(f"key{i}: value-{i}\n" for i in range(60))
TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-%d
data:
  answer: {{ .Values.key1 | quote }}
"""


def make_archives(directory: Path, count: int) -> None:
    """``count`` realistic archives: 500 charts x versions, pre-releases and build metadata."""
    versions = [
        "1.0.0",
        "1.0.1",
        "1.1.0-rc.1",
        "1.1.0",
        "1.2.0+build.3",
        "2.0.0-alpha.1",
        "2.0.0",
        "2.1.0",
        "2.1.1",
        "3.0.0-beta.2",
    ]
    for n in range(count):
        name = f"chart{n // len(versions):04d}"
        version = versions[n % len(versions)]
        chart_yaml = (
            f'apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: "{n}.0"\n'
            f"description: Benchmark chart number {n} with a realistic amount of metadata\n"
            "type: application\nkeywords: [bench, demo]\nhome: https://example.com\n"
            "maintainers:\n  - name: Bench\n    email: bench@example.com\n"
            "annotations:\n  artifacthub.io/license: Apache-2.0\n"
            "dependencies:\n  - name: common\n    version: 1.x\n"
            "    repository: https://charts.example.com\n"
        )
        files = [
            (f"{name}/Chart.yaml", chart_yaml.encode()),
            (f"{name}/values.yaml", VALUES.encode()),
        ]
        files += [(f"{name}/templates/cm{i}.yaml", (TEMPLATE % i).encode()) for i in range(3)]
        files.append(
            (
                f"{name}/charts/common/Chart.yaml",
                b"apiVersion: v2\nname: common\nversion: 1.0.0\ntype: library\n",
            )
        )
        (directory / f"{name}-{version}.tgz").write_bytes(build_archive(files))


def _pss(pid: int) -> int:
    """Proportional set size in bytes: pages shared between processes are counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_memory(pid: int) -> int:
    """PSS in bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss(p)
        todo.extend(children.get(p, []))
    return total


def measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak tree PSS of one run."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_memory(proc.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {err.decode()}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    helm = ensure_helm()
    flotilla = shutil.which("flotilla", path=str(Path(sys.executable).parent)) or "flotilla"
    url = "https://example.github.io/charts"
    with tempfile.TemporaryDirectory(prefix="charts-bench-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        make_archives(directory, args.charts)
        print(f"generated {args.charts} archives in {time.perf_counter() - started:.1f} s")
        tools = {
            "flotilla": [flotilla, "charts", "index", str(directory), "--url", url],
            "flotilla-m": [
                sys.executable,
                "-m",
                "flotilla.charts",
                "index",
                str(directory),
                "--url",
                url,
            ],
            "helm": [str(helm), "repo", "index", str(directory), "--url", url],
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in tools}
        for _ in range(args.runs):
            for name, cmd in tools.items():
                (directory / "index.yaml").unlink(missing_ok=True)
                results[name].append(measure(cmd))
        print(f"{'tool':<12}{'median s':>10}{'min s':>8}{'max s':>8}{'peak MiB':>10}")
        medians = {}
        for name, runs in results.items():
            times = [t for t, _ in runs]
            medians[name] = statistics.median(times)
            peak = max(p for _, p in runs) / 2**20
            print(
                f"{name:<12}{medians[name]:>10.2f}{min(times):>8.2f}{max(times):>8.2f}{peak:>10.0f}"
            )
        for name in ("flotilla", "flotilla-m"):
            print(f"ratio helm/{name} (median time): {medians['helm'] / medians[name]:.2f}x")


if __name__ == "__main__":
    main()
