"""The pure decisions: parsing, naming, placement, capacity, release. No I/O, no mocks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla.localpv.model import (
    Allocation,
    Backend,
    Claim,
    ClassParams,
    NodeReport,
    Pool,
    VolumeMode,
)
from flotilla.localpv.policies import (
    InvalidInput,
    Place,
    Release,
    Reschedule,
    available,
    check_claim,
    choose_pool,
    node_capacity,
    parse_class_params,
    parse_quantity,
    place,
    release_decision,
    render_subpath,
    validate_pattern,
    validate_subpath,
)

GiB = 2**30
MiB = 2**20


def claim(name: str = "data", size: int = GiB, **kw: object) -> Claim:
    return Claim(namespace="ns", name=name, uid="1234-abcd", size=size, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Gi", GiB),
        ("100Mi", 100 * MiB),
        ("1G", 10**9),
        ("1.5Gi", 3 * GiB // 2),
        ("1e3", 1000),
        ("0.5", 1),
        ("512", 512),
        ("1k", 1000),
        ("2Ti", 2 * 2**40),
    ],
)
def test_quantities_parse_to_bytes_rounded_up(text: str, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "-1Gi", "1Xi", "1e", "0x10"])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_quantity(text)


def test_class_parameters_default_to_hostpath() -> None:
    assert parse_class_params({}) == ClassParams()


def test_class_parameters_are_validated() -> None:
    params = parse_class_params(
        {
            "backend": "btrfs",
            "uid": "1000",
            "gid": "100",
            "mode": "0770",
            "pathPattern": "{namespace}/{pvc}-{pv}",
            "nodeAffinityKey": "topology.example.com/node",
        }
    )
    assert (params.backend, params.uid, params.gid, params.mode) == (
        Backend.BTRFS,
        1000,
        100,
        0o770,
    )
    for bad in (
        {"backend": "zfs"},
        {"mode": "4777"},
        {"mode": "rwx"},
        {"uid": "-1"},
        {"fsType": "btrfs"},
        {"backend": "lvm"},
        {"backend": "lvm", "volumeGroup": "a/b"},
        {"nodeAffinityKey": "bad key"},
        {"bakend": "hostpath"},
    ):
        with pytest.raises(InvalidInput):
            parse_class_params(bad)


@pytest.mark.parametrize(
    "pattern",
    [
        "../{pv}",
        "/abs/{pv}",
        "{namespace}",
        "{pvc}_{nope}_{pv}",
        "a//{pv}",
        "./{pv}",
        "a/b/c/d/{pv}",
        "{pv}\\x",
        "",
    ],
)
def test_escaping_or_ambiguous_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput):
        validate_pattern(pattern)


def test_default_naming_names_namespace_claim_and_volume() -> None:
    assert render_subpath("{namespace}_{pvc}_{pv}", claim()) == ("ns_data_pvc-1234-abcd",)
    nested = render_subpath("{namespace}/{pvc}/{pv}", claim())
    assert nested == ("ns", "data", "pvc-1234-abcd")


@pytest.mark.parametrize(
    "subdir", ["..", "../x", "/etc", "a/b", ".hidden", "", "x" * 300, "ü", "a b"]
)
def test_hostile_subdir_annotations_are_refused(subdir: str) -> None:
    hostile = claim(annotations={"localpv.flotilla.dev/subdir": subdir})
    with pytest.raises(InvalidInput):
        render_subpath("{subdir}/{pv}", hostile)


def test_a_long_claim_name_is_refused_not_truncated() -> None:
    with pytest.raises(InvalidInput, match="255 bytes"):
        render_subpath("{namespace}_{pvc}_{pv}", claim(name="n" * 250))


@given(st.text(max_size=300), st.text(max_size=80))
def test_rendered_paths_never_escape(subdir: str, name: str) -> None:
    hostile = Claim(
        namespace="ns",
        name=name or "x",
        uid="u",
        size=1,
        annotations={"localpv.flotilla.dev/subdir": subdir},
    )
    try:
        parts = render_subpath("{subdir}/{pvc}_{pv}", hostile)
    except InvalidInput:
        return
    for part in parts:
        assert part not in (".", "..")
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", part)
        assert len(part.encode()) <= 255


def test_subpaths_from_objects_are_rechecked() -> None:
    assert validate_subpath(["a", "b"]) == ("a", "b")
    for bad in ([], ["..", "x"], ["a/b"], ["a"] * 5):
        with pytest.raises(InvalidInput):
            validate_subpath(bad)


def test_claims_the_backend_cannot_honour_are_refused() -> None:
    check_claim(claim(), ClassParams())
    for bad, params in (
        (claim(access_modes=("ReadWriteMany",)), ClassParams()),
        (claim(has_selector=True), ClassParams()),
        (claim(size=0), ClassParams()),
        (claim(volume_mode=VolumeMode.BLOCK), ClassParams()),
        (claim(data_source_pvc="src"), ClassParams()),
    ):
        with pytest.raises(InvalidInput):
            check_claim(bad, params)
    check_claim(claim(volume_mode=VolumeMode.BLOCK), ClassParams(backend=Backend.DEVICE))
    check_claim(claim(data_source_pvc="src"), ClassParams(backend=Backend.BTRFS))


def pool(
    name: str,
    budget: int,
    free: int | None = None,
    backend: Backend = Backend.HOSTPATH,
    node: str = "n1",
) -> Pool:
    return Pool(node, backend, name, budget, budget if free is None else free)


def test_room_is_the_smaller_of_free_bytes_and_unpromised_budget() -> None:
    p = pool("/a", 10 * GiB, free=8 * GiB)
    assert available(p, []) == 8 * GiB
    promised = [Allocation("n1", Backend.HOSTPATH, "/a", 5 * GiB)]
    assert available(p, promised) == 5 * GiB
    elsewhere = [Allocation("n2", Backend.HOSTPATH, "/a", 5 * GiB)]
    assert available(p, elsewhere) == 8 * GiB
    over = [Allocation("n1", Backend.HOSTPATH, "/a", 20 * GiB)]
    assert available(p, over) == 0


def test_directories_go_to_the_roomiest_root_devices_to_the_smallest_fit() -> None:
    roots = [pool("/a", 10 * GiB), pool("/b", 20 * GiB)]
    assert choose_pool(roots, [], Backend.HOSTPATH, GiB) == roots[1]
    assert choose_pool(roots, [], Backend.HOSTPATH, 30 * GiB) is None
    disks = [
        pool("/dev/big", 100 * GiB, backend=Backend.DEVICE),
        pool("/dev/small", 2 * GiB, backend=Backend.DEVICE),
    ]
    assert choose_pool(disks, [], Backend.DEVICE, GiB) == disks[1]
    taken = [Allocation("n1", Backend.DEVICE, "/dev/small", GiB)]
    assert choose_pool(disks, taken, Backend.DEVICE, GiB) == disks[0]
    assert node_capacity(disks, taken, Backend.DEVICE) == (100 * GiB, 100 * GiB)


def node(**kw: object) -> NodeReport:
    base: dict[str, object] = {
        "name": "n1",
        "exists": True,
        "node_uid": "u1",
        "agent_uid": "u1",
        "agent_alive": True,
        "pools": (pool("/a", 10 * GiB),),
    }
    base.update(kw)
    return NodeReport(**base)  # type: ignore[arg-type]


def test_placement_on_the_selected_node_or_a_reason_to_reschedule() -> None:
    assert place(claim(), ClassParams(), node(), []) == Place("n1", "/a")
    cases = {
        "does not exist": node(exists=False),
        "not running": node(agent_alive=False),
        "re-created": node(agent_uid="old"),
        "no btrfs": node(),
        "not enough free": node(pools=(pool("/a", MiB),)),
    }
    for reason, report in cases.items():
        params = ClassParams(backend=Backend.BTRFS) if reason == "no btrfs" else ClassParams()
        decision = place(claim(), params, report, [])
        assert isinstance(decision, Reschedule) and reason in decision.reason, decision


def test_clones_stay_with_their_source() -> None:
    report = node(pools=(pool("/b", 10 * GiB, backend=Backend.BTRFS),))
    params = ClassParams(backend=Backend.BTRFS)
    ok = place(claim(), params, report, [], source_pool="/b", source_node="n1")
    assert ok == Place("n1", "/b")
    away = place(claim(), params, report, [], source_pool="/b", source_node="n2")
    assert isinstance(away, Reschedule) and "n2" in away.reason


def test_lvm_uses_only_the_class_volume_group() -> None:
    report = node(
        pools=(
            pool("vg0", 10 * GiB, backend=Backend.LVM),
            pool("vg1", 50 * GiB, backend=Backend.LVM),
        )
    )
    params = ClassParams(backend=Backend.LVM, volume_group="vg0")
    assert place(claim(), params, report, []) == Place("n1", "vg0")


def test_release_waits_for_the_grace_period_and_never_on_a_new_machine() -> None:
    here = node()
    assert release_decision(here, "u1", None, 60) is Release.AGENT
    gone = node(exists=False)
    assert release_decision(gone, "u1", None, 60) is Release.WAIT
    assert release_decision(gone, "u1", 10, 60) is Release.WAIT
    assert release_decision(gone, "u1", 61, 60) is Release.FORGET
    recreated = node(node_uid="u2")
    assert release_decision(recreated, "u1", 5, 60) is Release.WAIT
    assert release_decision(recreated, "u1", 61, 60) is Release.FORGET
