"""Long work off a terminal: a line at the start, the latest detail every interval, one at the end.

A CI log or a pipe gets no live redraw, so without these lines a ten-minute run looked hung
(issue 25). The interval comes from ``$FLOTILLA_PROGRESS_INTERVAL`` so tests need not wait 5 s.
"""

from __future__ import annotations

import io
import re
import time

import pytest

from flotilla.core.progress import DEFAULT_INTERVAL, INTERVAL_ENV, activity, interval, on_terminal


def _wait_for(stream: io.StringIO, pattern: str, deadline: float = 20.0) -> None:
    """Until a line matching ``pattern`` has been written (the thread writes on its own)."""
    end = time.monotonic() + deadline
    while not any(re.fullmatch(pattern, line) for line in stream.getvalue().splitlines()):
        assert time.monotonic() < end, f"no line {pattern!r} in {stream.getvalue()!r}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1m", 60.0), ("3", 3.0), ("", DEFAULT_INTERVAL)],
)
def test_the_interval_is_a_go_duration(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv(INTERVAL_ENV, value)
    assert interval() == seconds


@pytest.mark.parametrize("value", ["0", "0s", "soon", "-1s"])
def test_a_useless_interval_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """``0`` would write lines in a busy loop; nonsense must not break the command either."""
    monkeypatch.setenv(INTERVAL_ENV, value)
    assert interval() == DEFAULT_INTERVAL


def test_off_a_terminal_it_writes_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "50ms")
    out = io.StringIO()
    assert not on_terminal(out)
    with activity("copying", stream=out) as update:
        update("3 of 10 files")
        _wait_for(out, r"copying \[\d+s\] 3 of 10 files")
        update("9 of 10 files")
        _wait_for(out, r"copying \[\d+s\] 9 of 10 files")
    lines = out.getvalue().splitlines()
    assert lines[0] == "copying: started [0s]"
    assert re.fullmatch(r"copying: done \[\d+s\] 9 of 10 files", lines[-1])
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()  # nothing redrawn


def test_a_failure_says_failed_and_the_error_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "1h")
    out = io.StringIO()

    def copy() -> None:
        with activity("copying", stream=out) as update:
            update("7 of 10 files")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        copy()
    lines = out.getvalue().splitlines()
    assert lines == ["copying: started [0s]", "copying: failed [0s] 7 of 10 files"]
