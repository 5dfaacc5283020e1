"""Test helpers: a small OTLP/HTTP JSON collector, free ports, runtime processes, metric parsing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from flotilla.fn.devloop import serve_command
from flotilla.fn.jvm import build_function
from flotilla.fn.model import load_spec

CONFORMANCE = Path(__file__).parent / "conformance"
# Image runs need the session's private dockerd (the `dockerd` fixture), as the contract suite's do.
IMAGE_MARKS = [pytest.mark.cluster, pytest.mark.slow]


def runtime_params() -> list[Any]:
    """Every runtime as a local process, then as its built image (``<runtime>-image``)."""
    return [
        "python",
        "node",
        pytest.param("java", marks=pytest.mark.slow),
        pytest.param("python-image", marks=IMAGE_MARKS),
        pytest.param("node-image", marks=IMAGE_MARKS),
        pytest.param("java-image", marks=IMAGE_MARKS),
    ]


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")


class Collector:
    """Receives ``POST /v1/traces`` (OTLP JSON) and keeps every span with its resource."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                doc = json.loads(self.rfile.read(length))
                with collector._lock:
                    collector.requests += 1
                    for rs in doc.get("resourceSpans", []):
                        resource = {
                            a["key"]: a["value"]
                            for a in rs.get("resource", {}).get("attributes", [])
                        }
                        for ss in rs.get("scopeSpans", []):
                            for span in ss.get("spans", []):
                                collector.spans.append({**span, "resource": resource})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, trace_id: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [s for s in self.spans if s["traceId"] == trace_id]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no span with trace id {trace_id} reached the collector")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while True:
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200")
            time.sleep(0.05)


class ContainerProcess:
    """A container's main process behind the part of ``Popen``'s interface the tests use. Exit
    codes above 128 (killed by a signal, as docker reports it) read as ``-signal``, as Popen's."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.returncode: int | None = None

    def send_signal(self, sig: int) -> None:
        self.container.kill(signal=int(sig))

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _exited(self, code: int) -> int:
        self.returncode = 128 - code if code > 128 else code
        return self.returncode

    def poll(self) -> int | None:
        self.container.reload()
        if self.container.status != "exited":
            return None
        return self._exited(int(self.container.attrs["State"]["ExitCode"]))

    def wait(self, timeout: float | None = None) -> int:
        return self._exited(int(self.container.wait(timeout=timeout)["StatusCode"]))


@dataclass
class Served:
    """A running runtime: where it listens and how to read its log lines."""

    runtime: str
    name: str
    base: str
    read_logs: Any
    collector: Collector
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | ContainerProcess | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.read_logs().splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


def contract_env(collector: Collector) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "FLOTILLA_FN_MAX_BODY": "65536",
    }


@contextmanager
def local_runtime(
    runtime: str,
    collector: Collector,
    tmp: Path,
    project: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """The runtime as ``fn run`` starts it (no reload), serving the conformance function."""
    project = project or CONFORMANCE / runtime
    spec = load_spec((project / "function.yaml").read_text())
    if spec.runtime.value == "java":
        build_function(project)  # Maven before the clock starts: the runtime once, then cached
    port = free_port()
    env = {**os.environ, **contract_env(collector), **(extra_env or {})}
    command = serve_command(spec, project, port, env)
    log_path = tmp / f"{runtime}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command.argv, env=command.env, cwd=command.cwd, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/readiness")
        base = f"http://127.0.0.1:{port}"
        yield Served(runtime, spec.name, base, log_path.read_text, collector, proc=proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)


@contextmanager
def image_runtime(
    runtime: str,
    collector: Collector,
    docker_host: str,
    project: Path | None = None,
    extra_env: dict[str, str] | None = None,
    shared_dir: Path | None = None,
) -> Iterator[Served]:
    """The function built as ``fn build`` builds it and run in the private dockerd on the host's
    network. ``shared_dir`` is mounted at the same path, writable by the image's user, for files
    a function writes (the stop hook's marker)."""
    import docker
    import docker.errors

    from flotilla.fn.image import build_context, build_image, function_files
    from flotilla.testenv.images import JAVA_SPEC
    from flotilla.testenv.images import build_image as build_testenv_image

    project = project or CONFORMANCE / runtime
    spec = load_spec((project / "function.yaml").read_text())
    tag = f"flotilla.local/conformance-{runtime}-{spec.name}:latest"
    client = docker.DockerClient(base_url=docker_host)
    try:
        if runtime == "java":  # the opt-in base image: built (debootstrap, once) and loaded here
            try:
                client.images.get(JAVA_SPEC.reference)
            except docker.errors.ImageNotFound:
                client.images.load(build_testenv_image(JAVA_SPEC).read_bytes())
        context = build_context(spec, function_files(project), project=project)
        build_image(context, tag, docker_host=docker_host)
        volumes = {}
        if shared_dir is not None:
            shared_dir.chmod(0o777)
            volumes[str(shared_dir)] = {"bind": str(shared_dir), "mode": "rw"}
        port = free_port()
        container = client.containers.run(
            tag,
            detach=True,
            network_mode="host",
            environment={**contract_env(collector), **(extra_env or {}), "PORT": str(port)},
            volumes=volumes,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/health/readiness")

            def logs() -> str:
                return bytes(container.logs()).decode()

            base = f"http://127.0.0.1:{port}"
            proc = ContainerProcess(container)
            yield Served(f"{runtime}-image", spec.name, base, logs, collector, proc=proc)
        finally:
            container.remove(force=True)
    finally:
        client.close()


@contextmanager
def runtime_under_test(
    kind: str,
    collector: Collector,
    tmp: Path,
    request: pytest.FixtureRequest,
    project: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``kind`` from :func:`runtime_params`: a local process, or the image in the session's
    dockerd (``tmp`` then shared with the container)."""
    if kind.endswith("-image"):
        docker_host = request.getfixturevalue("dockerd")
        runtime = kind.removesuffix("-image")
        with image_runtime(runtime, collector, docker_host, project, extra_env, tmp) as served:
            yield served
    else:
        with local_runtime(kind, collector, tmp, project, extra_env) as served:
            yield served


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text samples keyed by name and label set."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, f"malformed sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(tuple(p.split("=", 1)) for p in re.findall(r'[a-z_]+="[^"]*"', labels))
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def sample(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    total = 0.0
    for (metric, label_set), value in metrics.items():
        if metric == name and all((k, v) in label_set for k, v in labels.items()):
            total += value
    return total


# The owners' CustomResourceDefinitions, read from their Go modules (whose zips carry the whole
# repository, config/ included), so the API server validates our manifests against the real
# schemas. The module cache is outside the repository and a second download is a no-op.
UPSTREAM_CRDS: dict[str, tuple[str, ...]] = {
    "knative.dev/serving@v0.42.2": tuple(
        f"config/core/300-resources/{kind}.yaml"
        for kind in ("service", "configuration", "revision", "route")
    ),
    "github.com/tektoncd/pipeline@v1.3.0": tuple(
        f"config/300-crds/300-{kind}.yaml"
        for kind in ("task", "taskrun", "pipeline", "pipelinerun")
    ),
}


def upstream_crd_files() -> list[Path]:
    """Download (once) the modules of :data:`UPSTREAM_CRDS` and return their CRD files."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", *UPSTREAM_CRDS],
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    decoder, text, pos, dirs = json.JSONDecoder(), proc.stdout, 0, {}
    while pos < len(text.rstrip()):
        info, end = decoder.raw_decode(text, pos)
        pos = end + 1
        if info.get("Error"):
            raise RuntimeError(f"go mod download {info['Path']}: {info['Error']}")
        dirs[f"{info['Path']}@{info['Version']}"] = Path(info["Dir"])
    if proc.returncode != 0 or len(dirs) != len(UPSTREAM_CRDS):
        raise RuntimeError(f"go mod download failed: {proc.stderr.strip()[-800:]}")
    return [dirs[module] / file for module, files in UPSTREAM_CRDS.items() for file in files]
