"""The one CLI convention (docs/cli.md), enforced over the whole ``flotilla`` command tree.

Every command is found by walking the tree the way click does (lazily loaded systems included),
so a new command is held to the convention the moment it is registered: ``--help`` works, an
unknown flag is a usage error (2), ``-o`` means the output format, ``-n`` means the namespace,
``--kubeconfig`` follows the shared order, durations are Go durations. Then a few
representative failures per system must each read as one ``Error:`` line and no traceback.
"""

from __future__ import annotations

import enum
import typing
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from flotilla.cli import app
from flotilla.core.cli import KUBECONFIG_HELP, NO_RESOURCES, duration
from flotilla.core.units import parse_duration

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        ctx = typer.Context(command)
        for name in command.list_commands(ctx):
            found += _walk(command.get_command(ctx, name), (*path, name))
    return found


TREE = _walk(typer.main.get_command(app))
COMMANDS = [(path, cmd) for path, cmd in TREE if path and not hasattr(cmd, "list_commands")]
GROUPS = [path for path, cmd in TREE if hasattr(cmd, "list_commands")]
IDS = [" ".join(path) for path, _ in COMMANDS]

# Commands that print data (rather than act, serve or stream logs): each takes -o json.
DATA_COMMANDS = {
    "updates instances",
    "updates activity",
    "updates fleetlock holders",
    "updates fleetlock groups",
    "operators audit",
    "operators status",
    "fn list",
    "fn build",
    "fn pipeline",
    "dev get",
    "dev describe",
    "dev render",
    "localpv manifests",
    "testenv status",
}
DURATION_WORDS = ("timeout", "interval", "delay", "grace", "fuzz", "heartbeat", "older-than")
DURATION_WORDS += ("retention", "download")


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if getattr(p, "opts", None) and p.opts[0].startswith("-")]


def _parser(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(getattr(descriptor, "parameter_info", None), "parser", None)


def _formats(param: Any) -> set[str]:
    """The values ``-o`` accepts: from its metavar (core.cli.output_option) or its Enum."""
    annotation = param.type_descriptor.annotation
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return {m.value for m in candidate}
    return set((param.metavar or "").split("|"))


def test_the_walk_finds_every_system_and_many_commands() -> None:
    assert {path[0] for path in GROUPS if path} >= {"updates", "dev", "fn", "operators"}
    assert len(COMMANDS) > 40
    names = {" ".join(path) for path, _ in COMMANDS}
    assert names >= DATA_COMMANDS, DATA_COMMANDS - names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_works_and_unknown_flags_are_usage_errors(path: tuple[str, ...], command: Any) -> None:
    assert runner.invoke(app, [*path, "--help"]).exit_code == 0
    result = runner.invoke(app, [*path, "--no-such-flag"])
    assert result.exit_code == 2, result.output
    assert "No such option: --no-such-flag" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(p) or "flotilla")
def test_groups_refuse_unknown_flags(path: tuple[str, ...]) -> None:
    assert runner.invoke(app, [*path, "--no-such-flag"]).exit_code == 2


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_shared_flags_mean_one_thing(path: tuple[str, ...], command: Any) -> None:
    name = " ".join(path)
    outputs = [p for p in _options(command) if "-o" in p.opts or "--output" in p.opts]
    if name in DATA_COMMANDS:
        assert outputs, f"{name} prints data but has no -o"
    for param in outputs:
        assert {"-o", "--output"} <= set(param.opts), f"{name}: -o and --output go together"
        assert "json" in _formats(param) and "yaml" in _formats(param), f"{name}: -o formats"
    for param in _options(command):
        opts = set(param.opts)
        if "-n" in opts or "--namespace" in opts:
            assert {"-n", "--namespace"} <= opts, f"{name}: -n is --namespace, always"
        if "--kubeconfig" in opts:
            assert param.envvar is None, f"{name}: $KUBECONFIG is read by the shared resolver"
            assert param.help == KUBECONFIG_HELP, f"{name}: --kubeconfig help is the shared one"
        long = next((o for o in param.opts if o.startswith("--")), "")
        if any(word in long for word in DURATION_WORDS) and not param.is_flag:
            parsed = _parser(param) is duration
            assert parsed or isinstance(param.default, str), f"{name} {long}: not a duration"
            if param.default not in (None, ""):
                parse_duration(param.default)  # a Go duration, such as 90s or 10m


@pytest.mark.parametrize("name", sorted(DATA_COMMANDS))
def test_data_commands_take_o_json(name: str) -> None:
    """``-o json`` parses for every data command: the run itself may then fail on its input."""
    path = name.split()
    result = runner.invoke(app, [*path, "-o", "json", "--help"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, [*path, "-o", "xml"])
    assert bad.exit_code == 2 and "-o" in bad.stderr, bad.output


def _broken_kubeconfig(tmp: Path) -> str:
    path = tmp / "broken-kubeconfig"
    path.write_text("clusters: [\n")
    return str(path)


# (argv with {tmp} for a fresh directory, extra environment, exit code, text the one line holds)
RUNTIME_ERRORS: list[tuple[list[str], dict[str, str], int, str]] = [
    (["updates", "instances", "--db", "{tmp}/missing.db"], {}, 1, "no database at"),
    (["updates", "activity", "--db", "{tmp}/no/dir/x.db"], {}, 1, "no database at"),
    (["updates", "fleetlock", "holders", "--db", "{tmp}/missing.db"], {}, 1, "no database at"),
    (["updates", "instances"], {"FLOTILLA_UPDATES_DB": "{tmp}/env.db"}, 1, "no database at"),
    (["updates", "reboot-coordinator", "--kubeconfig", "{tmp}/nope"], {}, 1, "does not exist"),
    (["operators", "status", "--kubeconfig", "{broken}"], {}, 2, "cannot use kubeconfig"),
    (["operators", "status"], {"KUBECONFIG": "{tmp}/nope"}, 2, "$KUBECONFIG"),
    (["localpv", "crds", "--kubeconfig", "{broken}"], {}, 1, "cannot use kubeconfig"),
    (["localpv", "controller"], {"KUBECONFIG": "{tmp}/nope"}, 1, "$KUBECONFIG"),
    (["fn", "list", "--kubeconfig", "{tmp}/nope"], {}, 1, "does not exist"),
    (["fn", "deploy", "-C", "{tmp}/no-project"], {}, 1, "function.yaml not found"),
    (["dev", "render", "-f", "{tmp}/Tiltfile"], {}, 1, "Tiltfile"),
    (["dev", "get", "--port", "9"], {}, 1, "no `flotilla dev up` answering"),
    (["charts", "index", "{tmp}/nothing"], {}, 1, "is not a directory"),
    (["testenv", "kubeconfig", "--state-dir", "{tmp}"], {}, 1, "no environment is running"),
]


@pytest.mark.parametrize(
    ("argv", "env", "code", "text"),
    RUNTIME_ERRORS,
    ids=[" ".join(r[0][:3]) for r in RUNTIME_ERRORS],
)
def test_runtime_errors_are_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], code: int, text: str
) -> None:
    fill = {"tmp": str(tmp_path), "broken": _broken_kubeconfig(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    env = {"HOME": str(tmp_path), "FLOTILLA_DEBUG": ""} | {
        k: v.format(**fill) for k, v in env.items()
    }
    result = runner.invoke(app, argv, env=env)
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.db")), "a command that reads created a database"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    db = str(tmp_path / "fleet.db")
    apply = runner.invoke(
        app, ["updates", "apply", "-f", str(ROOT / "examples/updates/fleet.yaml"), "--db", db]
    )
    assert apply.exit_code == 0, apply.output
    for argv in (
        ["updates", "instances", "--db", db, "--status", "Bogus"],
        ["updates", "instances", "--db", db, "-o", "xml"],
        ["updates", "simulate", "--server", "http://x/", "--timeout", "ten minutes"],
        ["dev", "render", "--bogus"],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert "Error: " in result.stderr and "Traceback" not in result.output


def test_empty_results_say_so_and_machine_output_stays_parseable(tmp_path: Path) -> None:
    db = str(tmp_path / "fleet.db")
    fleet = str(ROOT / "examples/updates/fleet.yaml")
    assert runner.invoke(app, ["updates", "apply", "-f", fleet, "--db", db]).exit_code == 0
    table = runner.invoke(app, ["updates", "instances", "--db", db, "--status", "OnHold"])
    assert table.exit_code == 0
    assert table.stdout == "" and table.stderr.strip() == NO_RESOURCES
    as_json = runner.invoke(app, ["updates", "instances", "--db", db, "-o", "json"])
    assert as_json.exit_code == 0 and as_json.stdout.strip() == "[]"
    as_yaml = runner.invoke(app, ["updates", "fleetlock", "groups", "--db", db, "-o", "yaml"])
    assert as_yaml.exit_code == 0 and as_yaml.stdout.strip() == "[]"
    activity = runner.invoke(app, ["updates", "activity", "--db", db, "-o", "yaml"])
    assert activity.exit_code == 0
    assert isinstance(yaml.safe_load(activity.stdout), list)


def test_debug_shows_what_the_one_line_hides(tmp_path: Path) -> None:
    """Unexpected errors: one line by default, the traceback with ``--debug``."""
    bad_db = tmp_path / "not-a.db"
    bad_db.write_text("this is not SQLite")
    plain = runner.invoke(app, ["updates", "instances", "--db", str(bad_db)])
    assert plain.exit_code == 1
    assert plain.stderr.startswith("Error: ") and len(plain.stderr.splitlines()) == 1
    debug = runner.invoke(
        app, ["--debug", "updates", "instances", "--db", str(bad_db)], env={"FLOTILLA_DEBUG": ""}
    )
    assert debug.exit_code == 1 and debug.exception is not None
    assert not isinstance(debug.exception, SystemExit)
