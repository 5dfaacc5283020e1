"""Tilt's argument conventions: a string or a list of strings, commands, trigger modes, ports.

Pure functions over the values a Tiltfile passes; each raises ``UsageError`` saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from flotilla.core import units
from flotilla.dev.plan.model import (
    FallBackOn,
    InitialSync,
    Link,
    LiveUpdateStep,
    PortForward,
    RestartContainer,
    Run,
    Sync,
    TriggerMode,
)
from flotilla.dev.tiltfile.errors import UsageError


def strs(value: Any, what: str) -> tuple[str, ...]:
    """Tilt accepts a string or a list of strings almost everywhere."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise UsageError(f"{what} must be a string or a list of strings")
        return tuple(value)
    raise UsageError(f"{what} must be a string or a list of strings, not {type(value).__name__}")


def command_of(value: Any, what: str) -> tuple[str, ...] | str:
    """A command: a string runs through ``sh -c``, a list runs as is.

    A string is trimmed of surrounding whitespace, as Tilt's ``model.ToUnixCmd`` does, so a
    triple-quoted script runs (and shows) the same as in Tilt.
    """
    if isinstance(value, str):
        return value.strip() if value.strip() else value
    return strs(value, what)


def trigger_mode_of(value: Any) -> TriggerMode:
    try:
        return TriggerMode(int(value))
    except (TypeError, ValueError):
        raise UsageError(
            f"invalid trigger_mode {value!r}: use TRIGGER_MODE_AUTO or TRIGGER_MODE_MANUAL"
        ) from None


def objs_of(value: Any, cls: type[Any], what: str) -> tuple[Any, ...]:
    items = value if isinstance(value, list | tuple) else [value] if value is not None else []
    for item in items:
        if not isinstance(item, cls):
            raise UsageError(f"{what} must be {cls.__name__} values, got {type(item).__name__}")
    return tuple(items)


def links_of(value: Any) -> tuple[Link, ...]:
    out = []
    for item in value if isinstance(value, list | tuple) else [value] if value else []:
        out.append(Link(item) if isinstance(item, str) else objs_of(item, Link, "links")[0])
    return tuple(out)


def port_forwards_of(value: Any) -> tuple[PortForward, ...]:
    out: list[PortForward] = []
    items = value if isinstance(value, list | tuple) else [value] if value not in (None, "") else []
    for item in items:
        if isinstance(item, PortForward):
            out.append(item)
        elif isinstance(item, int):
            out.append(PortForward(item, item))
        elif isinstance(item, str):
            # Tilt's forms: PORT, LOCAL:REMOTE, HOST:LOCAL:REMOTE (host: where to listen)
            parts = item.split(":")
            host = parts.pop(0) if len(parts) == 3 else ""
            local, remote = parts[0], parts[1] if len(parts) > 1 else ""
            bad_host = len(parts) == 3 or (host and not re.fullmatch(r"[A-Za-z0-9.-]+", host))
            if bad_host or not local.isdigit() or (remote and not remote.isdigit()):
                raise UsageError(
                    f"port_forwards: {item!r} is not PORT, LOCAL:REMOTE or HOST:LOCAL:REMOTE"
                )
            pf = PortForward(int(local), int(remote or local))
            out.append(dataclasses.replace(pf, host=host) if host else pf)
        else:
            raise UsageError(f"port_forwards: unsupported value {item!r}")
    return tuple(out)


def live_update_steps(steps: Any, roots: tuple[str, ...]) -> tuple[LiveUpdateStep, ...]:
    """Check the steps' order as Tilt does: fall_back_on, initial_sync, sync, run, restart."""
    items = objs_of(
        steps,
        (Sync, Run, RestartContainer, FallBackOn, InitialSync),  # type: ignore[arg-type]
        "live_update",
    )
    rank = {FallBackOn: 0, InitialSync: 1, Sync: 2, Run: 3, RestartContainer: 4}
    last = 0
    for step in items:
        r = rank[type(step)]
        if r < last:
            raise UsageError(
                "live_update steps must be ordered fall_back_on, initial_sync, "
                f"sync, run, restart_container; {type(step).__name__} came too late"
            )
        last = r
        if (
            isinstance(step, Sync)
            and roots
            and not any(
                step.local_path == root or step.local_path.startswith(root.rstrip("/") + "/")
                for root in roots
            )
        ):
            raise UsageError(
                f"sync source {step.local_path} is not inside the build context "
                f"or deps ({', '.join(roots)})"
            )
    return tuple(items)


def parse_config_args(defs: dict[str, tuple[str, bool, str]], args: list[str]) -> dict[str, Any]:
    """Tilt's ``config.parse()`` over ``up -- ARGS``: flags, positionals for ``args=True``."""
    values: dict[str, Any] = {}
    positional = next((n for n, (_, a, _) in defs.items() if a), None)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in defs:
                raise UsageError(
                    f"config: unknown flag --{name} (defined: "
                    f"{', '.join('--' + d for d in sorted(defs)) or 'none'})"
                )
            kind = defs[name][0]
            if kind == "bool":
                values[name] = value.lower() not in ("false", "0", "no") if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise UsageError(f"config: flag --{name} needs a value")
                    value = args[i]
                if kind == "string_list":
                    values.setdefault(name, []).append(value)
                elif kind == "object":
                    values[name] = json.loads(value)
                else:
                    values[name] = value
        else:
            if positional is None:
                raise UsageError(f"config: positional argument {arg!r} but no setting takes args")
            if defs[positional][0] == "string_list":
                values.setdefault(positional, []).append(arg)
            else:
                values[positional] = arg
        i += 1
    return values


GO_DURATIONS = units.DurationGrammar(
    units=frozenset({"ms", "s", "m", "h"}), spaces=False, any_case=False, bare_seconds=False
)
"""Tilt reads durations with Go's ``time.ParseDuration``: ``90s``, ``1.5h``, ``1h30m``, no spaces,
lower-case units, always a unit."""


def duration(text: str) -> float:
    """Go-style durations as Tilt takes them: ``90s``, ``5m``, ``1h30m``, in seconds."""
    try:
        return units.parse_duration(str(text), GO_DURATIONS).total_seconds()
    except ValueError:
        raise UsageError(f"invalid duration {text!r}") from None
