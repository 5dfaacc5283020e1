"""``flotilla charts deps CHART``: fetch remote dependencies into charts/, as
``helm dependency build`` (with a Chart.lock) or ``update`` (without) does.

HTTP chart repositories are read through their index.yaml; the archive's sha256 must equal the
index entry's ``digest``. OCI registries give the archive whose layer digest the manifest names.
Versions come from Chart.lock (requirements.lock for v1 charts) when its entries match the
declared dependencies, else the highest version satisfying the range (Masterminds/semver's
constraint dialect: ``^ ~ >= <= > < = !=``, ``x`` wildcards, ``||``; pre-releases only when the
range names one). ``file://`` dependencies are packaged at ``package`` time and skipped here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flotilla.charts import index as idx
from flotilla.charts import versions
from flotilla.charts.archives import ArchiveLimits, read_archive
from flotilla.charts.bounded import MAX_CHART_FILE_BYTES, MAX_INDEX_BYTES, read_bounded
from flotilla.charts.errors import ChartError
from flotilla.charts.existing import fetch
from flotilla.charts.packaging import read_metadata, write_atomic
from flotilla.core import yamlload

_OP = re.compile(r"^(\^|~>?|>=|<=|!=|>|<|=)?\s*v?([0-9xX*]+(?:\.[0-9xX*]+){0,2})(-[0-9A-Za-z.-]+)?")


def _bound(text: str) -> tuple[list[int | None], str]:
    parts: list[int | None] = [None if p in "xX*" else int(p) for p in text.split(".")]
    return parts + [None] * (3 - len(parts)), ""


def _key(v: versions.Version) -> tuple[int, int, int]:
    return (v.major, v.minor, v.patch)


def _cmp(v: versions.Version, other: str) -> int:
    a, b = versions.sort_key(v.original)[1], versions.sort_key(other)[1]
    return (a > b) - (a < b)


def _one(term: str, v: versions.Version) -> bool:
    match = _OP.match(term)
    if match is None or match.end() != len(term):
        raise ChartError(f"version range {term!r} is not understood")
    op, core, pre = match.group(1) or "=", match.group(2), match.group(3) or ""
    parts, _ = _bound(core)
    fixed = [p if p is not None else 0 for p in parts]
    exact = f"{fixed[0]}.{fixed[1]}.{fixed[2]}{pre}"
    wild = parts.index(None) if None in parts else 3
    if op in ("=", "") and wild < 3:
        op = "~" if wild > 0 else ">="
        if wild == 0:
            return True
    if op == "^":
        upper = (
            [fixed[0] + 1, 0, 0]
            if fixed[0] > 0 or wild == 1
            else ([0, fixed[1] + 1, 0] if fixed[1] > 0 or wild == 2 else [0, 0, fixed[2] + 1])
        )
        return _cmp(v, exact) >= 0 and _cmp(v, "{}.{}.{}-0".format(*upper)) < 0
    if op in ("~", "~>"):
        upper = [fixed[0] + 1, 0, 0] if wild == 1 else [fixed[0], fixed[1] + 1, 0]
        return _cmp(v, exact) >= 0 and _cmp(v, "{}.{}.{}-0".format(*upper)) < 0
    c = _cmp(v, exact)
    return {"=": c == 0, "!=": c != 0, ">": c > 0, "<": c < 0, ">=": c >= 0, "<=": c <= 0}[op]


def satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` is in the range ``constraint`` (see the module docstring)."""
    v = versions.parse(version)
    if v is None:
        return False
    constraint = constraint.strip() or "*"
    for alternative in constraint.split("||"):
        terms = [t for t in re.split(r"[\s,]+", re.sub(r"([<>=!~^]+)\s+", r"\1", alternative)) if t]
        if v.is_prerelease and not any("-" in t for t in terms):
            continue
        if all(_one(t, v) for t in terms):
            return True
    return False


def best(candidates: list[str], constraint: str) -> str | None:
    matching = [c for c in candidates if satisfies(c, constraint)]
    return max(matching, key=versions.sort_key) if matching else None


@dataclass(frozen=True)
class Fetched:
    name: str
    version: str
    repository: str
    archive: str


def lock_digest(requested: list[dict[str, Any]], locked: list[dict[str, Any]]) -> str:
    """helm's ``HashReq``: sha256 of the JSON of [requested, locked] dependencies."""

    def go(dep: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": dep.get("name", "")}
        if dep.get("version"):
            out["version"] = dep["version"]
        out["repository"] = dep.get("repository", "")
        for key in ("condition", "tags", "enabled", "import-values", "alias"):
            if dep.get(key):
                out[key] = dep[key]
        return out

    data = json.dumps(
        [[go(d) for d in requested], [go(d) for d in locked]],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    # Go's encoding/json escapes these for HTML; the digest must match byte for byte
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        data = data.replace(char, escaped)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def _read_lock(chart_dir: Path, api_version: str) -> tuple[Path, dict[str, str]]:
    lock = chart_dir / ("requirements.lock" if api_version == "v1" else "Chart.lock")
    if not lock.is_file():
        return lock, {}
    try:
        data = yamlload.load(read_bounded(lock, MAX_CHART_FILE_BYTES, lock.name))
    except yaml.YAMLError as e:
        raise ChartError(f"{lock}: invalid YAML: {e}") from e
    deps = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(deps, list):
        return lock, {}
    return lock, {
        f"{d.get('name')}@{d.get('repository')}": str(d.get("version", ""))
        for d in deps
        if isinstance(d, dict)
    }


def _from_http(repo: str, name: str, constraint: str, locked: str | None) -> tuple[str, bytes]:
    raw = fetch(idx.url_join(repo, "index.yaml"), MAX_INDEX_BYTES)
    index = idx.load(raw, f"{repo}/index.yaml")
    entries = index.entries.get(name, [])
    version = locked or best([e.version for e in entries], constraint)
    entry = index.get(name, version) if version else None
    if entry is None or not entry.urls:
        raise ChartError(f"{repo}: no {name} version matching {locked or constraint!r}")
    url = entry.urls[0]
    if "://" not in url:
        url = idx.url_join(repo, url)
    data = fetch(url, ArchiveLimits().max_total_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if entry.digest and digest != entry.digest:
        raise ChartError(f"{url}: sha256 {digest} is not the index's digest {entry.digest}")
    return entry.version, data


def _from_oci(repo: str, name: str, constraint: str, locked: str | None) -> tuple[str, bytes]:
    from flotilla.charts.oci import Reference, Registry, tag_of

    ref = Reference.parse(repo)
    registry = Registry(ref.host)
    try:
        repository = ref.repository(name)
        if locked:
            version = locked
        else:
            tags = [t.replace("_", "+") for t in registry.tags(repository)]
            found = best(tags, constraint)
            if found is None:
                raise ChartError(f"{repo}/{name}: no tag matching {constraint!r}")
            version = found
        return version, registry.pull_chart(repository, tag_of(version))
    finally:
        registry.close()


def build_dependencies(chart_dir: Path) -> list[Fetched]:
    """Fetch every http(s) and oci dependency into ``chart_dir/charts`` and write the lock."""
    meta = read_metadata(chart_dir)
    if meta.errors:
        raise ChartError("\n".join(str(f) for f in meta.errors))
    lock_path, locked = _read_lock(chart_dir, meta.api_version)
    fetched: list[Fetched] = []
    lock_entries: list[dict[str, Any]] = []
    charts = chart_dir / "charts"
    for dep in meta.dependencies:
        name, repo = dep["name"], dep.get("repository", "")
        constraint = dep.get("version", "")
        if not repo or repo.startswith("file://"):
            lock_entries.append({"name": name, "repository": repo, "version": constraint})
            continue
        pinned = locked.get(f"{name}@{repo}")
        if pinned and not satisfies(pinned, constraint or "*"):
            pinned = None  # the lock is out of date for this range; resolve again
        if repo.startswith("oci://"):
            version, data = _from_oci(repo, name, constraint, pinned)
        elif repo.startswith(("https://", "http://")):
            version, data = _from_http(repo.rstrip("/"), name, constraint, pinned)
        else:
            raise ChartError(f"{name}: repository {repo!r}: use a URL, oci:// or file://")
        sub, _, _ = read_archive(data, f"{name}-{version}.tgz")
        if sub.name != name or sub.version != version:
            raise ChartError(f"{repo}: {name} {version} holds {sub.name} {sub.version}")
        charts.mkdir(exist_ok=True)
        for stale in charts.glob(f"{name}-*.tgz"):
            if stale.name != sub.archive_name:
                stale.unlink()
        write_atomic(charts / sub.archive_name, data)
        fetched.append(Fetched(name, version, repo, sub.archive_name))
        lock_entries.append({"name": name, "repository": repo, "version": version})
    if fetched:
        lock = {
            "dependencies": lock_entries,
            "digest": lock_digest(meta.dependencies, lock_entries),
            "generated": idx.timestamp(),
        }
        write_atomic(lock_path, yaml.safe_dump(lock, sort_keys=True).encode())
    return fetched
