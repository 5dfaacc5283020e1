"""``flotilla dev render`` on the example projects, and errors as a user sees them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flotilla.cli import app
from tests.core.test_yamlload import bomb

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "dev"
BIG = Path(__file__).parent / "data" / "big" / "Tiltfile"


def render(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["dev", "render", *args])
    return result.exit_code, result.stdout, result.stderr


def docs(text: str) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_python_example_renders_resources_and_injected_manifests() -> None:
    code, out, _ = render(
        "-f", str(EXAMPLES / "python-app" / "Tiltfile"), "--", "--registry", "127.0.0.1:5000"
    )
    assert code == 0
    head, *objs = docs(out)
    resources = {r["name"]: r for r in head["resources"]}  # type: ignore[union-attr,index]
    app_res = resources["hello-py"]
    assert app_res["resource_deps"] == ["write-start-time"]
    assert app_res["port_forwards"] == ["18080:8000"]
    steps = app_res["images"][0]["live_update"]
    assert [next(iter(s)) for s in steps] == ["fall_back_on", "sync", "run"]
    deploy = next(o for o in objs if o["kind"] == "Deployment")
    image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]
    assert image.startswith("127.0.0.1:5000/flotilla.local_hello-py:tilt-")


@pytest.mark.parametrize("example", ["go-style", "custom-build", "compose"])
def test_examples_render(example: str) -> None:
    code, out, err = render("-f", str(EXAMPLES / example / "Tiltfile"))
    assert code == 0, err
    assert docs(out)[0]["resources"]


def test_big_monorepo_tiltfile_with_flags() -> None:
    code, out, err = render(
        "-f", str(BIG), "--", "api", "--frontend=false", "--extra-labels", "team-a"
    )
    assert code == 0, err
    head = docs(out)[0]
    names = [r["name"] for r in head["resources"]]  # type: ignore[index,union-attr]
    assert "web" not in names and {"api", "worker", "billing", "db"} <= set(names)
    assert head["warnings"] == ["frontend disabled: web is not deployed"]
    assert "api" in head["enabled_resources"]  # type: ignore[operator]
    api = next(r for r in head["resources"] if r["name"] == "api")  # type: ignore[union-attr]
    assert api["labels"] == ["backend", "team-a"]
    assert api["resource_deps"] == ["uncategorized", "db", "codegen"]
    assert "environment: dev" in err


def test_big_tiltfile_rejects_an_unknown_service() -> None:
    code, _, err = render("-f", str(BIG), "--", "nope")
    assert code == 1
    assert 'unknown service "nope"' in err and "Tiltfile:96:" in err


def test_render_points_at_the_tiltfile_line(tmp_path: Path) -> None:
    (tmp_path / "Tiltfile").write_text("k8s_yaml([])\nsecret_settingz(True)\n")
    code, out, err = render("-f", str(tmp_path / "Tiltfile"))
    assert code == 1 and out == ""
    assert f"{tmp_path / 'Tiltfile'}:2:" in err and "secret_settingz" in err


def test_render_reports_a_missing_tiltfile(tmp_path: Path) -> None:
    code, _, err = render("-f", str(tmp_path / "nope"))
    assert code == 1 and "no Tiltfile" in err


def test_render_of_a_broken_manifest(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "python-app", tmp_path / "app")
    (tmp_path / "app" / "k8s.yaml").write_text("kind: [\n")
    code, _, err = render("-f", str(tmp_path / "app" / "Tiltfile"))
    assert code == 1 and "invalid YAML" in err and "Tiltfile:28:" in err


def test_render_of_a_yaml_alias_bomb_is_a_quick_clear_error(tmp_path: Path) -> None:
    (tmp_path / "Tiltfile").write_text("k8s_yaml('k8s.yaml')\n")
    (tmp_path / "k8s.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\ndata:\n"
        + "".join(f"  {row}\n" for row in bomb(9).splitlines())
    )
    start = time.monotonic()
    code, out, err = render("-f", str(tmp_path / "Tiltfile"))
    assert time.monotonic() - start < 5
    assert code == 1 and out == ""
    assert "alias bomb" in err and "Tiltfile:1:" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["dev", "--help"], ["dev", "up", "--help"]])
def test_help_loads_no_interpreter_docker_or_kubernetes_client(argv: list[str]) -> None:
    """Start-up stays fast: ``--help`` must not import what only running a Tiltfile needs."""
    code = (
        "import sys\nfrom flotilla.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = ('starlark', 'docker', 'lightkube', 'watchfiles', 'fastapi', 'uvicorn')\n"
        "print('LOADED:' + ','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "Usage" in out
    assert out.strip().splitlines()[-1] == "LOADED:"
