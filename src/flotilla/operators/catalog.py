"""File-based catalogs (olm.package / olm.channel / olm.bundle) and upgrade-graph resolution.

Resolution follows OLM v0: the channel head is the one entry no other entry replaces or skips;
from an installed bundle, take the head directly when it replaces, skips or skip-ranges the
installed one, otherwise the entry that does (the newest if several), one step at a time.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.operators.documents import Bundle, InputError, line_of, read_documents
from flotilla.operators.models import Manifest, OperatorsError, Source
from flotilla.operators.semver import Version, VersionRange, parse_version, range_warnings

__all__ = [
    "GVK",
    "BundleRef",
    "Catalog",
    "Channel",
    "ChannelEntry",
    "Deprecations",
    "GraphError",
    "Requirement",
    "bundle_from_objects",
    "channel_head",
    "is_image_reference",
    "load_catalog",
    "parse_catalog",
    "upgrade_path",
]

_REGISTRY_HOST = re.compile(
    r"localhost(:[0-9]+)?|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]+)?|[A-Za-z0-9-]+:[0-9]+"
    r"|\[[0-9A-Fa-f:]+\](:[0-9]+)?"
)
MAX_BUNDLE_OBJECT_BYTES = 16 * 2**20
"""One ``olm.bundle.object`` (a base64 manifest); opm has no limit, a CSV is rarely 1 MiB."""


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


@dataclass(frozen=True, order=True)
class GVK:
    group: str
    version: str
    kind: str

    def __str__(self) -> str:
        return f"{self.group or 'core'}/{self.version} {self.kind}"


@dataclass(frozen=True)
class Requirement:
    """``olm.package.required`` (package and version range) or ``olm.gvk.required`` (an API)."""

    package: str = ""
    range_text: str = ""
    version_range: VersionRange | None = field(default=None, compare=False)
    gvk: GVK | None = None

    def __str__(self) -> str:
        if self.gvk is not None:
            return f"API {self.gvk}"
        return f"package {self.package} {self.range_text}".rstrip()


@dataclass(frozen=True)
class BundleRef:
    """A bundle the catalog lists and where its manifests come from.

    As OLM: the ``olm.bundle.object`` manifests in the catalog when it has them (``objects``),
    else the ``image`` (pulled from its registry), or ``path``, a bundle directory on disk.
    """

    name: str
    package: str
    version: Version
    path: Path | None = None
    image: str = ""
    objects: tuple[Any, ...] = field(default=(), compare=False, hash=False)
    provides: tuple[GVK, ...] = ()
    requires: tuple[Requirement, ...] = ()
    source: str = ""
    """``file:line`` of its ``olm.bundle`` entry, for messages."""

    @property
    def location(self) -> str:
        """Where the manifests come from, for messages."""
        if self.objects:
            return f"{len(self.objects)} olm.bundle.object in {self.source or 'the catalog'}"
        return self.image or str(self.path)


@dataclass
class Deprecations:
    """One package's ``olm.deprecations``: messages for the package, channels and bundles."""

    package: str = ""
    channels: dict[str, str] = field(default_factory=dict)
    bundles: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def notes(self, name: str, channel: str, bundles: list[str]) -> list[str]:
        """What a plan of ``bundles`` from ``channel`` must show, one line each."""
        found = []
        if self.package:
            found.append(f"package {name} is deprecated: {self.package}")
        if channel in self.channels:
            found.append(f"channel {name}/{channel} is deprecated: {self.channels[channel]}")
        found.extend(
            f"bundle {b} is deprecated: {self.bundles[b]}" for b in bundles if b in self.bundles
        )
        return found


@dataclass
class Package:
    name: str
    default_channel: str = ""
    channels: dict[str, Channel] = field(default_factory=dict)
    bundles: dict[str, BundleRef] = field(default_factory=dict)
    deprecations: Deprecations = field(default_factory=Deprecations)

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

    def head(self, channel: str | None = None) -> BundleRef:
        """The bundle at the head of ``channel`` (default: the package's default channel)."""
        return self.bundle(channel_head(self.channel(channel)).name)


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


def _skip_range(
    entry: dict[str, Any], channel: str, problems: list[str], file: str = ""
) -> VersionRange | None:
    """The entry's skipRange, or None with a problem noted: one bad range spoils one entry."""
    if not entry.get("skipRange"):
        return None
    text = str(entry["skipRange"])
    where = f"channel {channel}: bundle {entry['name']}: skipRange {text[:80]!r}"
    if file:
        where = f"{file}: {where}"
    try:
        rng = VersionRange.parse(text)
    except ValueError as exc:
        problems.append(f"{where} ignored, OLM cannot parse it: {exc}")
        return None
    problems.extend(f"{where}: {note}" for note in range_warnings(text))
    return rng


def parse_catalog(docs: list[Any], root: Path, files: list[str] | None = None) -> Catalog:
    """Build a catalog from FBC documents.

    A bundle ``image`` is a registry reference (``quay.io/org/bundle@sha256:...``), or a path
    relative to ``root`` (``file://`` or no registry host). A malformed document (a missing name,
    package or entries of the wrong type, a bad property) is left out with a problem naming its
    file, line and entry; the rest of the catalog still loads. ``files`` names the file of each
    document, for those messages.
    """
    catalog = Catalog(root=root)

    def pkg(name: str) -> Package:
        return catalog.packages.setdefault(name, Package(name=name))

    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        file = files[index] if files is not None and index < len(files) else str(root)
        where = f"{file}:{line_of(doc, 0)}" if line_of(doc, 0) else file
        entry = f"{doc.get('schema')} {doc.get('name') or '(no name)'}"
        try:
            _parse_entry(doc, root, catalog, pkg, where)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if doc.get("schema") == "olm.deprecations":
                entry = f"olm.deprecations of {doc.get('package') or '(no package)'}"
            missing = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            catalog.problems.append(f"{where}: {entry} left out: {missing}")
        except (InputError, GraphError) as exc:
            catalog.problems.append(f"{where}: {entry} left out: {exc}")
    _check_references(catalog)
    return catalog


def is_image_reference(text: str) -> bool:
    """``host[:port]/repo[:tag|@digest]``: the first part names a registry (a dot, a port or
    ``localhost``), as the docker reference grammar decides. Anything else is a local path."""
    first, slash, rest = text.partition("/")
    if not slash or not rest:
        return False
    return _REGISTRY_HOST.fullmatch(first) is not None


def _properties(doc: dict[str, Any]) -> list[tuple[int, str, Any]]:
    props = doc.get("properties") or []
    if not isinstance(props, list):
        raise TypeError("properties is not a list")
    return [
        (i, str(p.get("type") or ""), p.get("value"))
        for i, p in enumerate(props)
        if isinstance(p, dict)
    ]


def _bundle_object(index: int, value: Any) -> dict[str, Any]:
    """One ``olm.bundle.object``: ``{data: <base64 of a JSON manifest>}``, as opm writes it."""
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, str) or not data:
        raise ValueError(f"property {index} (olm.bundle.object) has no data")
    if len(data) > MAX_BUNDLE_OBJECT_BYTES * 4 // 3 + 4:
        raise ValueError(f"property {index} (olm.bundle.object) is over 16 MiB")
    try:
        raw = base64.b64decode(data, validate=True)
        obj = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        what = "base64" if isinstance(exc, binascii.Error) else "a JSON manifest"
        raise ValueError(f"property {index} (olm.bundle.object) is not {what}: {exc}") from None
    if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
        raise ValueError(f"property {index} (olm.bundle.object) is not a Kubernetes object")
    return obj


def _gvk(index: int, kind: str, value: Any) -> GVK:
    if not isinstance(value, dict) or not value.get("kind") or not value.get("version"):
        raise ValueError(f"property {index} ({kind}) needs group, version and kind")
    return GVK(str(value.get("group") or ""), str(value["version"]), str(value["kind"]))


def _package_requirement(index: int, value: Any) -> Requirement:
    if not isinstance(value, dict) or not value.get("packageName"):
        raise ValueError(f"property {index} (olm.package.required) has no packageName")
    text = str(value.get("versionRange") or "")
    try:
        rng = VersionRange.parse(text) if text else None
    except ValueError as exc:
        raise ValueError(
            f"property {index} (olm.package.required): versionRange {text[:80]!r}: {exc}"
        ) from None
    return Requirement(package=str(value["packageName"]), range_text=text, version_range=rng)


def _bundle(doc: dict[str, Any], root: Path, where: str) -> BundleRef:
    name, package = str(doc["name"]), str(doc["package"])
    objects: list[dict[str, Any]] = []
    provides: list[GVK] = []
    requires: list[Requirement] = []
    for index, kind, value in _properties(doc):
        if kind == "olm.bundle.object":
            objects.append(_bundle_object(index, value))
        elif kind == "olm.gvk":
            provides.append(_gvk(index, kind, value))
        elif kind == "olm.gvk.required":
            requires.append(Requirement(gvk=_gvk(index, kind, value)))
        elif kind == "olm.package.required":
            requires.append(_package_requirement(index, value))
    version = _version_of(doc)
    image = str(doc.get("image") or "")
    path: Path | None = None
    if image and not is_image_reference(image):
        relative = image.removeprefix("file://")
        path = (root / relative).resolve()
        if not path.is_relative_to(root.resolve()):
            raise InputError(f"image path {relative!r} leaves the catalog")
        image = ""
    elif not image and not objects:
        path = (root / name).resolve()
    if not objects and path is None and not image:
        raise ValueError("no image and no olm.bundle.object: nothing to install")
    return BundleRef(
        name=name,
        package=package,
        version=version,
        path=path,
        image=image,
        objects=tuple(objects),
        provides=tuple(provides),
        requires=tuple(requires),
        source=where,
    )


def _deprecations(doc: dict[str, Any], where: str, problems: list[str]) -> Deprecations:
    """``olm.deprecations``: each entry references the package, a channel or a bundle."""
    dep = Deprecations(source=where)
    entries = doc.get("entries")
    if not isinstance(entries, list) or not entries:
        raise ValueError("entries must be a non-empty list")
    for index, e in enumerate(entries):
        ref = e.get("reference") if isinstance(e, dict) else None
        message = str(e.get("message") or "").strip() if isinstance(e, dict) else ""
        kind = ref.get("schema") if isinstance(ref, dict) else None
        name = str(ref.get("name") or "") if isinstance(ref, dict) else ""
        bad = ""
        if not message:
            bad = "has no message"
        elif kind == "olm.package":
            bad = "names a package reference (the package is the document's)" if name else ""
            dep.package = message
        elif kind in ("olm.channel", "olm.bundle"):
            if not name:
                bad = f"references {kind} without a name"
            else:
                (dep.channels if kind == "olm.channel" else dep.bundles)[name] = message
        else:
            bad = f"has an unknown reference schema {kind!r}"
        if bad:
            problems.append(f"{where}: olm.deprecations of {doc['package']}: entry {index} {bad}")
    return dep


def _parse_entry(doc: dict[str, Any], root: Path, catalog: Catalog, pkg: Any, where: str) -> None:
    """One FBC document into the catalog; raises KeyError/TypeError on a malformed one."""
    schema = doc.get("schema")
    if schema == "olm.package":
        p = pkg(str(doc["name"]))
        p.default_channel = str(doc.get("defaultChannel") or "")
    elif schema == "olm.channel":
        entries = []
        raw_entries = doc.get("entries") or []
        if not isinstance(raw_entries, list):
            raise TypeError("entries is not a list")
        for e in raw_entries:
            if not isinstance(e, dict) or not e.get("name"):
                continue
            rng = _skip_range(e, f"{doc.get('package')}/{doc.get('name')}", catalog.problems, where)
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
        ref = _bundle(doc, root, where)
        pkg(ref.package).bundles[ref.name] = ref
    elif schema == "olm.deprecations":
        package = str(doc["package"])
        pkg(package).deprecations = _deprecations(doc, where, catalog.problems)


def _check_references(catalog: Catalog) -> None:
    """Deprecations of channels or bundles the package does not have (opm validate refuses)."""
    for p in catalog.packages.values():
        dep = p.deprecations
        for channel in dep.channels:
            if channel not in p.channels:
                catalog.problems.append(
                    f"{dep.source}: olm.deprecations of {p.name}: no channel {channel}"
                )
        for bundle in dep.bundles:
            if bundle not in p.bundles:
                catalog.problems.append(
                    f"{dep.source}: olm.deprecations of {p.name}: no bundle {bundle}"
                )


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


def bundle_from_objects(ref: BundleRef) -> Bundle:
    """The bundle a catalog carries inline (``olm.bundle.object``), as OLM installs it without
    pulling the image. Findings point at the bundle's entry in the catalog (``file:line``): the
    objects themselves are base64 with no lines of their own."""
    file, _, line = ref.source.rpartition(":")
    if not line.isdigit():
        file, line = ref.source or ref.name, "0"
    manifests = [
        Manifest(
            body=obj,
            source=Source(file, int(line)),
            origin=ref.name,
            package=ref.package,
        )
        for obj in ref.objects
    ]
    annotations = {"operators.operatorframework.io.bundle.package.v1": ref.package}
    return Bundle(path=Path(ref.name), manifests=manifests, annotations=annotations)
