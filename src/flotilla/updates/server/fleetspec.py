"""Fleet files (``flotilla updates apply -f fleet.yaml``) and the dict forms of the model.

A fleet file is validated as a whole before anything is written: every problem is reported with
its line, and one bad entry rejects the file. Pure: YAML text in, dataclasses or errors out.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml

from flotilla.core import yamlload
from flotilla.core.errors import FlotillaError
from flotilla.updates.models import (
    ARCHES,
    DEFAULT_CHANNELS,
    Channel,
    ExtraFile,
    InvalidVersionError,
    Package,
    Policy,
    Version,
    Window,
    is_valid_app_id,
    normalize_app_id,
)
from flotilla.updates.policies import (
    format_duration,
    format_window,
    parse_duration,
    parse_window,
    zone,
)
from flotilla.updates.reboots.fleetlock import LockGroup

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_GROUP_NS = uuid.UUID("8c1f6a2e-5d0b-4c39-9f65-2b7d1c0a9e11")


def group_id(app_id: str, name: str) -> str:
    """Stable group ids: applying a file twice, or on another server, gives the same id."""
    return str(uuid.uuid5(_GROUP_NS, f"{app_id}/{name}"))


class FleetFileError(FlotillaError, ValueError):
    """A fleet file with problems; ``problems`` holds one ``line N: path: message`` per issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class GroupSpec:
    """A declared group."""

    name: str
    track: str
    channel: str | None
    policy: Policy


@dataclass(frozen=True)
class AppSpec:
    """A declared application with everything under it."""

    id: str
    name: str
    description: str = ""
    packages: tuple[Package, ...] = ()
    channels: tuple[Channel, ...] = ()
    groups: tuple[GroupSpec, ...] = ()


@dataclass(frozen=True)
class FleetSpec:
    """A whole fleet file."""

    applications: tuple[AppSpec, ...] = field(default_factory=tuple)
    fleetlock: tuple[LockGroup, ...] = field(default_factory=tuple)
    """FleetLock groups (``fleetlock: groups: [...]``), applied by :mod:`fleetlock`."""


# --- YAML with line numbers ---------------------------------------------------------------------


_LineDict = yamlload.LineDict
_LineList = yamlload.LineList


class _Loader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, whose error texts fleet-file messages have always
    quoted, without merge keys (``<<``): a fleet file spells every field out, so a merge stays
    "not valid YAML" as it always was."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Leave ``<<`` as an ordinary key; constructing it then refuses the merge tag."""


class _Checker:
    """Collects problems while walking the document, so all of them are reported at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def err(self, line: int, path: str, msg: str) -> None:
        self.problems.append(f"line {line}: {path}: {msg}")

    def mapping(self, value: Any, line: int, path: str, allowed: set[str]) -> _LineDict | None:
        if not isinstance(value, _LineDict):
            self.err(line, path, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.err(value.key_lines[key], f"{path}.{key}", "unknown field")
        return value

    def items(self, d: _LineDict, key: str, path: str) -> list[tuple[int, Any, str]]:
        value = d.get(key)
        if value is None:
            return []
        if not isinstance(value, _LineList):
            self.err(d.key_lines.get(key, d.line), f"{path}.{key}", "must be a list")
            return []
        return [(value.item_lines[i], v, f"{path}.{key}[{i}]") for i, v in enumerate(value)]

    def line(self, d: _LineDict, key: str) -> int:
        return d.key_lines.get(key, d.line)

    def string(self, d: _LineDict, key: str, path: str, required: bool = True) -> str | None:
        value = d.get(key)
        if value is None:
            if required:
                self.err(d.line, path, f"{key} is required")
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.err(self.line(d, key), f"{path}.{key}", "must be a string")
            return None
        return str(value)

    def integer(self, d: _LineDict, key: str, path: str, minimum: int) -> int | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.err(self.line(d, key), f"{path}.{key}", f"must be an integer >= {minimum}")
            return None
        return value

    def boolean(self, d: _LineDict, key: str, path: str) -> bool | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.err(self.line(d, key), f"{path}.{key}", "must be true or false")
            return None
        return value

    def version(self, d: _LineDict, key: str, path: str, required: bool = True) -> str | None:
        text = self.string(d, key, path, required)
        if text is None:
            return None
        try:
            Version.parse(text)
        except InvalidVersionError as e:
            self.err(self.line(d, key), f"{path}.{key}", str(e))
            return None
        return text

    def versions(self, d: _LineDict, key: str, path: str) -> tuple[str, ...]:
        out = []
        for line, v, p in self.items(d, key, path):
            try:
                Version.parse(str(v))
                out.append(str(v))
            except InvalidVersionError as e:
                self.err(line, p, str(e))
        return tuple(out)


# --- policy dicts (fleet files, API bodies, the JSON column) ------------------------------------

POLICY_FIELDS = {
    "updates_enabled",
    "safe_mode",
    "office_hours",
    "timezone",
    "max_updates_per_period",
    "period_interval",
    "update_timeout",
    "rollout_percent",
    "max_failures",
    "maintenance_windows",
    "pinned_version",
}


def policy_problems(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each invalid field of a policy dict; empty when valid."""
    problems: list[tuple[str, str]] = []
    for key in d:
        if key not in POLICY_FIELDS:
            problems.append((key, "unknown field"))
    for key in ("updates_enabled", "safe_mode", "office_hours"):
        if key in d and not isinstance(d[key], bool):
            problems.append((key, "must be true or false"))
    tz = d.get("timezone")
    if tz is not None and (not isinstance(tz, str) or zone(tz) is None):
        problems.append(("timezone", f"unknown timezone {tz!r}"))
    for key in ("max_updates_per_period", "max_failures"):
        v = d.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            problems.append((key, "must be an integer >= 0"))
    for key in ("period_interval", "update_timeout"):
        if d.get(key) is not None:
            try:
                if parse_duration(d[key]) <= timedelta(0):
                    problems.append((key, "must be longer than 0s"))
            except ValueError as e:
                problems.append((key, str(e)))
    pct = d.get("rollout_percent")
    if pct is not None and (
        isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100
    ):
        problems.append(("rollout_percent", "must be a number from 0 to 100"))
    windows = d.get("maintenance_windows")
    if windows is not None:
        if not isinstance(windows, list):
            problems.append(("maintenance_windows", "must be a list like ['Sat 02:00-06:00']"))
        else:
            for w in windows:
                try:
                    parse_window(str(w))
                except ValueError as e:
                    problems.append(("maintenance_windows", str(e)))
    pin = d.get("pinned_version")
    if pin is not None:
        try:
            Version.parse(str(pin))
        except InvalidVersionError as e:
            problems.append(("pinned_version", str(e)))
    return problems


def policy_from_dict(d: Mapping[str, Any] | None) -> Policy:
    """Build a Policy from a (validated) dict; missing fields take the defaults."""
    d = d or {}
    base = Policy()
    return Policy(
        updates_enabled=bool(d.get("updates_enabled", base.updates_enabled)),
        safe_mode=bool(d.get("safe_mode", base.safe_mode)),
        office_hours=bool(d.get("office_hours", base.office_hours)),
        timezone=str(d.get("timezone") or base.timezone),
        max_updates_per_period=int(d.get("max_updates_per_period", base.max_updates_per_period)),
        period_interval=parse_duration(d["period_interval"])
        if d.get("period_interval") is not None
        else base.period_interval,
        update_timeout=parse_duration(d["update_timeout"])
        if d.get("update_timeout") is not None
        else base.update_timeout,
        rollout_percent=float(d.get("rollout_percent", base.rollout_percent)),
        max_failures=None if d.get("max_failures") is None else int(d["max_failures"]),
        maintenance_windows=tuple(parse_window(str(w)) for w in d.get("maintenance_windows") or ()),
        pinned_version=None if d.get("pinned_version") is None else str(d["pinned_version"]),
    )


def policy_to_dict(p: Policy) -> dict[str, Any]:
    """The JSON form stored in the database and shown by the API."""
    return {
        "updates_enabled": p.updates_enabled,
        "safe_mode": p.safe_mode,
        "office_hours": p.office_hours,
        "timezone": p.timezone,
        "max_updates_per_period": p.max_updates_per_period,
        "period_interval": format_duration(p.period_interval),
        "update_timeout": format_duration(p.update_timeout),
        "rollout_percent": p.rollout_percent,
        "max_failures": p.max_failures,
        "maintenance_windows": [format_window(w) for w in p.maintenance_windows],
        "pinned_version": p.pinned_version,
    }


def package_from_row(row: Mapping[Any, Any]) -> Package:
    """A Package from a ``packages`` row."""
    return Package(
        app_id=row["app_id"],
        version=row["version"],
        arch=row["arch"],
        url=row["url"],
        filename=row["filename"],
        size=int(row["size"]),
        sha256=row["sha256"],
        sha1=row["sha1"] or "",
        extra_files=tuple(
            ExtraFile(str(e["name"]), int(e["size"]), str(e["sha256"]))
            for e in row["extra_files"] or ()
        ),
    )


# --- fleet files --------------------------------------------------------------------------------


def _package(c: _Checker, line: int, raw: Any, path: str, app_id: str) -> Package | None:
    allowed = {"version", "arch", "url", "filename", "size", "sha256", "sha1", "extra_files"}
    d = c.mapping(raw, line, path, allowed)
    if d is None:
        return None
    n = len(c.problems)
    version = c.version(d, "version", path)
    arch = c.string(d, "arch", path, required=False) or "amd64"
    if arch not in ARCHES:
        c.err(c.line(d, "arch"), f"{path}.arch", f"must be one of {', '.join(ARCHES)}")
    url = c.string(d, "url", path) or ""
    if url and not url.startswith(("http://", "https://")):
        c.err(c.line(d, "url"), f"{path}.url", "must be an http:// or https:// URL")
    filename = c.string(d, "filename", path) or ""
    if filename and ("/" in filename or not filename.strip()):
        c.err(c.line(d, "filename"), f"{path}.filename", "must be a plain file name")
    size = c.integer(d, "size", path, 1)
    if "size" not in d:
        c.err(d.line, path, "size is required")
    sha256 = c.string(d, "sha256", path) or ""
    if sha256 and not _HEX64.match(sha256):
        c.err(c.line(d, "sha256"), f"{path}.sha256", "must be 64 hex digits")
    sha1 = c.string(d, "sha1", path, required=False) or ""
    if sha1 and not _HEX40.match(sha1):
        c.err(c.line(d, "sha1"), f"{path}.sha1", "must be 40 hex digits")
    extras = []
    for eline, e, epath in c.items(d, "extra_files", path):
        ed = c.mapping(e, eline, epath, {"name", "size", "sha256"})
        if ed is None:
            continue
        name = c.string(ed, "name", epath) or ""
        esize = c.integer(ed, "size", epath, 1)
        esha = c.string(ed, "sha256", epath) or ""
        if "size" not in ed:
            c.err(ed.line, epath, "size is required")
        if esha and not _HEX64.match(esha):
            c.err(c.line(ed, "sha256"), f"{epath}.sha256", "must be 64 hex digits")
        if name and esize and esha:
            extras.append(ExtraFile(name, esize, esha.lower()))
    if len(c.problems) > n or version is None or size is None:
        return None
    return Package(
        app_id, version, arch, url, filename, size, sha256.lower(), sha1.lower(), tuple(extras)
    )


def _policy(c: _Checker, d: _LineDict, path: str) -> Policy:
    raw = d.get("policy")
    if raw is None:
        return Policy()
    pd = c.mapping(raw, c.line(d, "policy"), f"{path}.policy", POLICY_FIELDS)
    if pd is None:
        return Policy()
    bad = policy_problems(pd)
    for key, msg in bad:
        if msg != "unknown field":  # already reported by mapping()
            c.err(c.line(pd, key), f"{path}.policy.{key}", msg)
    return Policy() if bad else policy_from_dict(pd)


def _channel(
    c: _Checker, line: int, raw: Any, path: str, app_id: str, versions: set[str]
) -> Channel | None:
    """A channel; its package and floors must be among ``versions``."""
    cd = c.mapping(raw, line, path, {"name", "package", "blocked_versions", "floors"})
    if cd is None:
        return None
    cname = c.string(cd, "name", path) or ""
    if cname and not _NAME.match(cname):
        c.err(c.line(cd, "name"), f"{path}.name", "must be letters, digits, ._-")
    version = c.version(cd, "package", path, required=False)
    if version is not None and version not in versions:
        c.err(c.line(cd, "package"), f"{path}.package", f"no package {version} is declared")
    blocked = c.versions(cd, "blocked_versions", path)
    floors = c.versions(cd, "floors", path)
    for f in floors:
        if f not in versions:
            c.err(c.line(cd, "floors"), f"{path}.floors", f"no package {f} is declared")
    return Channel(app_id, cname, version, blocked, floors)


def _group(
    c: _Checker, line: int, raw: Any, path: str, versions: set[str], channel_names: set[str]
) -> GroupSpec | None:
    """A group; its channel must be in ``channel_names``, a pinned version in ``versions``."""
    gd = c.mapping(raw, line, path, {"name", "track", "channel", "policy"})
    if gd is None:
        return None
    gname = c.string(gd, "name", path) or ""
    if gname and not _NAME.match(gname):
        c.err(c.line(gd, "name"), f"{path}.name", "must be letters, digits, ._-")
    track = c.string(gd, "track", path, required=False) or gname
    if len(track) > 100:
        c.err(c.line(gd, "track"), f"{path}.track", "is longer than 100 characters")
    channel = c.string(gd, "channel", path, required=False)
    if channel is not None and channel not in channel_names:
        c.err(c.line(gd, "channel"), f"{path}.channel", f"no channel {channel} is declared")
    policy = _policy(c, gd, path)
    if policy.pinned_version and policy.pinned_version not in versions:
        c.err(line, f"{path}.policy.pinned_version", "no such package is declared")
    return GroupSpec(gname, track, channel, policy)


def parse_part(
    kind: str,
    body: Mapping[str, Any],
    app_id: str,
    versions: AbstractSet[str] = frozenset(),
    channel_names: AbstractSet[str] = frozenset(),
) -> Package | Channel | GroupSpec:
    """One ``package``, ``channel`` or ``group`` from an API body, checked by the very code that
    checks a fleet file; references are checked against the sets the caller read from the
    database. Raises :class:`FleetFileError` listing every problem (paths start at ``$``)."""
    try:
        raw = yamlload.load(json.dumps(dict(body)), loader=_Loader, lines=True)
    except (TypeError, ValueError, yaml.YAMLError) as e:
        raise FleetFileError([f"$: not a JSON object: {e}"]) from None
    c = _Checker()
    part: Package | Channel | GroupSpec | None
    if kind == "package":
        part = _package(c, 1, raw, "$", app_id)
    elif kind == "channel":
        part = _channel(c, 1, raw, "$", app_id, set(versions))
    elif kind == "group":
        part = _group(c, 1, raw, "$", set(versions), set(channel_names) | set(DEFAULT_CHANNELS))
    else:
        raise ValueError(f"unknown part {kind!r}")
    if c.problems or part is None:
        raise FleetFileError(c.problems or ["$: invalid"])
    return part


def _app(c: _Checker, line: int, raw: Any, path: str) -> AppSpec | None:
    d = c.mapping(raw, line, path, {"id", "name", "description", "packages", "channels", "groups"})
    if d is None:
        return None
    raw_id = c.string(d, "id", path) or ""
    app_id = normalize_app_id(raw_id)
    if raw_id and not is_valid_app_id(app_id):
        c.err(c.line(d, "id"), f"{path}.id", "must be a UUID or a short id of letters, digits, ._-")
    name = c.string(d, "name", path, required=False) or app_id
    pkgs: list[Package] = []
    seen_pkgs: set[tuple[str, str]] = set()
    for pline, p, ppath in c.items(d, "packages", path):
        pkg = _package(c, pline, p, ppath, app_id)
        if pkg is None:
            continue
        if (pkg.version, pkg.arch) in seen_pkgs:
            c.err(pline, ppath, f"duplicate package {pkg.version} for {pkg.arch}")
        seen_pkgs.add((pkg.version, pkg.arch))
        pkgs.append(pkg)
    versions = {p.version for p in pkgs}
    chans: list[Channel] = []
    for cline, ch, cpath in c.items(d, "channels", path):
        chan = _channel(c, cline, ch, cpath, app_id, versions)
        if chan is None:
            continue
        if chan.name in {x.name for x in chans}:
            c.err(cline, cpath, f"duplicate channel {chan.name}")
        chans.append(chan)
    channel_names = {ch.name for ch in chans} | set(DEFAULT_CHANNELS)
    grps: list[GroupSpec] = []
    for gline, g, gpath in c.items(d, "groups", path):
        grp = _group(c, gline, g, gpath, versions, channel_names)
        if grp is None:
            continue
        if grp.name in {x.name for x in grps}:
            c.err(gline, gpath, f"duplicate group {grp.name}")
        if grp.track in {x.track for x in grps}:
            c.err(gline, gpath, f"duplicate track {grp.track}")
        grps.append(grp)
    return AppSpec(
        app_id,
        name,
        c.string(d, "description", path, False) or "",
        tuple(pkgs),
        tuple(chans),
        tuple(grps),
    )


def parse_fleet(text: str) -> FleetSpec:
    """Parse and validate a fleet file; raise :class:`FleetFileError` listing every problem."""
    try:
        doc = yamlload.load(text, loader=_Loader, lines=True)
    except yamlload.YamlLimitError as e:
        raise FleetFileError([f"line {e.line}: not valid YAML: {e.problem}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise FleetFileError([f"line {line}: not valid YAML: {getattr(e, 'problem', e)}"]) from None
    duplicates = _duplicate_keys(text)
    if duplicates:
        raise FleetFileError(duplicates)
    c = _Checker()
    d = c.mapping(doc, 1, "$", {"applications", "fleetlock"})
    apps: list[AppSpec] = []
    locks: tuple[LockGroup, ...] = ()
    if d is not None:
        if "applications" not in d and "fleetlock" not in d:
            c.err(d.line, "$", "applications is required")
        if "fleetlock" in d:
            locks = _fleetlock(c, d)
        for line, raw, path in c.items(d, "applications", "$"):
            app = _app(c, line, raw, path)
            if app is not None:
                if app.id in {a.id for a in apps}:
                    c.err(line, path, f"duplicate application {app.id}")
                apps.append(app)
    if c.problems:
        raise FleetFileError(c.problems)
    return FleetSpec(tuple(apps), locks)


def _duplicate_keys(text: str) -> list[str]:
    """``line N: duplicate key 'k' (first on line M)`` for every repeated key: YAML loaders keep
    the last value silently, and a fleet file must not mean something its reader didn't see."""
    node = yamlload.compose(text, loader=_Loader)  # already loaded once: cannot fail now
    problems: list[str] = []
    stack = [node] if node is not None else []
    seen_nodes: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen_nodes:
            continue
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    line = k.start_mark.line + 1
                    key = (k.tag, k.value)
                    if key in first:
                        problems.append(
                            f"line {line}: duplicate key {k.value[:60]!r} (first on line "
                            f"{first[key]})"
                        )
                    else:
                        first[key] = line
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return sorted(problems, key=lambda p: int(p.split(":", 1)[0].split()[1]))


def _fleetlock(c: _Checker, d: _LineDict) -> tuple[LockGroup, ...]:
    """``fleetlock: {groups: [{name, max_holders, windows, timezone}]}``."""
    section = c.mapping(d["fleetlock"], c.line(d, "fleetlock"), "$.fleetlock", {"groups"})
    out: list[LockGroup] = []
    if section is None:
        return ()
    for line, raw, path in c.items(section, "groups", "$.fleetlock"):
        g = c.mapping(
            raw, line, path, {"name", "max_holders", "windows", "timezone", "token_sha256"}
        )
        if g is None:
            continue
        name = c.string(g, "name", path)
        if name is not None and not _NAME.match(name):
            c.err(c.line(g, "name"), f"{path}.name", "use letters, digits, '.', '_', '-'")
            name = None
        if name is not None and name in {x.name for x in out}:
            c.err(line, path, f"duplicate fleetlock group {name}")
        top = c.integer(g, "max_holders", path, 1) if "max_holders" in g else 1
        tz = c.string(g, "timezone", path, required=False) or "UTC"
        if zone(tz) is None:
            c.err(c.line(g, "timezone"), f"{path}.timezone", f"unknown timezone {tz!r}")
        windows: list[Window] = []
        for wline, w, wpath in c.items(g, "windows", path):
            try:
                windows.append(parse_window(str(w)))
            except ValueError as e:
                c.err(wline, wpath, str(e))
        token = c.string(g, "token_sha256", path, required=False)
        if token is not None and not _HEX64.match(token):
            c.err(c.line(g, "token_sha256"), f"{path}.token_sha256", "must be 64 hex digits")
        if name is not None and top is not None:
            out.append(LockGroup(name, top, tuple(windows), tz, token.lower() if token else None))
    return tuple(out)
