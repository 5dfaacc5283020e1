"""Small helpers the command modules of every room share (Typer and the standard library)."""

from __future__ import annotations

from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
"""Where Linux tells the current boot's id; a new one means the machine rebooted."""


def read_text(path: Path) -> str:
    """The file's text, or "" when it cannot be read (missing config files are normal)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
