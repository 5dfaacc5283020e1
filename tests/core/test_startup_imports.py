"""`--help` loads no heavy library: the start-up budget (bench/startup.py) depends on it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"rich", "pydantic", "yaml", "lightkube", "httpx", "sqlalchemy", "docker", "fastapi"}
CODE = (
    "import json, sys\nfrom flotilla.cli import main\nsys.argv = ['flotilla', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
)


def loaded_by(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", CODE, *argv], capture_output=True, text=True,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ("fn", "--help"),
                                  ("fn", "init", "--help"), ("localpv", "--help"),
                                  ("localpv", "agent", "--help"), ("operators", "--help"),
                                  ("operators", "audit", "--help")],
                         ids=" ".join)
def test_help_imports_no_heavy_library(argv: tuple[str, ...]) -> None:
    assert loaded_by(*argv) & HEAVY == set()


def test_rich_and_pydantic_stay_out_of_every_systems_help() -> None:
    """The systems' own imports are their business; typer's help and flags must not add these."""
    for system in ("charts", "updates", "dev", "testenv"):
        assert loaded_by(system, "--help") & {"pydantic", "markdown_it"} == set(), system
