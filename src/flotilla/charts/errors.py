"""One exception hierarchy for the charts system; `flotilla.cli` shows it as a message, exit 1."""

from __future__ import annotations

from flotilla.core.errors import FlotillaError


class ChartError(FlotillaError):
    """Base class: something about a chart, an archive, an index or a publish is wrong."""


class InvalidChartError(ChartError):
    """Chart.yaml or the chart layout breaks a rule helm enforces; permanent until fixed."""


class UnsafeArchiveError(ChartError):
    """An archive is hostile or malformed (path traversal, links, oversized members)."""


class IndexFormatError(ChartError):
    """An index.yaml cannot be read, or reading it would lose entries."""


class DuplicateVersionError(ChartError):
    """The same chart name and version appear twice in one batch."""


class PublishConflictError(ChartError):
    """A version is already published with different content; we never overwrite it."""


class GitError(ChartError):
    """A git command failed; the message carries its stderr."""


class SigningError(ChartError):
    """gpg could not sign (missing key, wrong passphrase, no gpg binary)."""


class MissingDependencyError(InvalidChartError):
    """A declared dependency is not in charts/: a lint warning (as in helm), a package error."""
