"""The update service's data model: plain frozen dataclasses and enums, no I/O.

Everything the policy code decides over lives here, so decisions can be tested without a database.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from flotilla.core import semver

FLATCAR_APP_ID = "e96281a6-d1af-4bde-9a0a-97b76e56dc57"

LEGACY_GROUP_TRACKS = {
    # The group UUIDs CoreOS and early Flatcar machines were configured with (``GROUP=`` in
    # update.conf); Nebraska maps them to its tracks (backend/pkg/omaha/omaha.go), so do we.
    "5b810680-e36a-4879-b98a-4f989e80b899": "alpha",  # amd64
    "3fe10490-dd73-4b49-b72a-28ac19acfcdc": "beta",
    "9a2deb70-37be-4026-853f-bfdd6b347bbe": "stable",
    "72834a2b-ad86-4d6d-b498-e08a19ebe54e": "edge",
    "e641708d-fb48-4260-8bdf-ba2074a1147a": "alpha",  # arm64
    "d112ec01-ba34-4a9e-9d4b-9814a685f266": "beta",
    "11a585f6-9418-4df0-8863-78b2fd3240f8": "stable",
    "b4b2fa22-c1ea-498c-a8ac-c1dc0b1d7c17": "edge",
}


def track_of(group: str) -> str:
    """The track a machine's ``GROUP`` names: a legacy group UUID becomes its track name."""
    return LEGACY_GROUP_TRACKS.get(group.strip("{}").lower(), group)


DEFAULT_CHANNELS = ("alpha", "beta", "stable", "edge")
ARCHES = ("amd64", "arm64")

_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidVersionError(ValueError):
    """A version string that is not semantic versioning (``3815.2.0``, ``1.2.3-rc.1``)."""


_FLATCAR_MAX_NUMBER = 9_999_999_999


@dataclass(frozen=True, order=False)
class Version:
    """A Flatcar OS version; compares by SemVer precedence (build metadata ignored).

    Dialect: strict SemVer 2 from ``flotilla.core.semver`` (what Flatcar's ``3815.2.0`` and
    ``3815.2.0+2023-01-01`` already are; ``0.0.0`` is the "never updated" floor), with each
    number at most ten digits so it fits the store's columns and the Omaha reply. No ``v``, no
    short forms: update_engine always reports all three numbers.
    """

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``text`` or raise :class:`InvalidVersionError` (callers turn it into a 400)."""
        try:
            v = semver.parse(text)
        except semver.InvalidVersionError:
            raise InvalidVersionError(f"not a semantic version: {text[:64]!r}") from None
        if max(v.major, v.minor, v.patch) > _FLATCAR_MAX_NUMBER:
            raise InvalidVersionError(f"not a semantic version: {text[:64]!r} (number too big)")
        return cls(v.major, v.minor, v.patch, v.prerelease, text)

    def _key(self) -> semver.PrecedenceKey:
        return semver.precedence_key(self.major, self.minor, self.patch, self.pre)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}"


def is_valid_app_id(app_id: str) -> bool:
    """App ids are UUIDs for Flatcar, but any short slug-like id is accepted for other apps."""
    return bool(_APP_ID.match(app_id))


def normalize_app_id(raw: str) -> str:
    """update_engine sends ``{uuid}`` with braces, older clients without: store one form."""
    return raw.strip().strip("{}").lower()


class InstanceStatus(enum.StrEnum):
    """Where an instance is in its update; the names follow Nebraska's so dashboards translate."""

    UNDEFINED = "Undefined"
    UPDATE_GRANTED = "UpdateGranted"
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    INSTALLED = "Installed"
    COMPLETE = "Complete"
    ERROR = "Error"
    ON_HOLD = "OnHold"


IN_PROGRESS = frozenset(
    {
        InstanceStatus.UPDATE_GRANTED,
        InstanceStatus.DOWNLOADING,
        InstanceStatus.DOWNLOADED,
        InstanceStatus.INSTALLED,
    }
)


class ActivityKind(enum.StrEnum):
    """Entries of the activity feed."""

    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_FINISHED = "RolloutFinished"
    ROLLOUT_FAILED = "RolloutFailed"
    INSTANCE_UPDATE_FAILED = "InstanceUpdateFailed"
    CHANNEL_PACKAGE_UPDATED = "ChannelPackageUpdated"
    PACKAGE_NOT_FOUND = "PackageNotFound"
    PACKAGE_SYNCED = "PackageSynced"
    ADMIN_CHANGE = "AdminChange"


class Severity(enum.StrEnum):
    """How loud an activity entry is."""

    SUCCESS = "success"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class ExtraFile:
    """An additional payload served next to the main one (OEM images, sysexts)."""

    name: str
    size: int
    sha256: str
    """Hex SHA-256 of the file."""


@dataclass(frozen=True)
class Package:
    """One downloadable update payload for one version and architecture."""

    app_id: str
    version: str
    arch: str
    url: str
    """Base URL the payload lives under; the file name is appended by the client."""
    filename: str
    size: int
    """Bytes; update_engine refuses a size of 0."""
    sha256: str
    """Hex SHA-256 of the payload (served base64-encoded in the postinstall action)."""
    sha1: str = ""
    """Optional hex SHA-1; only informative (update_engine ignores ``package@hash``)."""
    extra_files: tuple[ExtraFile, ...] = ()


@dataclass(frozen=True)
class Channel:
    """A named stream of versions (alpha, beta, stable, edge...) pointing at one version."""

    app_id: str
    name: str
    version: str | None = None
    """The version the channel serves; packages exist per arch for it."""
    blocked_versions: tuple[str, ...] = ()
    """Versions this channel must never serve (as a target or a floor)."""
    floors: tuple[str, ...] = ()
    """Required intermediate versions: an instance below a floor gets the floor first."""


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window in the group's timezone: ``days`` (0=Mon) from start to end.

    An end before the start crosses midnight into the next day.
    """

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Policy:
    """A group's rollout policy: Nebraska's fields plus percentages, windows, brake and pinning."""

    updates_enabled: bool = True
    safe_mode: bool = False
    """Grant one update at a time until the first one finishes; halt on the first failure."""
    office_hours: bool = False
    """Grant only Monday to Friday, 09:00-16:59 in ``timezone`` (Nebraska's rule)."""
    timezone: str = "UTC"
    max_updates_per_period: int = 999_999
    period_interval: timedelta = timedelta(hours=1)
    update_timeout: timedelta = timedelta(hours=1)
    """How long a grant counts as in progress before it is considered timed out."""
    rollout_percent: float = 100.0
    """Share of machines (by stable hash of machine id) that may get the current target."""
    max_failures: int | None = None
    """Halt the rollout once more than this many instances failed on the current target."""
    maintenance_windows: tuple[Window, ...] = ()
    """Grant only inside one of these windows; empty means any time."""
    pinned_version: str | None = None
    """Hold the group at this version instead of following the channel."""


@dataclass(frozen=True)
class Group:
    """A set of instances that share a track, a channel and a policy."""

    id: str
    app_id: str
    name: str
    track: str
    channel: str | None
    policy: Policy = Policy()
    halted_version: str | None = None
    """Target version whose rollout the failure/timeout brake halted (None: not halted)."""
    rollout_version: str | None = None
    """Target version of the rollout in progress or last finished, for the activity feed."""


@dataclass(frozen=True)
class Event:
    """One ``<event>`` from a client."""

    type: int
    result: int
    error_code: int | None = None
    previous_version: str | None = None


@dataclass(frozen=True)
class InstanceState:
    """The mutable part of an instance, as the lifecycle and policy code see it."""

    version: str
    status: InstanceStatus = InstanceStatus.UNDEFINED
    last_update_version: str | None = None
    last_update_granted_at: datetime | None = None
    update_in_progress: bool = False
    last_error_code: int | None = None


@dataclass(frozen=True)
class RolloutStats:
    """Counts over a group's instances that the rate limits need; computed under the group lock."""

    granted_in_period: int = 0
    in_progress: int = 0
    """Grants still within the update timeout, plus Installed instances waiting to reboot."""
    timed_out: int = 0
    """Grants older than the update timeout that never got as far as Installed."""
    attempted: int = 0
    """Instances that finished (Complete or Error) an attempt at the current target."""


@dataclass(frozen=True)
class Activity:
    """One entry for the activity feed, before it is stored."""

    kind: ActivityKind
    severity: Severity
    message: str
    version: str | None = None
