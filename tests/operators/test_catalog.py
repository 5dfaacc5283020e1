"""Semantic versions, skipRange, file-based catalogs and upgrade-graph resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flotilla.operators.catalog import (
    Channel,
    ChannelEntry,
    GraphError,
    channel_head,
    load_catalog,
    parse_catalog,
    upgrade_path,
)
from flotilla.operators.semver import Version, VersionRange
from tests.operators.helpers import CATALOG


def v(text: str) -> Version:
    return Version.parse(text)


def test_version_order_follows_semver() -> None:
    assert v("1.0.0-alpha") < v("1.0.0-alpha.1") < v("1.0.0-beta") < v("1.0.0")
    assert v("0.9.10") > v("0.9.2")
    assert v("1.2.3+build.5") == v("1.2.3")
    assert str(v("1.2.3-rc.1+build.5")) == "1.2.3-rc.1+build.5"
    for bad in ("latest", "v1.2.3", "1.2", "1.0.0-01"):  # OLM's blang Parse refuses these too
        with pytest.raises(ValueError, match="not a semantic version"):
            v(bad)


def test_skip_range_syntax() -> None:
    rng = VersionRange.parse(">=4.1.0 <4.1.2")
    assert v("4.1.0") in rng and v("4.1.1") in rng
    assert v("4.1.2") not in rng and v("4.0.9") not in rng
    spaced = VersionRange.parse(">= 1.0.0 < 2.0.0 || =3.0.0")
    assert v("1.5.0") in spaced and v("3.0.0") in spaced and v("2.5.0") not in spaced
    assert v("1.0.0") in VersionRange.parse("1.0.0")
    with pytest.raises(ValueError, match=r"ends with '\|\|'"):
        VersionRange.parse(">=1.0.0 ||")


def test_load_catalog_yaml_and_json_stream() -> None:
    cat = load_catalog(CATALOG)
    assert sorted(cat.packages) == ["etcd", "greedy-operator", "memcached-operator"]
    etcd = cat.package("etcd")
    assert etcd.default_channel == "alpha"
    assert etcd.bundles["etcdoperator.v0.9.2"].version == v("0.9.2")
    assert etcd.bundles["etcdoperator.v0.9.2"].path == (CATALOG / "bundles/etcd-0.9.2").resolve()
    greedy = cat.package("greedy-operator").channel(None)
    assert greedy.entries[0].skip_range is not None


def test_unknown_package_and_channel_say_what_exists() -> None:
    cat = load_catalog(CATALOG)
    with pytest.raises(GraphError, match="packages: etcd, greedy-operator"):
        cat.package("nope")
    with pytest.raises(GraphError, match=r"channels: alpha"):
        cat.package("etcd").channel("stable")


def test_bundle_image_path_cannot_leave_the_catalog(tmp_path: Path) -> None:
    docs: list[Any] = [
        {"schema": "olm.bundle", "name": "x.v1.0.0", "package": "x", "image": "../../etc"}
    ]
    catalog = parse_catalog(docs, tmp_path)  # left out, named; the rest of the catalog loads
    assert catalog.packages == {}
    assert any("x.v1.0.0" in p and "leaves the catalog" in p for p in catalog.problems)


def test_malformed_catalog_entries_name_their_file_and_entry(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "schema: olm.package\nname: p\ndefaultChannel: stable\n---\n"
        "schema: olm.channel\npackage: p\nentries: []\n"  # no name
    )
    (tmp_path / "b.json").write_text(
        '{"schema": "olm.channel", "name": "stable", "package": "p", "entries": []}\n'
        '{"schema": "olm.bundle", "name": "p.v1.0.0"}\n'  # no package
    )
    (tmp_path / "c.yaml").write_bytes(b"schema: olm.package\nname: \xff\n")
    catalog = load_catalog(tmp_path)
    assert "stable" in catalog.package("p").channels
    problems = "\n".join(catalog.problems)
    assert f"{tmp_path / 'a.yaml'}:5: olm.channel (no name) left out: missing 'name'" in problems
    assert f"{tmp_path / 'b.json'}:2: olm.bundle p.v1.0.0 left out: missing 'package'" in problems
    assert f"{tmp_path / 'c.yaml'}: left out, cannot read" in problems


def _etcd() -> Channel:
    return load_catalog(CATALOG).package("etcd").channel("alpha")


def _versions() -> dict[str, Version]:
    return {b.name: b.version for b in load_catalog(CATALOG).package("etcd").bundles.values()}


def test_head_is_the_entry_nothing_replaces_or_skips() -> None:
    assert channel_head(_etcd()).name == "etcdoperator.v0.9.4"


def test_upgrade_walks_replaces_one_step_at_a_time() -> None:
    path = upgrade_path(_etcd(), "etcdoperator.v0.9.0", v("0.9.0"), _versions())
    # 0.9.0 is replaced by both 0.9.1 and 0.9.2; the newer wins, then 0.9.4
    assert [e.name for e in path] == ["etcdoperator.v0.9.2", "etcdoperator.v0.9.4"]


def test_skipped_bundle_still_upgrades() -> None:
    path = upgrade_path(_etcd(), "etcdoperator.v0.9.1", v("0.9.1"), _versions())
    assert [e.name for e in path] == ["etcdoperator.v0.9.2", "etcdoperator.v0.9.4"]


def test_at_head_nothing_to_do() -> None:
    assert upgrade_path(_etcd(), "etcdoperator.v0.9.4", v("0.9.4")) == []


def test_skip_range_jumps_straight_to_head() -> None:
    channel = Channel(
        "stable",
        "p",
        (
            ChannelEntry("p.v1.0.0"),
            ChannelEntry("p.v1.1.0", replaces="p.v1.0.0"),
            ChannelEntry("p.v1.2.0", replaces="p.v1.1.0"),
            ChannelEntry(
                "p.v2.0.0", replaces="p.v1.2.0", skip_range=VersionRange.parse(">=1.0.0 <2.0.0")
            ),
        ),
    )
    assert [e.name for e in upgrade_path(channel, "p.v1.0.0", v("1.0.0"))] == ["p.v2.0.0"]
    # a version only the range knows (installed from elsewhere) also upgrades
    assert [e.name for e in upgrade_path(channel, "p.v1.0.5", v("1.0.5"))] == ["p.v2.0.0"]


def test_no_path_cycles_and_two_heads_are_errors() -> None:
    with pytest.raises(GraphError, match=r"no upgrade from etcdoperator\.v0\.8\.0"):
        upgrade_path(_etcd(), "etcdoperator.v0.8.0", v("0.8.0"))
    two_heads = Channel("c", "p", (ChannelEntry("a"), ChannelEntry("b")))
    with pytest.raises(GraphError, match="exactly one head"):
        channel_head(two_heads)
    cycle = Channel("c", "p", (ChannelEntry("a", replaces="b"), ChannelEntry("b", replaces="a")))
    with pytest.raises(GraphError, match="exactly one head"):
        channel_head(cycle)
