"""Types shared by the charts test fixtures and tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Helm:
    """The real helm binary with HELM_*_HOME pointing at temporary directories."""

    binary: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc


@dataclass(frozen=True)
class GpgKey:
    """A throwaway signing key: its user id, secret keyring (for us), public keyring (for helm)."""

    name: str
    secret_keyring: Path
    public_keyring: Path
    home: Path
