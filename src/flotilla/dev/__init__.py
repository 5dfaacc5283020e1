"""Inner dev loop: run Tiltfiles — evaluate, build, deploy, live update, web UI (docs/dev.md)."""

from __future__ import annotations

__all__ = ["Engine", "EngineConfig", "TiltfileError", "evaluate"]

from flotilla.dev.runtime.engine import Engine, EngineConfig
from flotilla.dev.tiltfile.evaluator import TiltfileError, evaluate
