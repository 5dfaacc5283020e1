"""A function's own dependencies: installed once per hash of their pins, used by fn run and by
the image (the image parts are checked as a build context; building it needs dockerd)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from flotilla.fn.deps import DependencyError, function_dependencies
from flotilla.fn.devloop import serve_command
from flotilla.fn.image import build_context, function_files
from flotilla.fn.model import load_spec

from .support import free_port, wait_http

PROJECTS = {
    "python": {
        "function.yaml": "name: deps-py\nruntime: python\n",
        "requirements.txt": "six==1.17.0\n",
        "func.py": "import six\n\n\ndef handle(request):\n    return {'six': six.__version__}\n",
    },
    "node": {
        "function.yaml": "name: deps-js\nruntime: node\n",
        "package.json": json.dumps({"name": "f", "private": True, "dependencies": {"ms": "2.1.3"}}),
        "index.js": "const ms = require('ms');\nexports.handle = () => ({ ms: ms('2s') });\n",
    },
}
EXPECTED = {"python": {"six": "1.17.0"}, "node": {"ms": 2000}}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["python", "node"])
def test_dependencies_install_once_and_serve_in_run_and_image(
    runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flotilla.fn.devloop import _node

    # The pinned Node from the usual cache, not downloaded again into the empty one below.
    monkeypatch.setenv("FLOTILLA_FN_NODE", _node())
    monkeypatch.setenv("FLOTILLA_CACHE_DIR", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    for name, text in PROJECTS[runtime].items():
        (project / name).write_text(text)
    installed = function_dependencies(runtime, project)
    assert installed is not None and installed.is_dir()
    marker = installed.parent / ".complete"
    before = marker.stat().st_mtime_ns
    assert function_dependencies(runtime, project) == installed  # cached by the pins' hash
    assert marker.stat().st_mtime_ns == before
    spec = load_spec((project / "function.yaml").read_text())
    port = free_port()
    command = serve_command(spec, project, port)
    proc = subprocess.Popen(command.argv, env=command.env, cwd=command.cwd)
    try:
        wait_http(f"http://127.0.0.1:{port}/health/readiness")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json() == EXPECTED[runtime]
    finally:
        proc.terminate()
        proc.wait(15)
    context = build_context(spec, function_files(project), installed).files
    dockerfile = context["Dockerfile"].decode()
    assert "COPY userdeps/ /opt/flotilla/userdeps/" in dockerfile
    assert dockerfile.index("COPY userdeps/") < dockerfile.index("COPY function/")
    assert any(p.startswith("userdeps/") for p in context)


def test_no_pins_no_install_and_a_failed_install_is_one_line(tmp_path: Path) -> None:
    assert function_dependencies("python", tmp_path, tmp_path / "cache") is None
    (tmp_path / "requirements.txt").write_text("this is not a requirement ===\n")
    with pytest.raises(DependencyError, match=r"installing requirements\.txt failed"):
        function_dependencies("python", tmp_path, tmp_path / "cache")


def test_a_package_json_without_dependencies_needs_no_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Node template's package.json has only scripts: nothing to install, so a machine (or
    the pipeline's flotilla image) without npm builds it."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))
    (tmp_path / "package.json").write_text('{"name": "f", "scripts": {"test": "node --test"}}')
    assert function_dependencies("node", tmp_path, tmp_path / "cache") is None
    (tmp_path / "package.json").write_text('{"dependencies": {"ms": "2.1.3"}}')
    with pytest.raises(DependencyError, match=r"npm is not installed.*package\.json dependencies"):
        function_dependencies("node", tmp_path, tmp_path / "cache")
    (tmp_path / "package.json").write_text("{not json")
    with pytest.raises(DependencyError, match=r"package\.json: not valid JSON"):
        function_dependencies("node", tmp_path, tmp_path / "cache")
