"""Plain data shared by the audit and the lifecycle: manifests with their line, findings, grants."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Generic, TypeVar, overload

from flotilla.core.errors import EXIT_USAGE, FlotillaError


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC inside: the audit makes no cycles, and with a large input loaded every
    full collection rescans all of it, which made auditing and reporting superlinear."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            _age_new_objects()
            gc.enable()


def _age_new_objects() -> None:
    """Move every object the collector tracks to its oldest generation, without a scan.

    With collection paused, what was made inside stays counted as young, and the first
    allocation after ``gc.enable()`` scanned it all as young and then as middle-aged: 1.2 s of
    CPU after loading 60,000 manifests (1.6 million containers), more than their audit.
    ``freeze`` then ``unfreeze`` splices the generation lists into the oldest one (no object
    is visited); cyclic garbage among them is still found by the next full collection, which
    Python runs when its survivors grew by a quarter. Skipped when the program froze objects
    itself (a pre-fork server): ``unfreeze`` would undo that."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def dig(obj: Any, *keys: str) -> dict[str, Any]:
    """The mapping at ``obj[k1][k2]...``, or {} when any level is missing or not a mapping.

    Manifests are untrusted input: ``spec: "oops"`` must not crash the audit.
    """
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else {}


def seq(value: Any) -> list[Any]:
    """``value`` if it is a list, else [] — for iterating fields of untrusted manifests."""
    return value if isinstance(value, list) else []


_T = TypeVar("_T")


class _cached(Generic[_T]):  # noqa: N801 - used as a decorator, like functools' cached_property
    """``functools.cached_property`` without its lock: Python 3.11's takes an ``RLock`` on every
    first read, and the audit's 144,000 first reads of ``kind``/``name``/... of 60,000
    manifests took 0.48 s under the profiler. The value is stored in the instance's
    ``__dict__``, which later reads find first (this is a non-data descriptor)."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> _cached[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> _T: ...
    def __get__(self, obj: object, owner: type[Any] | None = None) -> _T | _cached[_T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


class OperatorsError(FlotillaError):
    """Root error of ``flotilla operators``: input, catalog or cluster trouble, shown as
    ``error: ...`` with exit 2, so it never reads as exit 1 ("the audit found problems")."""

    exit_code = EXIT_USAGE


class Approval(StrEnum):
    """``manual``: every install/upgrade waits for ``approve``. ``auto``: goes ahead unless it
    adds findings at or above the hold threshold (default high)."""

    MANUAL = "manual"
    AUTO = "auto"


class Severity(IntEnum):
    """Ordered so ``--fail-on high`` is a comparison; names are what users type and read."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``high`` -> ``Severity.HIGH``; raises ValueError naming the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = "|".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose {choices})") from None


@dataclass(frozen=True, order=True)
class Source:
    """Where something came from, so a finding points at the line to change."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object as loaded; ``body`` keeps line marks on its mappings."""

    body: dict[str, Any]
    source: Source
    origin: str = ""
    """What the user pointed at (bundle dir, chart, file) — findings are grouped by it."""
    package: str = ""
    """The OLM package of the bundle it came from: versions of one package never conflict."""

    # Cached: the audit asks each manifest for these a dozen times (217,800 ``kind`` lookups for
    # the bench's 20,000 manifests, 0.6 s under the profiler), and the body of a loaded manifest
    # is not changed afterwards (``dataclasses.replace`` makes a new one).
    @_cached
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @_cached
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @_cached
    def name(self) -> str:
        return str(dig(self.body, "metadata").get("name") or "")

    @_cached
    def namespace(self) -> str:
        return str(dig(self.body, "metadata").get("namespace") or "")


@dataclass(frozen=True)
class LoadProblem:
    """Something in an input that could not be read (or reads two ways), with its file:line.

    The audit reports each one as a finding (``load-error``, ``duplicate-key``) and goes on with
    the rest: what could not be read was not audited, and the reviewer must know.
    """

    source: Source
    message: str
    rule: str = "load-error"

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class PolicyRule:
    """One RBAC rule, normalised to tuples so it can be hashed and compared across versions."""

    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def describe(self) -> str:
        """``verbs on group/resources`` in the compact form auditors print."""
        verbs = ",".join(self.verbs) or "-"
        if self.non_resource_urls:
            return f"{verbs} on URLs {','.join(self.non_resource_urls)}"
        groups = ",".join(g or "core" for g in self.api_groups) or "core"
        names = f" (names: {','.join(self.resource_names)})" if self.resource_names else ""
        return f"{verbs} on {groups}/{','.join(self.resources) or '-'}{names}"


@dataclass(frozen=True)
class Grant:
    """A rule granted to a subject, with the scope it really has once installed."""

    subject: str
    """``ServiceAccount ns/name``, ``Group name``, ``User name`` or ``(unbound)``."""
    role: str
    """Where the rule is defined: ``ClusterRole x``, ``CSV y clusterPermissions``."""
    scope: str
    """``cluster``, ``namespace NS`` or ``all namespaces``."""
    rule: PolicyRule
    source: Source
    origin: str = ""

    @property
    def cluster_wide(self) -> bool:
        return self.scope in ("cluster", "all namespaces")


@dataclass(frozen=True)
class Finding:
    """Something a reviewer should see before an install, with the line that causes it."""

    rule: str
    severity: Severity
    subject: str
    source: Source
    message: str
    why: str
    origin: str = ""
    identity: str = ""
    """What makes this finding the same one in another version, when not the whole message."""

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity across versions: lines and files move between releases, meaning does not."""
        return (self.rule, self.subject, self.identity or self.message)

    def to_json(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "subject": self.subject,
            "source": str(self.source),
            "message": self.message,
            "why": self.why,
        }


@dataclass
class AuditReport:
    """Everything one audit found: risky findings plus the full inventory of grants."""

    findings: list[Finding] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)
