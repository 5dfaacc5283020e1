"""``flotilla fn`` as a user drives it: init, test, run with reload, invoke, dry runs."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.fn.devloop import changed_files, snapshot

from .support import free_port, wait_http

runner = CliRunner()


def fn(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["fn", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("runtime", "template"),
    [
        ("python", "http"),
        ("python", "cloudevents"),
        ("node", "http"),
        ("node", "cloudevents"),
        pytest.param("java", "http", marks=pytest.mark.slow),
        pytest.param("java", "cloudevents", marks=pytest.mark.slow),
    ],
)
def test_init_creates_a_project_whose_own_tests_pass(
    tmp_path: Path, runtime: str, template: str
) -> None:
    project = tmp_path / "hello"
    code, out = fn(
        "init", "hello", "--runtime", runtime, "--template", template, "--dir", str(project)
    )
    assert code == 0, out
    spec = yaml.safe_load((project / "function.yaml").read_text())
    assert spec["runtime"] == runtime
    assert spec["signature"] == ("cloudevent" if template == "cloudevents" else "http")
    command = [sys.executable, "-m", "flotilla", "fn", "test", "-C", str(project)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_refuses_bad_names_templates_and_non_empty_directories(tmp_path: Path) -> None:
    code, out = fn("init", "Not_A_Label", "--dir", str(tmp_path / "a"))
    assert code == 1 and "'Not_A_Label' is not a valid function name" in out
    assert "function.yaml" not in out and len(out.strip().splitlines()) == 1
    assert fn("init", "ok", "--template", "smtp", "--dir", str(tmp_path / "b"))[0] == 1
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    code, out = fn("init", "ok", "--dir", str(tmp_path / "c"))
    assert code == 1 and "not empty" in out
    assert (tmp_path / "c" / "keep.txt").read_text() == "mine"


def test_a_failing_function_test_fails_fn_test(tmp_path: Path) -> None:
    project = tmp_path / "p"
    fn("init", "p", "--dir", str(project))
    func = project / "func.py"
    func.write_text(func.read_text().replace("Hello,", "Bye,"))
    result = subprocess.run(
        [sys.executable, "-m", "flotilla", "fn", "test", "-C", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0


def test_invalid_function_yaml_is_explained(tmp_path: Path) -> None:
    (tmp_path / "function.yaml").write_text("name: x\nruntime: cobol\n")
    code, out = fn("deploy", "-C", str(tmp_path), "--dry-run")
    assert code == 1 and "runtime: must be one of python, node" in out
    assert fn("build", "-C", str(tmp_path / "missing"))[0] == 1


SOURCES = {
    "python": "func.py",
    "node": "index.js",
    "java": "src/main/java/function/Function.java",
}


@pytest.mark.parametrize(
    "runtime", ["python", "node", pytest.param("java", marks=pytest.mark.slow)]
)
def test_run_reloads_on_change_and_invoke_calls_it(tmp_path: Path, runtime: str) -> None:
    project = tmp_path / "live"
    fn("init", "live", "--runtime", runtime, "--dir", str(project))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flotilla", "fn", "run", "-C", str(project), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/readiness", timeout=300)  # Java: Maven first
        code, out = fn("invoke", "/?name=fleet", "--port", str(port))
        assert (code, out) == (0, '{"message":"Hello, fleet!"}')
        source = project / SOURCES[runtime]
        source.write_text(source.read_text().replace("Hello,", "Howdy,"))
        deadline = time.monotonic() + (120 if runtime == "java" else 20)  # Java recompiles
        body = ""
        while time.monotonic() < deadline and "Howdy" not in body:
            with contextlib.suppress(httpx.HTTPError):
                body = httpx.get(f"http://127.0.0.1:{port}/?name=x", timeout=2).text
            time.sleep(0.1)
        assert body == '{"message":"Howdy, x!"}'
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError):  # the runtime went away with the supervisor
        httpx.get(f"http://127.0.0.1:{port}/health/liveness", timeout=1)


def test_invoke_sends_cloudevents_and_reports_failures(tmp_path: Path) -> None:
    code, out = fn("invoke", "--url", "http://127.0.0.1:9", "--event-type", "t")
    assert code == 1 and "127.0.0.1:9" in out
    assert fn("invoke", "-H", "no-colon")[0] == 1


def test_snapshot_sees_changes_but_not_caches(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("1")
    (tmp_path / "__pycache__").mkdir()
    before = snapshot(tmp_path)
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "b.py").write_text("2")
    (tmp_path / "a.py").write_text("11")
    assert changed_files(before, snapshot(tmp_path)) == ["a.py", "b.py"]


def test_build_context_and_dry_runs(tmp_path: Path) -> None:
    project = tmp_path / "ctx"
    fn("init", "ctx", "--dir", str(project))
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "junk.pyc").write_bytes(b"x")
    code, out = fn("build", "-C", str(project), "--context-dir", str(tmp_path / "out"))
    assert code == 0, out
    dockerfile = (tmp_path / "out" / "Dockerfile").read_text().splitlines()
    assert dockerfile[0] == "FROM flotilla.local/python:3.11"
    assert dockerfile[-1] == "COPY function/ /function/"  # code is the top layer
    assert (tmp_path / "out" / "deps" / "starlette" / "__init__.py").exists()
    assert (tmp_path / "out" / "runtime" / "flotilla" / "fn" / "runtime" / "app.py").exists()
    assert (tmp_path / "out" / "runtime" / "flotilla" / "__init__.py").read_text() == ""
    assert not (tmp_path / "out" / "function" / "__pycache__").exists()
    code, out = fn(
        "deploy", "-C", str(project), "--dry-run", "--target", "knative", "--image", "reg/ctx:1"
    )
    (ksvc,) = yaml.safe_load_all(out)
    assert ksvc["kind"] == "Service" and ksvc["apiVersion"] == "serving.knative.dev/v1"
    code, out = fn("pipeline", "-C", str(project), "--write", str(tmp_path / "p.yaml"))
    kinds = [d["kind"] for d in yaml.safe_load_all((tmp_path / "p.yaml").read_text())]
    assert kinds == [
        "Task", "Task", "Task", "Pipeline", "ServiceAccount", "Role", "RoleBinding"
    ]  # fmt: skip


def test_build_without_a_reachable_dockerd_says_so(tmp_path: Path) -> None:
    project = tmp_path / "nodock"
    fn("init", "nodock", "--dir", str(project))
    code, out = fn("build", "-C", str(project), "--docker-host", f"unix://{tmp_path}/no-such.sock")
    assert code == 1 and "cannot reach dockerd" in out


def test_a_missing_kubeconfig_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "nokube"
    fn("init", "nokube", "--dir", str(project))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    code, out = fn("deploy", "-C", str(project), "--no-wait")
    assert code == 1 and "kubeconfig" in out and "absent" in out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out


def test_no_dockerd_never_shows_a_variable_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "nodock2"
    fn("init", "nodock2", "--dir", str(project))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    code, out = fn("build", "-C", str(project))
    assert code == 1 and "cannot reach dockerd at tcp://127.0.0.1:1" in out
    assert "$DOCKER_HOST" not in out


def test_images_carry_the_cloudevents_sdks() -> None:
    from flotilla.fn.image import build_context
    from flotilla.fn.model import load_spec

    node = build_context(load_spec("name: e\nruntime: node\nsignature: cloudevent\n"), {}).files
    assert "runtime-deps/cloudevents/package.json" in node
    assert "COPY runtime-deps/ /opt/flotilla/node/node_modules/" in node["Dockerfile"].decode()
    plain = build_context(load_spec("name: h\nruntime: node\n"), {}).files
    assert not any(path.startswith("runtime-deps/") for path in plain)
    python = build_context(load_spec("name: p\nruntime: python\n"), {}).files
    assert "deps/cloudevents/http/__init__.py" in python
    assert "runtime/flotilla/fn/runtime/events.py" in python


@pytest.mark.slow
def test_a_java_image_is_the_compiled_function_on_the_jre_base(tmp_path: Path) -> None:
    project = tmp_path / "jhello"
    assert fn("init", "jhello", "--runtime", "java", "--dir", str(project))[0] == 0
    (project / "target").mkdir()
    (project / "target" / "stale.class").write_bytes(b"x")  # a plain `mvn` build: not copied
    code, out = fn("build", "-C", str(project), "--context-dir", str(tmp_path / "ctx"))
    assert code == 0, out
    dockerfile = (tmp_path / "ctx" / "Dockerfile").read_text().splitlines()
    assert dockerfile[0] == "FROM flotilla.local/java:17"
    assert dockerfile[-1] == "COPY classes/ /opt/flotilla/classes/"  # the code is the top layer
    assert any(
        line.startswith('CMD ["java"') and "dev.flotilla.fn.Main" in line for line in dockerfile
    )
    # The class-data archive: trained by the image's JVM below the function's layers, and used
    # by the CMD with the same runtime class-path prefix it was trained with.
    run = next(line for line in dockerfile if line.startswith("RUN "))
    cmd = next(line for line in dockerfile if line.startswith("CMD "))
    train, argv = json.loads(run.removeprefix("RUN ")), json.loads(cmd.removeprefix("CMD "))
    assert train[-2:] == ["dev.flotilla.fn.Main", "--train"]
    assert "-XX:ArchiveClassesAtExit=/opt/flotilla/java/flotilla-fn.jsa" in train
    assert "-XX:SharedArchiveFile=/opt/flotilla/java/flotilla-fn.jsa" in argv
    trained_cp = train[train.index("-cp") + 1]
    assert argv[argv.index("-cp") + 1].startswith(trained_cp + ":/opt/flotilla/classes:")
    assert dockerfile.index(run) < dockerfile.index("COPY function/ /function/")
    assert (tmp_path / "ctx" / "classes" / "function" / "Function.class").is_file()
    assert (tmp_path / "ctx" / "runtime" / "flotilla-fn.jar").is_file()
    assert any((tmp_path / "ctx" / "runtime" / "lib").glob("cloudevents-core-*.jar"))
    assert (tmp_path / "ctx" / "function" / "src" / "main" / "java" / "function").is_dir()
    assert not (tmp_path / "ctx" / "function" / "target").exists()
