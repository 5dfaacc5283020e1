"""Functions with health, metrics and tracing built in, the same in every runtime.

``model`` (function.yaml), ``manifests``, ``pipeline`` and ``templates`` are the pure core;
``image``, ``deploy`` and ``devloop`` are adapters; ``runtime`` is what runs inside the image.
Nothing is imported eagerly here: ``python -m flotilla.fn.runtime`` must start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import FunctionSpec, FunctionSpecError, load_spec, parse_spec

__all__ = ["FunctionSpec", "FunctionSpecError", "load_spec", "parse_spec"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
