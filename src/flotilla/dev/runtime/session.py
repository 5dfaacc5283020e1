"""What the engine hands its collaborators: a ``Session`` they receive, never the engine itself.

The compose runner, the Kubernetes updater, the monitor and the watcher need a few things of the
running loop — its resources, images, states, log, stop event and deployers. They type against
this protocol, so none of them imports ``engine`` and the engine can import all of them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from flotilla.dev.plan.context import ContextFilter
from flotilla.dev.plan.model import ImageTarget, Resource, TiltfileResult
from flotilla.dev.runtime.build import Builder
from flotilla.dev.runtime.state import ResourceState


class Session(Protocol):
    """The running dev loop as its collaborators see it (``Engine`` implements it)."""

    @property
    def tiltfile(self) -> Path: ...
    @property
    def stop_event(self) -> threading.Event: ...
    @property
    def result(self) -> TiltfileResult | None: ...
    @property
    def resources(self) -> list[Resource]: ...
    @property
    def images(self) -> dict[str, ImageTarget]: ...
    @property
    def states(self) -> dict[str, ResourceState]: ...
    @property
    def builder(self) -> Builder | None: ...
    @property
    def kube(self) -> Any:
        """The ``KubeDeployer``, or None when the Tiltfile deploys nothing to Kubernetes."""
    @property
    def build_slots(self) -> threading.Semaphore:
        """Bounds concurrent builds by ``update_settings(max_parallel_updates)``."""

    def log_to(self, st: ResourceState, line: str) -> None:
        """Append ``line`` to the resource's log (and echo it when asked)."""

    def settings_timeout(self) -> float:
        """Seconds to wait for readiness (``ci_settings(readiness_timeout)``)."""

    def context_filter(self, key: str) -> ContextFilter | None:
        """The ignore rules for an image ref or a local resource's name."""

    def changed(self, paths: set[str], *, force: bool = False) -> None:
        """A debounced batch of file changes from the watcher."""
