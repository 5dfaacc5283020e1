"""File watching with watchfiles: debounced batches of changed paths go to ``Session.changed``."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import watchfiles

if TYPE_CHECKING:
    from flotilla.dev.runtime.session import Session

logger = logging.getLogger(__name__)
_ALWAYS_IGNORED = ("/.git/", "/__pycache__/", "/.mypy_cache/", "/.pytest_cache/")


def watch_roots(session: Session) -> list[str]:
    """Existing directories covering the Tiltfile's files, image contexts and deps, deduplicated."""
    assert session.result is not None
    paths = set(session.result.watched_files) | {str(session.tiltfile)}
    for image in session.images.values():
        paths.update(image.watched)
    for r in session.resources:
        if r.local is not None:
            paths.update(r.local.deps)
    dirs = set()
    for p in paths:
        d = p if os.path.isdir(p) else os.path.dirname(p)
        while d and not os.path.isdir(d):
            d = os.path.dirname(d)
        if d:
            dirs.add(d)
    roots: list[str] = []
    for d in sorted(dirs, key=len):
        if not any(d == r or d.startswith(r.rstrip("/") + "/") for r in roots):
            roots.append(d)
    return roots


def relevant(path: str) -> bool:
    """Editor droppings and caches never trigger anything."""
    name = os.path.basename(path)
    if name.endswith(("~", ".swp", ".swx", ".pyc")) or name.startswith(".#"):
        return False
    return not any(part in path + "/" for part in _ALWAYS_IGNORED)


def watch_loop(session: Session, debounce_ms: int) -> None:
    """Watch until the session stops; re-reads its roots after every Tiltfile reload."""
    while not session.stop_event.is_set():
        roots = watch_roots(session)
        generation = id(session.result)
        if not roots:
            session.stop_event.wait(1.0)
            continue
        for batch in watchfiles.watch(*roots, stop_event=session.stop_event,
                                      debounce=debounce_ms, step=10,
                                      rust_timeout=500, yield_on_timeout=True,
                                      raise_interrupt=False, recursive=True):
            paths = {p for _, p in batch if relevant(p)}
            if paths:
                try:
                    session.changed(paths)
                except Exception:  # a bad batch must not end the watch
                    logger.exception("handling file changes failed")
            if id(session.result) != generation:
                break
