"""``fn logs -f`` decisions: which container starts get a stream, and from which line.

The end-to-end run against a real node is in ``test_cluster.py``; here the API's log endpoint is
a recording stand-in, so the choices can be checked one event at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flotilla.fn.logs import LogFollower, container_start


def pod(name: str, state: str, restarts: int = 0, container: str = "function") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "status": {
            "containerStatuses": [
                {"name": container, "restartCount": restarts, "state": {state: {}}}
            ]
        },
    }


class RecordingLogs:
    """Answers ``log(..., follow=True)`` with two lines per call and records the arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def log(self, name: str, **kwargs: Any) -> Iterator[str]:
        assert kwargs["follow"] is True and kwargs["container"] == "function"
        self.calls.append((name, kwargs["tail_lines"]))
        yield f"{name} first\n"
        yield f"{name} second\n"


def drain(follower: LogFollower, count: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        got.append(follower.lines.get(timeout=5))
    return got


def test_only_a_started_function_container_has_logs_to_follow() -> None:
    assert container_start(pod("a", "running")) == ("a", 0)
    assert container_start(pod("a", "terminated", restarts=2)) == ("a", 2)
    assert container_start(pod("a", "waiting")) is None  # pulling, or crash back-off
    assert container_start(pod("a", "running", container="queue-proxy")) is None
    assert container_start({"metadata": {"name": "a"}, "status": {}}) is None


def test_pods_at_the_start_get_the_tail_later_ones_every_line() -> None:
    api = RecordingLogs()
    follower = LogFollower(api, "f", "ns", tail=7)  # type: ignore[arg-type]
    follower._on_change("ADDED", pod("old", "running"))
    follower.synced.set()  # what the informer does after its first list
    follower._on_change("ADDED", pod("new", "waiting"))
    follower._on_change("MODIFIED", pod("new", "running"))
    follower._on_change("MODIFIED", pod("new", "running"))  # the same start: no second stream
    follower._on_change("MODIFIED", pod("new", "running", restarts=1))  # a restart: a new one
    follower._on_change("DELETED", pod("gone", "running"))
    lines = drain(follower, 6)
    assert sorted(api.calls) == [("new", None), ("new", None), ("old", 7)]
    assert sorted(lines) == sorted(
        [("old", "old first"), ("old", "old second")]
        + [("new", "new first"), ("new", "new second")] * 2
    )


def test_a_stream_that_fails_says_so_on_its_pods_line() -> None:
    class Failing:
        def log(self, name: str, **kwargs: Any) -> Iterator[str]:
            raise RuntimeError('pods "p" not found\nmore detail')
            yield ""

    follower = LogFollower(Failing(), "f", "ns", tail=1)  # type: ignore[arg-type]
    follower._on_change("ADDED", pod("p", "running"))
    assert drain(follower, 1) == [("p", '(log stream ended: pods "p" not found)')]
