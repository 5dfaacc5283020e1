"""index.yaml: the pure core that decides what a repository index contains.

Same semantics as ``helm repo index`` (entries by chart name, all Chart.yaml fields plus ``urls``,
``created`` and ``digest``, newest version first, ``generated``), with two deliberate differences:
an entry whose digest did not change keeps its ``created`` time, and versions are identified by
their exact string, so ``1.0.0+a`` and ``1.0.0+b`` are two entries where helm would collide them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from flotilla.charts import bounded, versions, yamlemit, yamlread
from flotilla.charts.chartfile import ChartMetadata
from flotilla.charts.errors import DuplicateVersionError, IndexFormatError
from flotilla.core import yamlload

ENTRY_OWN_FIELDS = ("urls", "created", "digest")
_BaseLoader: type[Any] = yamlload.SafeLoader


class _NoTimestampLoader(_BaseLoader):  # type: ignore[misc]
    """Keep ``created``/``generated`` as the strings they were, so merges never reformat them."""


_NoTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def timestamp(now: datetime | None = None) -> str:
    """RFC 3339 with sub-second precision in UTC, as Go's time.RFC3339Nano renders it."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ChartVersion:
    """One entry of ``entries.<name>``: everything in it, as it will be written."""

    data: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.data.get("version", ""))

    @property
    def digest(self) -> str:
        return str(self.data.get("digest", ""))

    @property
    def created(self) -> str:
        return str(self.data.get("created", ""))

    @property
    def urls(self) -> list[str]:
        urls = self.data.get("urls") or []
        return [str(u) for u in urls]

    def with_created(self, created: str) -> ChartVersion:
        return ChartVersion({**self.data, "created": created})


@dataclass
class Index:
    """A repository index; ``extra`` keeps top-level keys we do not interpret (publicKeys...)."""

    entries: dict[str, list[ChartVersion]] = field(default_factory=dict)
    generated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, version: str) -> ChartVersion | None:
        """Exact match only: no SemVer fallback, so build metadata keeps versions apart."""
        for entry in self.entries.get(name, []):
            if entry.version == version:
                return entry
        return None

    def all_versions(self) -> Iterable[ChartVersion]:
        for name in sorted(self.entries):
            yield from self.entries[name]

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())


def url_join(base_url: str, *parts: str) -> str:
    """helm's URLJoin: the archive URL relative to the repository URL (or bare when no URL)."""
    rel = "/".join(p.strip("/") for p in parts if p and p != ".")
    if not base_url:
        return rel
    return f"{base_url.rstrip('/')}/{rel}"


def new_entry(metadata: ChartMetadata, digest: str, url: str, created: str) -> ChartVersion:
    """An index entry for a packaged chart."""
    data: dict[str, Any] = dict(metadata.fields)
    data.setdefault("apiVersion", "v1")
    data["urls"] = [url]
    data["created"] = created
    data["digest"] = digest
    return ChartVersion(data)


def sort_entries(index: Index) -> None:
    """Newest first by SemVer, build metadata as a stable tie-break, invalid versions last."""
    for name, entries in index.entries.items():
        valid = [e for e in entries if versions.parse(e.version) is not None]
        invalid = [e for e in entries if versions.parse(e.version) is None]
        valid.sort(key=lambda e: versions.sort_key(e.version), reverse=True)
        index.entries[name] = valid + invalid


def check_duplicates(entries: Iterable[ChartVersion]) -> None:
    """Refuse a batch that holds the same name and version twice (helm would index both)."""
    seen: dict[tuple[str, str], str] = {}
    for e in entries:
        key = (e.name, e.version)
        where = e.urls[0] if e.urls else "?"
        if key in seen:
            raise DuplicateVersionError(
                f"duplicate version: {e.name} {e.version} is in both {seen[key]} and {where}"
            )
        seen[key] = where


def build_index(
    local: list[ChartVersion],
    now: str,
    merge: Index | None = None,
    previous: Index | None = None,
) -> Index:
    """Index ``local`` entries, merging ``merge`` like ``helm repo index --merge``.

    Local entries win over merged ones with the same version (as in helm). ``created`` comes from
    ``merge`` or ``previous`` when the digest there is the same, else it is ``now``.
    """
    check_duplicates(local)
    index = Index(generated=now, extra=dict(merge.extra) if merge else {})
    for entry in local:
        created = now
        for source in (merge, previous):
            old = source.get(entry.name, entry.version) if source else None
            if old is not None and old.digest == entry.digest and old.created:
                created = old.created
                break
        index.entries.setdefault(entry.name, []).append(entry.with_created(created))
    if merge is not None:
        for old in merge.all_versions():
            if index.get(old.name, old.version) is None:
                index.entries.setdefault(old.name, []).append(old)
    sort_entries(index)
    return index


def add_entries(published: Index, new: list[ChartVersion], now: str) -> Index:
    """Add new versions to a published index, never touching or dropping existing entries."""
    check_duplicates(new)
    index = Index({k: list(v) for k, v in published.entries.items()}, now, dict(published.extra))
    for entry in new:
        if index.get(entry.name, entry.version) is not None:
            raise DuplicateVersionError(f"{entry.name} {entry.version} is already in the index")
        index.entries.setdefault(entry.name, []).append(entry)
    sort_entries(index)
    return index


def to_document(index: Index) -> dict[str, Any]:
    """The plain data written to index.yaml."""
    doc: dict[str, Any] = {"apiVersion": "v1", **index.extra}
    doc["entries"] = {
        name: [dict(e.data) for e in entries] for name, entries in index.entries.items()
    }
    doc["generated"] = index.generated
    return doc


def dump(index: Index) -> str:
    """YAML with keys sorted at every level, as helm (sigs.k8s.io/yaml) writes it."""
    return yamlemit.dump(to_document(index))


def load(raw: bytes, source: str = "index.yaml") -> Index:
    """Parse index.yaml (JSON or YAML) without dropping anything, or raise IndexFormatError."""
    if len(raw) > bounded.MAX_INDEX_BYTES:  # before the fast reader builds anything
        raise IndexFormatError(
            f"{source}: index of {len(raw)} bytes is over the {bounded.MAX_INDEX_BYTES}-byte limit"
        )
    if not raw.strip():
        raise IndexFormatError(f"{source}: empty index file")
    try:
        stripped = raw.lstrip()
        data = bounded.load_json(raw, source) if stripped.startswith(b"{") else _load_yaml(raw)
    except (ValueError, yaml.YAMLError) as e:
        raise IndexFormatError(f"{source}: not valid YAML or JSON: {e}") from e
    if not isinstance(data, dict):
        raise IndexFormatError(f"{source}: must be a mapping")
    if not data.get("apiVersion"):
        raise IndexFormatError(f"{source}: no apiVersion; is this a Helm repository index?")
    entries = data.get("entries") or {}
    if not isinstance(entries, dict):
        raise IndexFormatError(f"{source}: entries must be a mapping of chart names")
    index = Index(generated=str(data.get("generated", "")))
    index.extra = {
        k: v
        for k, v in data.items()
        if k not in ("apiVersion", "entries", "generated", "serverInfo")
    }
    for name, items in entries.items():
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise IndexFormatError(f"{source}: entries.{name} must be a list of chart versions")
        index.entries[str(name)] = [ChartVersion(_stringify(i)) for i in items]
    sort_entries(index)
    return index


def _load_yaml(raw: bytes) -> Any:
    """The fast subset reader for what helm and we write, PyYAML for anything else."""
    try:
        return yamlread.load(raw.decode("utf-8"))
    except (yamlread.UnsupportedYamlError, UnicodeDecodeError):
        return yamlload.load(raw, loader=_NoTimestampLoader)


def _stringify(item: dict[str, Any]) -> dict[str, Any]:
    """Versions written unquoted by other tools (``version: 1.0``) become strings again."""
    for key in ("version", "appVersion"):
        if key in item and not isinstance(item[key], str):
            item[key] = str(item[key])
    return item
