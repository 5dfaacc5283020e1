"""The registry of Tilt built-ins and what they may use of the evaluator.

``@builtin("name")`` records a ``Builtins`` method under its Tilt name, as kopf's ``on.*``
decorators fill kopf's registries; the evaluator exposes exactly what ``REGISTRY`` holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from flotilla.dev.plan.model import TiltfileResult

_Method = TypeVar("_Method", bound=Callable[..., Any])

REGISTRY: dict[str, str] = {}
"""Tilt name -> name of the ``Builtins`` method that implements it."""


def builtin(tilt_name: str = "") -> Callable[[_Method], _Method]:
    """Record the decorated method as the Tilt built-in ``tilt_name`` (default: its own name)."""

    def record(method: _Method) -> _Method:
        name = tilt_name or method.__name__
        if name in REGISTRY:
            raise RuntimeError(f"built-in {name!r} registered twice")
        REGISTRY[name] = method.__name__
        return method

    return record


class Scope(Protocol):
    """What the built-ins need of the evaluator; it is passed in, never imported."""

    @property
    def result(self) -> TiltfileResult: ...
    @property
    def blobs(self) -> set[str]: ...
    @property
    def cwd(self) -> Path: ...
    @property
    def kube_context(self) -> str: ...
    @property
    def kube_namespace(self) -> str: ...
    def path(self, p: str) -> str: ...
    def watch(self, p: str) -> None: ...
    def blob(self, text: str) -> str: ...
    def include(self, path: str) -> None: ...
    def warn_once(self, what: str) -> None: ...
    def load_dynamic(self, path: str) -> dict[str, Any]: ...
