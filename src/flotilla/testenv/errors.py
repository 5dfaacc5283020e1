"""Errors of the test environment, each saying what failed and what to do about it."""

from flotilla.core.errors import FlotillaError


class TestEnvError(FlotillaError):
    """Base of every test-environment failure shown to the user (``error: ...``, exit 1)."""

    __test__ = False  # not a pytest test class despite the name


class BuildError(TestEnvError):
    """Building a Go component failed; the message carries the tail of the go output."""


class StartError(TestEnvError):
    """A component did not start or did not become healthy in time."""
