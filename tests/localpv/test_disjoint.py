"""Volumes never nest: placement over random patterns, names and uids, and the on-disk re-check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flotilla.localpv.backends.base import RootConfig, VolumeSpec
from flotilla.localpv.backends.hostpath import HostPathBackend
from flotilla.localpv.backends.safefs import REGISTRY, NestedVolume, registered_volumes
from flotilla.localpv.model import Allocation, Backend, Claim, ClassParams, NodeReport, Pool
from flotilla.localpv.node.agent import Agent
from flotilla.localpv.policies import (
    InvalidInput,
    Place,
    nests,
    place,
    render_subpath,
)

GiB = 2**30
POOLS = (
    Pool("n1", Backend.HOSTPATH, "/srv", 100 * GiB, 100 * GiB),
    Pool("n1", Backend.HOSTPATH, "/srv/b", 100 * GiB, 100 * GiB),
    Pool("n1", Backend.BTRFS, "/srv/btrfs", 100 * GiB, 100 * GiB),
)
NODE = NodeReport(
    "n1",
    exists=True,
    node_uid="u",
    agent_uid="u",
    agent_alive=True,
    labels={"kubernetes.io/hostname": "n1"},
    pools=POOLS,
)

# Short alphabets make collisions likely: a claim named like another's PV, a uid that is a prefix.
uids = st.sampled_from(["a", "b", "aaaa"])
words = st.sampled_from(["b", "x", "pvc-a", "pvc-aaaa", "pvc-b", "btrfs"])
tokens = st.sampled_from(["{pv}", "{pvc}", "{namespace}", "{subdir}", "x", "b", "pvc-"])
component = st.lists(tokens, min_size=1, max_size=3).map("".join)
patterns = st.one_of(
    st.sampled_from(
        [
            "{pv}",
            "{pvc}/{pv}",
            "{namespace}/{pv}",
            "{subdir}/{pvc}/{pv}",
            "b/{pv}",
            "btrfs/{pv}",
            "{namespace}/{pvc}/{pv}",
        ]
    ),
    st.lists(component, min_size=1, max_size=4).map("/".join).filter(lambda p: "{pv}" in p),
)


def _claim(namespace: str, name: str, uid: str, subdir: str) -> Claim:
    return Claim(namespace, name, uid, GiB, annotations={"localpv.flotilla.dev/subdir": subdir})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            patterns, words, words, uids, words, st.sampled_from([Backend.HOSTPATH, Backend.BTRFS])
        ),
        min_size=2,
        max_size=12,
    )
)
def test_no_two_placed_volumes_nest(
    requests: list[tuple[str, str, str, str, str, Backend]],
) -> None:
    placed: list[Allocation] = []
    for pattern, namespace, name, uid, subdir, backend in requests:
        claim = _claim(namespace, name, uid, subdir)
        if any(a.name == claim.pv_name for a in placed):
            continue  # a uid is unique in a cluster
        try:
            subpath = render_subpath(pattern, claim)
        except InvalidInput:
            continue
        decision = place(
            claim, ClassParams(backend=backend, path_pattern=pattern), NODE, placed, subpath=subpath
        )
        if isinstance(decision, Place):
            placed.append(Allocation("n1", backend, decision.pool, GiB, subpath, claim.pv_name))
    paths = [a.directory for a in placed]
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            assert not nests(first, second), (first, second)


@given(
    st.lists(st.sampled_from("ab"), max_size=4).map(tuple),
    st.lists(st.sampled_from("ab"), max_size=4).map(tuple),
)
def test_nests_means_one_path_is_a_prefix_of_the_other(
    a: tuple[str, ...], b: tuple[str, ...]
) -> None:
    if a and b:
        as_paths = os.path.commonpath(["/" + "/".join(a), "/" + "/".join(b)])
        assert nests(a, b) == (as_paths in ("/" + "/".join(a), "/" + "/".join(b)))
    else:
        assert not nests(a, b)
    assert nests(a, b) == nests(b, a)


def test_the_issue_scenario_is_placed_apart() -> None:
    """{pv} renders pvc-aaaa; {pvc}/{pv} for a claim named pvc-aaaa would render inside it."""
    one_root = NodeReport(
        "n1", exists=True, node_uid="u", agent_uid="u", agent_alive=True, labels={}, pools=POOLS[:1]
    )
    first = _claim("ns", "data", "aaaa", "")
    second = _claim("ns", "pvc-aaaa", "bbbb", "")
    taken = [
        Allocation(
            "n1", Backend.HOSTPATH, "/srv", GiB, render_subpath("{pv}", first), first.pv_name
        )
    ]
    subpath = render_subpath("{pvc}/{pv}", second)
    assert subpath == ("pvc-aaaa", "pvc-bbbb")
    decision = place(
        second, ClassParams(path_pattern="{pvc}/{pv}"), one_root, taken, subpath=subpath
    )
    assert not isinstance(decision, Place)
    assert "pvc-aaaa" in decision.reason


# --- the agent's re-check on disk ---------------------------------------------------------------


def _spec(name: str, *parts: str, root: Path) -> VolumeSpec:
    return VolumeSpec(name=name, pool=str(root), size=GiB, subpath=parts)


def test_the_agent_refuses_to_create_around_or_inside_a_recorded_volume(tmp_path: Path) -> None:
    backend = HostPathBackend([RootConfig(str(tmp_path))])
    backend.create(_spec("pvc-aaaa", "pvc-aaaa", root=tmp_path))
    (tmp_path / "pvc-aaaa" / "precious").write_text("data")
    with pytest.raises(NestedVolume, match="pvc-aaaa"):
        backend.create(_spec("pvc-bbbb", "pvc-aaaa", "pvc-bbbb", root=tmp_path))
    with pytest.raises(NestedVolume, match="pvc-aaaa"):
        backend.create(_spec("pvc-cccc", "pvc-aaaa", root=tmp_path))
    assert sorted(os.listdir(tmp_path / "pvc-aaaa")) == ["precious"]
    assert registered_volumes(str(tmp_path)) == {"pvc-aaaa": ("pvc-aaaa",)}
    # The same volume again (a restart) is fine and keeps the data.
    backend.create(_spec("pvc-aaaa", "pvc-aaaa", root=tmp_path))
    assert (tmp_path / "pvc-aaaa" / "precious").read_text() == "data"


def test_the_agent_refuses_to_delete_a_directory_holding_another_volume(tmp_path: Path) -> None:
    """State an older version could leave behind: the outer volume's deletion waits."""
    backend = HostPathBackend([RootConfig(str(tmp_path))])
    backend.create(_spec("pvc-bbbb", "pvc-aaaa", "pvc-bbbb", root=tmp_path))
    (tmp_path / "pvc-aaaa" / "pvc-bbbb" / "precious").write_text("data")
    with pytest.raises(NestedVolume, match="pvc-bbbb lives inside"):
        backend.delete(_spec("pvc-aaaa", "pvc-aaaa", root=tmp_path))
    assert (tmp_path / "pvc-aaaa" / "pvc-bbbb" / "precious").read_text() == "data"
    assert backend.delete(_spec("pvc-bbbb", "pvc-aaaa", "pvc-bbbb", root=tmp_path))
    assert os.listdir(tmp_path) == []  # parents pruned, the registry gone with its last entry


def test_deleting_one_volume_leaves_a_sibling_and_its_record(tmp_path: Path) -> None:
    backend = HostPathBackend([RootConfig(str(tmp_path))])
    backend.create(_spec("pvc-a", "ns", "pvc-a", root=tmp_path))
    backend.create(_spec("pvc-b", "ns", "pvc-b", root=tmp_path))
    assert backend.delete(_spec("pvc-a", "ns", "pvc-a", root=tmp_path))
    assert sorted(os.listdir(tmp_path)) == [REGISTRY, "ns"]
    assert os.listdir(tmp_path / "ns") == ["pvc-b"]
    assert registered_volumes(str(tmp_path)) == {"pvc-b": ("ns", "pvc-b")}


def test_a_symlinked_registry_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    root = tmp_path / "root"
    outside.mkdir()
    root.mkdir()
    (root / REGISTRY).symlink_to(outside)
    backend = HostPathBackend([RootConfig(str(root))])
    with pytest.raises(InvalidInput):
        backend.create(_spec("pvc-a", "pvc-a", root=root))
    assert list(outside.iterdir()) == []


def test_a_failed_create_takes_its_new_record_back(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ns").symlink_to(tmp_path)  # the walk refuses to follow it
    backend = HostPathBackend([RootConfig(str(root))])
    with pytest.raises(InvalidInput):
        backend.create(_spec("pvc-a", "ns", "pvc-a", root=root))
    assert registered_volumes(str(root)) == {}
    assert sorted(os.listdir(root)) == ["ns"]


# --- the agent's re-check against its own cache ---------------------------------------------


class _Cache:
    def __init__(self, *objs: dict[str, object]) -> None:
        self.objs = list(objs)

    def items(self) -> list[dict[str, object]]:
        return self.objs


def _lv(name: str, pool: str, *parts: str, backend: str = "hostpath") -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"node": "n1", "backend": backend, "pool": pool, "size": 1, "subpath": list(parts)},
    }


def _agent(*objs: dict[str, object]) -> Agent:
    agent = Agent.__new__(Agent)  # only the volume cache is needed
    agent.volumes = _Cache(*objs)  # type: ignore[assignment]
    return agent


def test_the_agent_refuses_a_volume_nesting_with_one_in_its_cache() -> None:
    outer = _lv("pvc-a", "/srv", "pvc-a")
    inner = _lv("pvc-b", "/srv", "pvc-a", "pvc-b")
    with pytest.raises(NestedVolume, match="pvc-a"):
        _agent(outer, inner)._check_disjoint(inner)
    across_roots = _lv("pvc-c", "/srv/pvc-a", "x")
    with pytest.raises(NestedVolume, match="pvc-a"):
        _agent(outer, across_roots)._check_disjoint(across_roots)
    _agent(outer, _lv("pvc-d", "/srv", "pvc-d"))._check_disjoint(_lv("pvc-d", "/srv", "pvc-d"))
    assert _agent(outer, inner)._inside(outer) == "pvc-b"
    assert _agent(outer, inner)._inside(inner) is None
