"""The one base error of every Flotilla system, carrying the exit code the CLI ends with.

Each system keeps its own hierarchy (``ChartError``, ``OperatorsError``, ...) rooted here, so the
``flotilla`` command maps any of them to a one-line ``Error: ...`` message and this code in one
place (``flotilla.cli``), and nothing else in the CLI needs a ``try``.

Exit codes in use, kept from before this base existed:

- 0: success.
- 1: the default failure (``EXIT_FAILURE``). ``flotilla operators audit`` also uses 1 for "the
  audit found problems at or above ``--fail-on``", which is a result rather than an error.
- 2: usage or input that cannot be read (``EXIT_USAGE``): ``flotilla operators`` (a manifest or
  catalog it cannot load, a cluster it cannot reach) and ``flotilla localpv`` (a root or budget
  it refuses). click uses 2 for bad flags, too.
- 3: ``flotilla operators`` held a change for approval (a result, not an error).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2


class FlotillaError(Exception):
    """Base of every error a system shows its user; ``exit_code`` is what the command exits with.

    Subclasses set ``exit_code`` as a class attribute; one instance may override it by keyword.
    """

    exit_code: int = EXIT_FAILURE

    def __init__(self, *args: object, exit_code: int | None = None) -> None:
        super().__init__(*args)
        if exit_code is not None:
            self.exit_code = exit_code


def cli_message(exc: BaseException) -> str:
    """What the CLI prints for ``exc``: ``Error: `` and the first line of its text, no traceback.

    A file-system error names its file and the reason, without Python's ``[Errno 2]``; any other
    exception that is not ours keeps its class name (often the only clue) and its first line.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror}" if where != "" else exc.strerror
    elif isinstance(exc, FlotillaError):  # ours: worded for the user, kept whole
        text = str(exc).strip()
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0].strip()}" if lines else ""
    return f"Error: {text or type(exc).__name__}"
