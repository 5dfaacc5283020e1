"""The errors of Tiltfile evaluation; light on purpose so the CLI can import them at start-up."""

from __future__ import annotations

from flotilla.core.errors import FlotillaError


class TiltfileError(FlotillaError):
    """A Tiltfile failed to evaluate; ``file`` and ``line`` say where (line 0 when unknown).

    The root error of ``flotilla dev``: the CLI shows it as ``error: ...`` and exit 1.
    """

    def __init__(self, message: str, file: str = "", line: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


class UsageError(TiltfileError):
    """A built-in was called wrongly (bad argument, duplicate, missing file, failed command).

    Built-ins raise it with the message alone; the evaluator, which sees the Starlark call
    stack, raises it on with the Tiltfile's ``file`` and ``line`` filled in.
    """


class BuiltinError(Exception):
    """What Starlark sees when a built-in fails; the evaluator turns it into a ``TiltfileError``."""
