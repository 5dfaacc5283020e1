"""Small helpers the command modules of every room share (Typer and the standard library)."""

from __future__ import annotations

from pathlib import Path

import typer

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
"""Where Linux tells the current boot's id; a new one means the machine rebooted."""


def read_text(path: Path) -> str:
    """The file's text, or "" when it cannot be read (missing config files are normal)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def seconds(text: str, flag: str) -> float:
    """A duration flag (``45m``, ``2h``, ``30``) in seconds; a usage error names the flag."""
    from flotilla.updates.policies import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=flag) from None
