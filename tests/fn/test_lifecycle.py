"""Probes, graceful stop and hostile input, the same in every runtime, as local processes and as
the built images (in the session's private dockerd, on the host's network)."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flotilla.fn.devloop import serve_command
from flotilla.fn.model import load_spec, parse_spec
from flotilla.fn.templates import project_files

from .support import (
    CONFORMANCE,
    IMAGE_MARKS,
    Collector,
    ContainerProcess,
    Served,
    free_port,
    parse_metrics,
    runtime_params,
    runtime_under_test,
    sample,
)


@dataclass(frozen=True)
class Runtime:
    kind: str  # python, node, java, or <runtime>-image
    request: pytest.FixtureRequest  # for the dockerd fixture, asked for only by image runs


@pytest.fixture(params=runtime_params())
def runtime(request: pytest.FixtureRequest) -> Runtime:
    return Runtime(request.param, request)


@contextmanager
def serving(runtime: Runtime, tmp: Path, project: str = "", **env: str) -> Iterator[Served]:
    """The runtime serving ``conformance/<project>`` (default its lifecycle function); ``tmp``
    is where the function may write (mounted into the container for images)."""
    collector = Collector()
    try:
        folder = CONFORMANCE / (project or f"lifecycle-{runtime.kind.removesuffix('-image')}")
        with runtime_under_test(
            runtime.kind, collector, tmp, runtime.request, folder, extra_env=env
        ) as served:
            yield served
    finally:
        collector.close()


def _stopped_cleanly(proc: subprocess.Popen[bytes] | ContainerProcess) -> bool:
    # uvicorn re-raises the SIGTERM it handled once it has shut down
    return proc.returncode in (0, -signal.SIGTERM)


def test_probes_answer_while_eight_slow_invocations_run(runtime: Runtime, tmp_path: Path) -> None:
    with serving(runtime, tmp_path, FLOTILLA_FN_THREADS="2") as s, ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(httpx.get, s.base + "/slow?s=3", timeout=30) for _ in range(8)]
        time.sleep(0.5)
        for path in ("/health/liveness", "/health/readiness", "/metrics"):
            started = time.monotonic()
            assert httpx.get(s.base + path, timeout=2).status_code == 200
            assert time.monotonic() - started < 1.0, path
        assert [f.result().status_code for f in slow] == [200] * 8


def test_sigterm_finishes_the_request_in_flight_then_runs_the_stop_hook(
    runtime: Runtime, tmp_path: Path
) -> None:
    marker = tmp_path / "stopped"
    with serving(runtime, tmp_path, LIFECYCLE_MARKER=str(marker)) as s:
        assert s.proc is not None
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.get, s.base + "/slow?s=3", timeout=30)
            time.sleep(0.5)
            s.proc.send_signal(signal.SIGTERM)
            r = in_flight.result()
        assert (r.status_code, r.text) == (200, "slept")
        s.proc.wait(15)
        assert _stopped_cleanly(s.proc)
    assert marker.read_text() == "stopped"


def test_bad_json_is_400_and_a_bad_status_or_header_is_a_counted_500(
    runtime: Runtime, tmp_path: Path
) -> None:
    with serving(runtime, tmp_path) as s:
        r = httpx.post(s.base + "/json", content=b"{nope", timeout=5)
        assert r.status_code == 400 and "not JSON" in r.json()["error"]
        assert httpx.post(s.base + "/json", json={"a": 1}, timeout=5).json() == {"got": {"a": 1}}
        for path in ("/bad-status", "/bad-header"):
            r = httpx.get(s.base + path, timeout=5)
            assert (r.status_code, r.json()["error"]) == (500, "invalid response from the function")
        metrics = parse_metrics(httpx.get(s.base + "/metrics", timeout=5).text)
        assert sample(metrics, "faas_errors_total") == 2
        time.sleep(0.3)
        logged = [line for line in s.log_lines() if "invalid response" in line["msg"]]
        assert len(logged) == 2 and logged[0]["level"] == "error"
        assert "1000" in logged[0]["msg"] and "x-bad" in logged[1]["msg"]


def test_timeout_and_concurrency_limit(runtime: Runtime, tmp_path: Path) -> None:
    with serving(runtime, tmp_path, FLOTILLA_FN_TIMEOUT="1", FLOTILLA_FN_CONCURRENCY="1") as s:
        started = time.monotonic()
        r = httpx.get(s.base + "/slow?s=3", timeout=10)
        assert r.status_code == 504 and "timed out" in r.json()["error"]
        assert time.monotonic() - started < 2.5
        time.sleep(2.2)  # let the abandoned sleep end (Python cannot stop a thread)
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(lambda _: httpx.get(s.base + "/slow?s=0.6").status_code, "ab"))
        assert codes == [200, 200]
        assert time.monotonic() - started >= 1.15  # one after the other
        metrics = parse_metrics(httpx.get(s.base + "/metrics", timeout=5).text)
        assert sample(metrics, "faas_errors_total") == 1


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass  # Node answers 408 first, then closes
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_and_slow_header_connections_are_closed(runtime: Runtime, tmp_path: Path) -> None:
    with serving(runtime, tmp_path, FLOTILLA_FN_HEADER_TIMEOUT="1") as s:
        port = int(s.base.rsplit(":", 1)[1])
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        slow.sendall(b"X-Dribble: 1\r\n")
        try:
            assert _closed_by_server(idle, 6), "idle connection still open"
            assert _closed_by_server(slow, 6), "slow-header connection still open"
        finally:
            idle.close()
            slow.close()
        assert httpx.get(s.base + "/", timeout=5).text == "ok"


class _SilentCollector:
    """Accepts connections and never answers: the collector of the issue's report."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.accepted: list[socket.socket] = []
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def test_a_collector_that_never_answers_is_bounded(runtime: Runtime, tmp_path: Path) -> None:
    silent = _SilentCollector()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": silent.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2000",
    }
    began = time.monotonic()
    try:
        with serving(runtime, tmp_path, **env) as s:
            assert s.proc is not None
            for _ in range(40):
                assert httpx.get(s.base + "/", timeout=5).status_code == 200
                time.sleep(0.05)
            time.sleep(1)
            # At most one connection per export timeout (2 s), not one per 50 ms interval.
            assert len(silent.accepted) <= (time.monotonic() - began) / 2 + 2
            started = time.monotonic()
            s.proc.terminate()
            s.proc.wait(15)
            assert time.monotonic() - started < 8  # the flush has a deadline
    finally:
        silent.close()


@pytest.mark.parametrize("kind", ["python", pytest.param("python-image", marks=IMAGE_MARKS)])
def test_the_asgi_apps_lifespan_runs(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    marker = tmp_path / "stopped"
    runtime = Runtime(kind, request)
    with serving(runtime, tmp_path, "asgi-lifespan", LIFECYCLE_MARKER=str(marker)) as s:
        assert s.proc is not None
        assert httpx.get(s.base + "/", timeout=5).json() == {"greeting": "started by lifespan"}
        s.proc.terminate()
        s.proc.wait(15)
    assert marker.read_text() == "asgi shutdown"


BROKEN = [
    ("node", "index.js", "'use strict';\n\nexports.handle = () => {\n  return 1 +;\n};\n", 4),
    ("python", "func.py", '"""x"""\n\n\ndef handle(request):\n    return 1 +\n', 5),
    ("node", "index.js", "'use strict';\nconst x = 1;\nthrow new Error('boom');\n", 3),
    ("python", "func.py", "import os\n\nraise RuntimeError('boom')\n", 3),
    pytest.param(
        "java",
        "src/main/java/function/Function.java",
        "package function;\n\nimport dev.flotilla.fn.Request;\n\npublic class Function {\n"
        '    static final int ZERO = Integer.parseInt("0");\n'
        "    static final int BOOM = 1 / ZERO;\n"
        '\n    public String handle(Request request) {\n        return "x";\n    }\n}\n',
        7,
        marks=pytest.mark.slow,
    ),
]


def _broken_project(project: Path, runtime: str, file: str, code: str) -> None:
    """A function that fails as it loads (a Java one compiles: its static initialiser throws)."""
    spec = parse_spec({"name": "broken", "runtime": runtime})
    if runtime == "java":
        for rel, text in project_files(spec, "http").items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(text)
        (project / "src/test/java/function/FunctionTest.java").unlink()
    else:
        (project / "function.yaml").write_text(f"name: broken\nruntime: {runtime}\n")
    (project / file).write_text(code)


@pytest.mark.parametrize(("runtime", "file", "code", "line"), BROKEN)
def test_an_error_in_user_code_is_one_line_with_file_and_line(
    tmp_path: Path, runtime: str, file: str, code: str, line: int
) -> None:
    _broken_project(tmp_path, runtime, file, code)
    spec = load_spec((tmp_path / "function.yaml").read_text())
    command = serve_command(spec, tmp_path, free_port())
    proc = subprocess.run(
        command.argv, env=command.env, cwd=command.cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{tmp_path / file}:{line}:" in lines[0]


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "file", "code", "line"), BROKEN)
def test_an_image_with_an_error_in_user_code_exits_with_one_line(
    dockerd: str, tmp_path: Path, runtime: str, file: str, code: str, line: int
) -> None:
    import docker

    from flotilla.fn.image import build_context, build_image, function_files

    _broken_project(tmp_path, runtime, file, code)
    spec = load_spec((tmp_path / "function.yaml").read_text())
    tag = f"flotilla.local/broken-{runtime}:latest"
    context = build_context(spec, function_files(tmp_path), project=tmp_path)
    build_image(context, tag, docker_host=dockerd)
    client = docker.DockerClient(base_url=dockerd)
    container = client.containers.run(tag, detach=True, network_mode="none")
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        lines = bytes(container.logs(stdout=False, stderr=True)).decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert f"/function/{file}:{line}:" in lines[0]  # the path inside the image
        assert bytes(container.logs(stdout=True, stderr=False)) == b""
    finally:
        container.remove(force=True)
        client.close()
