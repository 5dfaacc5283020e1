"""Java against Python where the contract is a shape rather than a behaviour: the metric names,
label names and bucket bounds a dashboard or alert is written against."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flotilla.fn.jvm import class_archive

from .support import Collector, image_runtime, local_runtime, parse_metrics

pytestmark = pytest.mark.slow
REQUESTS = [("GET", "/"), ("POST", "/echo"), ("GET", "/fail"), ("GET", "/teapot")]
PER_INSTANCE = {"faas_name", "faas_version", "faas_instance"}


Shape = set[tuple[str, frozenset[tuple[str, str]]]]


def _shape(runtime: str, tmp: Path) -> tuple[Shape, dict[object, float | None], set[str]]:
    """Every sample as (name, labels without the instance's identity), the values, the types."""
    collector = Collector()
    try:
        with local_runtime(runtime, collector, tmp) as served:
            for method, path in REQUESTS:
                httpx.request(method, served.base + path, content=b"x", timeout=10)
            text = httpx.get(served.base + "/metrics", timeout=10).text
    finally:
        collector.close()
    metrics = parse_metrics(text)
    types = {line for line in text.splitlines() if line.startswith("# TYPE ")}
    shape: Shape = set()
    counts: dict[object, float | None] = {}
    for (name, labels), value in metrics.items():
        assert {k for k, _ in labels} >= PER_INSTANCE, (runtime, name)
        kept = frozenset((k, v) for k, v in labels if k not in PER_INSTANCE)
        shape.add((name, kept))
        if not name.startswith("faas_init_duration"):  # one observation, of a different time
            counts[(name, kept)] = value if not name.endswith("_sum") else None
    return shape, counts, types


def test_java_exposes_the_same_metrics_as_python(tmp_path: Path) -> None:
    python, python_counts, python_types = _shape("python", tmp_path)
    java, java_counts, java_types = _shape("java", tmp_path)
    assert java ^ python == set()  # the difference, if any, is what the failure shows
    assert java_types == python_types
    # Same requests, same counts: 3 successes (/, /echo, /teapot's 418), 1 error, 1 cold start,
    # and the same histogram buckets filled up to timing noise (only the totals are compared).
    totals = {k: v for k, v in python_counts.items() if not k[0].endswith("_bucket")}
    assert {k: v for k, v in java_counts.items() if not k[0].endswith("_bucket")} == totals
    names = {name for name, _ in python}
    assert {"faas_invocations_total", "faas_errors_total", "faas_coldstarts_total"} <= names
    assert {"faas_invoke_duration_seconds_bucket", "faas_init_duration_seconds_count"} <= names


# The JVM's own log line for a class mapped from the dynamic (AppCDS) archive; -Xshare:on makes
# a JVM that cannot map the archive refuse to start rather than run without it.
FROM_ARCHIVE = "dev.flotilla.fn.Main source: shared objects file (top)"
ARCHIVE_CHECK = {"JDK_JAVA_OPTIONS": "-Xshare:on -Xlog:class+load=info:stdout"}


def test_fn_run_starts_java_from_the_class_data_archive(tmp_path: Path) -> None:
    collector = Collector()
    try:
        with local_runtime("java", collector, tmp_path, extra_env=ARCHIVE_CHECK) as served:
            r = httpx.get(served.base + "/hello", timeout=10)
            assert (r.status_code, r.text) == (200, "hello")  # the function's own classes load
            log = served.read_logs()
    finally:
        collector.close()
    assert FROM_ARCHIVE in log
    assert "conformance.Function source: file:" in log  # not archived: it changes with every edit


def test_a_failed_training_run_leaves_no_archive_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "flotilla-fn.jar").write_bytes(b"not a jar")
    assert class_archive(tmp_path) is None  # fn run then starts java without one
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("java: no class-data archive ("), err
    assert not list(tmp_path.glob("*.jsa*"))


@pytest.mark.cluster
def test_the_java_image_starts_from_its_class_data_archive(dockerd: str, tmp_path: Path) -> None:
    collector = Collector()
    try:
        with image_runtime("java", collector, dockerd, extra_env=ARCHIVE_CHECK) as served:
            r = httpx.get(served.base + "/hello", timeout=10)
            assert (r.status_code, r.text) == (200, "hello")
            log = served.read_logs()
    finally:
        collector.close()
    assert FROM_ARCHIVE in log  # trained by the image's own JVM at build time
    assert "conformance.Function source: file:/opt/flotilla/classes/" in log
