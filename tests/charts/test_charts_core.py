"""Pure core: version ordering, Chart.yaml validation, index building. No I/O, no mocks."""

from __future__ import annotations

import pytest

from flotilla.charts import index as idx
from flotilla.charts import versions
from flotilla.charts.chartfile import ChartMetadata, Severity, parse_chart_yaml
from flotilla.charts.errors import DuplicateVersionError, IndexFormatError, InvalidChartError


# --- versions ---------------------------------------------------------------------------------
def test_newest_first_follows_semver_precedence() -> None:
    given = [
        "1.0.0-rc.1",
        "1.0.0",
        "0.9.0",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta.11",
        "1.0.0-beta.2",
        "1.0.0-beta",
        "1.10.0",
        "1.9.0",
        "not-a-version",
    ]
    assert versions.newest_first(given) == [
        "1.10.0",
        "1.9.0",
        "1.0.0",
        "1.0.0-rc.1",
        "1.0.0-beta.11",
        "1.0.0-beta.2",
        "1.0.0-beta",
        "1.0.0-alpha.beta",
        "1.0.0-alpha.1",
        "1.0.0-alpha",
        "0.9.0",
        "not-a-version",
    ]


def test_build_metadata_versions_are_distinct_and_ordered_stably() -> None:
    given = ["1.0.0+build.1", "1.0.0", "1.0.0+build.10", "1.0.0+build.2", "1.0.1-rc.1"]
    first = versions.newest_first(given)
    assert first[0] == "1.0.1-rc.1"
    assert sorted(first) == sorted(given)
    assert versions.newest_first(list(reversed(given))) == first
    assert first.index("1.0.0+build.10") < first.index("1.0.0+build.2")


@pytest.mark.parametrize(
    ("text", "lenient", "strict"),
    [
        ("1.2.3", True, True),
        ("v1.2", True, False),
        ("1.2", True, False),
        ("1.2.3-rc.1+build.5", True, True),
        ("01.2.3", True, False),
        ("1.2.3-", False, False),
        ("latest", False, False),
        ("1.2.3+", False, False),
        ("1.2.3\n", False, False),
    ],
)
def test_parse_lenient_and_strict(text: str, lenient: bool, strict: bool) -> None:
    assert (versions.parse(text) is not None) is lenient
    assert versions.is_strict(text) is strict


# --- Chart.yaml -------------------------------------------------------------------------------
GOOD = b"""
apiVersion: v2
name: webapp
version: 1.2.3-rc.1+build.9
appVersion: "2.0"
description: "tab\there"
deprecated: false
unknownField: x
maintainers:
  - name: Ada
    email: ada@example.com
    extra: dropped
annotations:
  artifacthub.io/license: MIT
dependencies:
  - name: redis
    version: 1.x
    repository: https://charts.example.com
    enabled: true
    future: dropped
"""


def test_parse_keeps_helm_fields_and_drops_unknown_ones() -> None:
    meta = parse_chart_yaml(GOOD)
    assert not meta.errors
    assert meta.fields["description"] == "tab here"
    assert "unknownField" not in meta.fields and "deprecated" not in meta.fields
    assert meta.fields["maintainers"] == [{"name": "Ada", "email": "ada@example.com"}]
    assert meta.fields["dependencies"] == [
        {
            "name": "redis",
            "version": "1.x",
            "repository": "https://charts.example.com",
            "enabled": True,
        }
    ]
    warned = {f.field for f in meta.findings if f.severity is Severity.WARNING}
    assert {"unknownField", "dependencies[0].future"} <= warned
    assert meta.archive_name == "webapp-1.2.3-rc.1+build.9.tgz"


def _errors(raw: str) -> list[str]:
    return [f"{f.field}: {f.message}" for f in parse_chart_yaml(raw.encode()).errors]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("name: x\nversion: 1.0.0\n", "apiVersion: is required"),
        ("apiVersion: v3\nname: x\nversion: 1.0.0\n", "apiVersion: 'v3' is not valid"),
        ("apiVersion: v2\nversion: 1.0.0\n", "name: is required"),
        ("apiVersion: v2\nname: ../x\nversion: 1.0.0\n", "name: chart name '../x' is invalid"),
        ("apiVersion: v2\nname: x\n", "version: is required"),
        ("apiVersion: v2\nname: x\nversion: latest\n", "version: 'latest' is not a valid SemVer"),
        ("apiVersion: v2\nname: x\nversion: 1.0\n", "version: must be a string, but it is a YAML"),
        ("apiVersion: v2\nname: x\nversion: 1.0.0\ntype: plugin\n", "type: 'plugin' is invalid"),
        ("apiVersion: v1\nname: x\nversion: 1.0.0\ntype: library\n", "type: is only allowed with"),
        (
            "apiVersion: v2\nname: x\nversion: 1.0.0\nmaintainers: [{email: a@b.c}]\n",
            "maintainers[0].name: each maintainer needs a name",
        ),
        (
            "apiVersion: v2\nname: x\nversion: 1.0.0\nmaintainers: [{name: a, email: nope}]\n",
            "maintainers[0].email: 'nope' is not an email",
        ),
        ("apiVersion: v2\nname: x\nversion: 1.0.0\nsources: [not a url]\n", "sources[0]"),
        (
            "apiVersion: v2\nname: x\nversion: 1.0.0\ndependencies: [{name: a, version: 1.x, "
            "repository: 'https://e.com', alias: 'b c'}]\n",
            "dependencies[0].alias",
        ),
        (
            "apiVersion: v2\nname: x\nversion: 1.0.0\ndependencies: [{name: a, repository: ''}, "
            "{name: a, repository: ''}]\n",
            "more than one dependency with name or alias 'a'",
        ),
        ("apiVersion: v2\nname: x\nname: y\nversion: 1.0.0\n", "name: duplicate key"),
    ],
)
def test_invalid_chart_yaml_names_the_field(raw: str, expected: str) -> None:
    assert any(expected in e for e in _errors(raw)), _errors(raw)


@pytest.mark.parametrize("raw", [b"", b"name: [unclosed\n", b"- a list\n", b"just a string\n"])
def test_unparsable_chart_yaml_raises(raw: bytes) -> None:
    with pytest.raises(InvalidChartError, match=r"Chart\.yaml"):
        parse_chart_yaml(raw)


def test_lint_warnings_for_style() -> None:
    meta = parse_chart_yaml(b"apiVersion: v2\nname: My_Chart\nversion: v1.2\n")
    assert not meta.errors
    warned = {f.field for f in meta.findings if f.severity is Severity.WARNING}
    assert warned == {"name", "version"}
    assert any(f.field == "icon" and f.severity is Severity.INFO for f in meta.findings)


# --- index ------------------------------------------------------------------------------------
def _entry(name: str, version: str, digest: str = "d" * 64) -> idx.ChartVersion:
    meta = ChartMetadata({"apiVersion": "v2", "name": name, "version": version})
    return idx.new_entry(
        meta, digest, idx.url_join("https://x.test/c", f"{name}-{version}.tgz"), ""
    )


def test_build_index_sorts_and_stamps() -> None:
    local = [
        _entry("a", "1.0.0"),
        _entry("a", "2.0.0-rc.1"),
        _entry("a", "1.5.0"),
        _entry("b", "0.1.0"),
    ]
    index = idx.build_index(local, "NOW")
    assert [e.version for e in index.entries["a"]] == ["2.0.0-rc.1", "1.5.0", "1.0.0"]
    assert all(e.created == "NOW" for e in index.all_versions())
    assert index.entries["a"][0].urls == ["https://x.test/c/a-2.0.0-rc.1.tgz"]


def test_created_is_kept_when_digest_is_unchanged() -> None:
    first = idx.build_index([_entry("a", "1.0.0"), _entry("a", "1.1.0")], "T1")
    second = idx.build_index(
        [_entry("a", "1.0.0"), _entry("a", "1.1.0", "e" * 64)], "T2", merge=first
    )
    created = {e.version: e.created for e in second.all_versions()}
    assert created == {"1.0.0": "T1", "1.1.0": "T2"}
    assert second.generated == "T2"


def test_merge_keeps_old_entries_and_local_wins() -> None:
    old = idx.build_index([_entry("a", "0.9.0"), _entry("a", "1.0.0", "o" * 64)], "T1")
    new = idx.build_index([_entry("a", "1.0.0", "n" * 64)], "T2", merge=old)
    assert [(e.version, e.digest[0]) for e in new.entries["a"]] == [("1.0.0", "n"), ("0.9.0", "d")]


def test_build_metadata_versions_do_not_collide() -> None:
    old = idx.build_index([_entry("a", "1.0.0+b1")], "T1")
    new = idx.build_index([_entry("a", "1.0.0+b2")], "T2", merge=old)
    assert sorted(e.version for e in new.entries["a"]) == ["1.0.0+b1", "1.0.0+b2"]


def test_duplicate_versions_in_a_batch_are_refused() -> None:
    with pytest.raises(DuplicateVersionError, match=r"duplicate version: a 1\.0\.0"):
        idx.build_index([_entry("a", "1.0.0"), _entry("a", "1.0.0", "f" * 64)], "T")


def test_add_entries_never_drops_or_overwrites() -> None:
    published = idx.build_index([_entry("a", "1.0.0"), _entry("zz", "9.9.9")], "T1")
    grown = idx.add_entries(published, [_entry("a", "1.1.0")], "T2")
    assert len(grown) == 3 and grown.get("zz", "9.9.9") == published.get("zz", "9.9.9")
    with pytest.raises(DuplicateVersionError):
        idx.add_entries(published, [_entry("a", "1.0.0")], "T3")


def test_dump_and_load_round_trip_with_sorted_keys() -> None:
    index = idx.build_index([_entry("b", "1.0"), _entry("a", "1.0.0")], "2026-01-01T00:00:00Z")
    text = idx.dump(index)
    assert text.index("  a:") < text.index("  b:")
    assert 'version: "1.0"' in text  # a string, not a float, for helm's strict loader
    loaded = idx.load(text.encode())
    assert loaded.get("b", "1.0") == index.get("b", "1.0")
    assert loaded.generated == "2026-01-01T00:00:00Z"


def test_load_keeps_timestamps_verbatim_and_accepts_json() -> None:
    raw = (
        b"apiVersion: v1\nentries:\n  a:\n  - name: a\n    version: 1.0\n"
        b"    created: 2019-03-29T22:50:44.754424+01:00\n    digest: abc\n"
        b"generated: 2019-03-29T22:50:44+01:00\npublicKeys: [k]\n"
    )
    index = idx.load(raw)
    entry = index.entries["a"][0]
    assert entry.created == "2019-03-29T22:50:44.754424+01:00" and entry.version == "1.0"
    assert idx.to_document(index)["publicKeys"] == ["k"]
    assert idx.load(b'{"apiVersion": "v1", "entries": {}}').entries == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty index"),
        (b"entries: {}\n", "no apiVersion"),
        (b"a: [\n", "not valid YAML"),
        (b"apiVersion: v1\nentries: [1]\n", "entries must be a mapping"),
        (b"apiVersion: v1\nentries:\n  a: 3\n", "entries.a must be a list"),
    ],
)
def test_bad_index_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(IndexFormatError, match=message):
        idx.load(raw)


@pytest.mark.parametrize(
    "raw",
    [
        GOOD,
        b"apiVersion: v2\nname: x\nversion: 1.0\nappVersion: 1.10\n",
        b"apiVersion: v2\nname: x # comment\nversion: '1.0.0'\ndeprecated: yes\n",
        b"apiVersion: v2\nname: x\nversion: 1.0.0\nannotations:\n  a: |\n    multi\n    line\n",
        b"apiVersion: v2\nname: x\nname: y\nversion: 1.0.0\n",
        b"apiVersion: v2\nname: x\nversion: ~\ntags: null\nkeywords: [a, b]\n",
    ],
)
def test_fast_and_full_chart_yaml_parsers_agree(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flotilla.charts import yamlread

    fast = parse_chart_yaml(raw)

    def decline(text: str, keep_plain: bool = False) -> None:
        raise yamlread.UnsupportedYamlError

    monkeypatch.setattr(yamlread, "load", decline)
    full = parse_chart_yaml(raw)
    assert fast.fields == full.fields
    assert {(f.field, f.message) for f in fast.findings} == {
        (f.field, f.message) for f in full.findings
    }
    assert all(type(v) is str for v in fast.fields.get("annotations", {}).values())


def test_deeply_nested_chart_yaml_is_refused() -> None:
    raw = b"apiVersion: v2\nname: x\nversion: 1.0.0\nannotations: " + b"[" * 5000 + b"]" * 5000
    with pytest.raises(InvalidChartError):
        parse_chart_yaml(raw)
