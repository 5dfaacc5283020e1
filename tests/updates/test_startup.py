"""``flotilla updates --help`` loads no heavy library: a guard for the start-up time.

Timing is measured by the benchmark; this test fails as soon as a module-level import of a heavy
library creeps back into the command modules, which is what makes ``--help`` slow.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "httpx", "jinja2",
         "rich.markdown", "lightkube", "prometheus_client", "yaml", "defusedxml",
         "flotilla.updates.models")


def _loaded_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        f"sys.argv = {argv!r}\n"
        "from flotilla.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stderr.split())


def test_updates_help_loads_no_heavy_library() -> None:
    assert _loaded_after(["flotilla", "updates", "--help"]) == set()


def test_each_command_help_loads_no_heavy_library() -> None:
    for command in ("serve", "apply", "instances", "activity", "agent", "reboot-coordinator",
                    "simulate"):
        assert _loaded_after(["flotilla", "updates", command, "--help"]) == set(), command
