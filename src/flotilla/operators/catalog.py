"""File-based catalogs (olm.package / olm.channel / olm.bundle) and upgrade-graph resolution.

Resolution follows OLM v0: the channel head is the one entry no other entry replaces or skips;
from an installed bundle, take the head directly when it replaces, skips or skip-ranges the
installed one, otherwise the entry that does (the newest if several), one step at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.operators.documents import InputError, line_of, read_documents
from flotilla.operators.models import OperatorsError
from flotilla.operators.semver import Version, VersionRange, parse_version, range_warnings

__all__ = [
    "BundleRef",
    "Catalog",
    "Channel",
    "ChannelEntry",
    "GraphError",
    "channel_head",
    "load_catalog",
    "parse_catalog",
    "upgrade_path",
]


class GraphError(OperatorsError):
    """The catalog cannot answer: unknown package/channel, no head, no path, a cycle."""


@dataclass(frozen=True)
class ChannelEntry:
    name: str
    replaces: str = ""
    skips: tuple[str, ...] = ()
    skip_range: VersionRange | None = None

    def supersedes(self, name: str, version: Version | None) -> bool:
        """Does this entry upgrade ``name`` (by replaces, skips or skipRange)?"""
        if self.replaces == name or name in self.skips:
            return True
        return self.skip_range is not None and version is not None and version in self.skip_range


@dataclass(frozen=True)
class Channel:
    name: str
    package: str
    entries: tuple[ChannelEntry, ...]

    def entry(self, name: str) -> ChannelEntry | None:
        return next((e for e in self.entries if e.name == name), None)


@dataclass(frozen=True)
class BundleRef:
    """A bundle the catalog lists; ``path`` is its directory on disk."""

    name: str
    package: str
    version: Version
    path: Path


@dataclass
class Package:
    name: str
    default_channel: str = ""
    channels: dict[str, Channel] = field(default_factory=dict)
    bundles: dict[str, BundleRef] = field(default_factory=dict)

    def channel(self, name: str | None) -> Channel:
        chosen = name or self.default_channel
        if chosen not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none"
            raise GraphError(f"package {self.name} has no channel {chosen!r} (channels: {known})")
        return self.channels[chosen]

    def bundle(self, name: str) -> BundleRef:
        if name not in self.bundles:
            raise GraphError(f"package {self.name}: channel entry {name} has no olm.bundle")
        return self.bundles[name]


@dataclass
class Catalog:
    root: Path
    packages: dict[str, Package] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """Entries OLM would refuse or misread, one line each (bundle and why); the rest still loads."""

    def package(self, name: str) -> Package:
        if name not in self.packages:
            known = ", ".join(sorted(self.packages)) or "none"
            raise GraphError(f"no package {name!r} in catalog {self.root} (packages: {known})")
        return self.packages[name]


def _version_of(doc: dict[str, Any]) -> Version:
    for prop in doc.get("properties") or []:
        if isinstance(prop, dict) and prop.get("type") == "olm.package":
            value = prop.get("value") or {}
            if isinstance(value, dict) and value.get("version"):
                return parse_version(str(value["version"]))
    name = str(doc.get("name") or "")
    tail = name.rsplit(".v", 1)[-1] if ".v" in name else name
    try:
        return parse_version(tail)
    except ValueError:
        raise GraphError(f"bundle {name}: no olm.package version property") from None


def _skip_range(entry: dict[str, Any], channel: str, problems: list[str]) -> VersionRange | None:
    """The entry's skipRange, or None with a problem noted: one bad range spoils one entry."""
    if not entry.get("skipRange"):
        return None
    text = str(entry["skipRange"])
    where = f"channel {channel}: bundle {entry['name']}: skipRange {text[:80]!r}"
    try:
        rng = VersionRange.parse(text)
    except ValueError as exc:
        problems.append(f"{where} ignored, OLM cannot parse it: {exc}")
        return None
    problems.extend(f"{where}: {note}" for note in range_warnings(text))
    return rng


def parse_catalog(docs: list[Any], root: Path, files: list[str] | None = None) -> Catalog:
    """Build a catalog from FBC documents; bundle ``image`` is a path relative to ``root``.

    A malformed document (a missing name, package or entries of the wrong type) is left out
    with a problem naming its file, line and entry; the rest of the catalog still loads.
    ``files`` names the file of each document, for those messages.
    """
    catalog = Catalog(root=root)

    def pkg(name: str) -> Package:
        return catalog.packages.setdefault(name, Package(name=name))

    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        file = files[index] if files is not None and index < len(files) else str(root)
        where = f"{file}:{line_of(doc, 0)}" if line_of(doc, 0) else file
        try:
            _parse_entry(doc, root, catalog, pkg)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            missing = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            entry = f"{doc.get('schema')} {doc.get('name') or '(no name)'}"
            catalog.problems.append(f"{where}: {entry} left out: {missing}")
        except InputError as exc:
            catalog.problems.append(f"{where}: {exc}")
    return catalog


def _parse_entry(doc: dict[str, Any], root: Path, catalog: Catalog, pkg: Any) -> None:
    """One FBC document into the catalog; raises KeyError/TypeError on a malformed one."""
    schema = doc.get("schema")
    if schema == "olm.package":
        p = pkg(str(doc["name"]))
        p.default_channel = str(doc.get("defaultChannel") or "")
    elif schema == "olm.channel":
        entries = []
        for e in doc.get("entries") or []:
            if not isinstance(e, dict) or not e.get("name"):
                continue
            rng = _skip_range(e, f"{doc.get('package')}/{doc.get('name')}", catalog.problems)
            entries.append(
                ChannelEntry(
                    name=str(e["name"]),
                    replaces=str(e.get("replaces") or ""),
                    skips=tuple(str(s) for s in e.get("skips") or []),
                    skip_range=rng,
                )
            )
        ch = Channel(name=str(doc["name"]), package=str(doc["package"]), entries=tuple(entries))
        pkg(ch.package).channels[ch.name] = ch
    elif schema == "olm.bundle":
        image = str(doc.get("image") or doc["name"]).removeprefix("file://")
        path = (root / image).resolve()
        if not path.is_relative_to(root.resolve()):
            raise InputError(f"bundle {doc['name']}: image path {image!r} leaves the catalog")
        try:
            version = _version_of(doc)
        except (ValueError, GraphError) as exc:
            catalog.problems.append(f"bundle {doc['name']} left out: {exc}")
            return
        ref = BundleRef(
            name=str(doc["name"]), package=str(doc["package"]), version=version, path=path
        )
        pkg(ref.package).bundles[ref.name] = ref


def load_catalog(root: Path) -> Catalog:
    """Read every .yaml/.yml/.json file under ``root`` (a FBC directory or a single file)."""
    files = (
        [root]
        if root.is_file()
        else sorted(
            p
            for p in root.rglob("*")
            if p.suffix in (".yaml", ".yml", ".json")
            and p.is_file()
            and "manifests" not in p.parts
            and "metadata" not in p.parts
        )
    )
    docs: list[Any] = []
    names: list[str] = []
    problems: list[str] = []
    for f in files:
        try:
            text = f.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{f}: left out, cannot read: {exc}")
            continue
        found, file_problems = read_documents(text, str(f))
        problems.extend(f"{p}" for p in file_problems)
        for doc in found:
            if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("olm."):
                docs.append(doc)
                names.append(str(f))
    catalog = parse_catalog(docs, root if root.is_dir() else root.parent, names)
    catalog.problems[:0] = problems
    return catalog


def channel_head(channel: Channel) -> ChannelEntry:
    """The one entry that no other entry replaces or skips."""
    superseded = {e.replaces for e in channel.entries}
    superseded |= {s for e in channel.entries for s in e.skips}
    heads = [e for e in channel.entries if e.name not in superseded]
    if len(heads) != 1:
        names = ", ".join(e.name for e in heads) or "none (a cycle?)"
        raise GraphError(
            f"channel {channel.package}/{channel.name} needs exactly one head, found: {names}"
        )
    return heads[0]


def upgrade_path(
    channel: Channel,
    installed: str,
    version: Version | None,
    versions: dict[str, Version] | None = None,
) -> list[ChannelEntry]:
    """The steps from ``installed`` to the channel head; empty when already at the head.

    ``versions`` (bundle name -> version) picks the newest among several candidates.
    """
    head = channel_head(channel)
    path: list[ChannelEntry] = []
    current, current_version = installed, version
    seen = {installed}
    while current != head.name:
        if head.supersedes(current, current_version):
            step = head
        else:
            candidates = [e for e in channel.entries if e.supersedes(current, current_version)]
            if not candidates:
                raise GraphError(
                    f"no upgrade from {current} in channel {channel.package}/"
                    f"{channel.name}: no entry replaces, skips or skip-ranges it"
                )
            known = versions or {}
            step = max(candidates, key=lambda e: (known.get(e.name, Version(0, 0, 0)), e.name))
        if step.name in seen:
            raise GraphError(
                f"upgrade graph of {channel.package}/{channel.name} has a cycle at {step.name}"
            )
        seen.add(step.name)
        path.append(step)
        current = step.name
        current_version = (versions or {}).get(step.name)
    return path
