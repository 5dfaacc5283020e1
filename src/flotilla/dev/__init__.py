"""Inner dev loop: run Tiltfiles — evaluate, build, deploy, live update, web UI (docs/dev.md).

Sub-packages by role: ``plan`` (pure model and decisions), ``tiltfile`` (evaluation),
``runtime`` (the engine and its adapters); the CLI, UI and teardown sit on top. The names below
load lazily so ``flotilla dev --help`` imports neither starlark, docker nor lightkube.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "EngineConfig", "TiltfileError", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "EngineConfig"):
        from flotilla.dev.runtime import engine

        return getattr(engine, name)
    if name == "TiltfileError":
        from flotilla.dev.tiltfile.errors import TiltfileError

        return TiltfileError
    if name == "evaluate":
        from flotilla.dev.tiltfile.evaluator import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
