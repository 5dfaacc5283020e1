"""Progress of long work: redrawn in place on a terminal, a plain line every few seconds elsewhere.

Off a terminal (CI logs, ``| tee``, a pod's log) Rich draws nothing until the work ends, so a
ten-minute simulation looked hung. :func:`activity` prints a line when the work starts, the
latest detail every :func:`interval` seconds while it runs, and one when it ends.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

INTERVAL_ENV = "FLOTILLA_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0


def interval() -> float:
    """Seconds between lines off a terminal: ``$FLOTILLA_PROGRESS_INTERVAL`` (a Go duration).

    Anything that is not a positive duration means the default: ``0`` would write lines as
    fast as the thread can loop, filling the log it was meant to keep readable.
    """
    from flotilla.core.units import parse_duration

    text = os.environ.get(INTERVAL_ENV, "")
    try:
        seconds = parse_duration(text).total_seconds() if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return seconds if seconds > 0 else DEFAULT_INTERVAL


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether progress can redraw in place on ``stream`` (default stderr)."""
    chosen = stream or sys.stderr
    return bool(getattr(chosen, "isatty", lambda: False)())


class LineProgress:
    """The off-terminal view: the latest detail, written as one line every ``every`` seconds."""

    def __init__(self, what: str, stream: TextIO, every: float) -> None:
        self.what = what
        self.stream = stream
        self.every = every
        self.detail = ""
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def update(self, detail: str) -> None:
        """Remember the newest detail; the next line shows it."""
        with self._lock:
            self.detail = detail

    def line(self, state: str = "") -> None:
        """Write one line now: what, elapsed seconds, the latest detail."""
        with self._lock:
            detail = self.detail
        elapsed = time.monotonic() - self.started
        text = f"{self.what}{': ' + state if state else ''} [{elapsed:.0f}s]"
        self.stream.write(f"{text} {detail}".rstrip() + "\n")
        self.stream.flush()

    def __enter__(self) -> LineProgress:
        self.line("started")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.line("failed" if exc[0] is not None else "done")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.line()


@contextmanager
def activity(what: str, stream: TextIO | None = None) -> Iterator[Callable[[str], None]]:
    """Show ``what`` while the block runs; the block calls the yielded function with details.

    A Rich spinner on a terminal; otherwise :class:`LineProgress` lines on ``stream``.
    """
    out = stream or sys.stderr
    if on_terminal(out):
        from rich.console import Console

        console = Console(file=out)
        with console.status(what) as status:
            yield lambda detail: status.update(f"{what}: {detail}"[:200])
        return
    with LineProgress(what, out, interval()) as lines:
        yield lines.update
