"""Keep the dev loop's records (what `up` applied, for `down`) out of the real home directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _dev_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DEV_STATE", str(tmp_path / "dev-state"))


@pytest.fixture(autouse=True)
def _extension_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extension clones go to a temporary cache; no test reads the user's extensions dir."""
    monkeypatch.setenv("FLOTILLA_DEV_EXTENSIONS_CACHE", str(tmp_path / "ext-cache"))
    monkeypatch.delenv("FLOTILLA_DEV_EXTENSIONS", raising=False)
