"""The controller's decisions, one table per ``decide_…`` function: pure, no cluster, no mocks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flotilla.core.kube import KubeNotFoundError, KubeTooManyRequestsError
from flotilla.localpv.controller.claims import (
    NEEDS_WFFC,
    CreateVolume,
    Expand,
    Finish,
    FinishResize,
    GiveUp,
    Grow,
    Provision,
    Refuse,
    ResizeFailed,
    decide_claim,
    decide_expansion,
    decide_growth,
    decide_placement,
)
from flotilla.localpv.controller.pvs import DeletePV, DeleteVolume, decide_pv
from flotilla.localpv.controller.views import ClaimView, ClassView, Nothing, PVView, VolumeView
from flotilla.localpv.controller.volumes import (
    ClearNodeGone,
    DeleteRecord,
    Forget,
    HandleDeletion,
    ReportNodeLost,
    StampNodeGone,
    Wait,
    decide_release,
    decide_volume,
)
from flotilla.localpv.model import FINALIZER, Allocation, Backend, NodeReport, Pool
from flotilla.localpv.policies import Reschedule, parse_class_params
from flotilla.localpv.resources import claim_from
from flotilla.localpv.runtime import Permanent, RetryLater, WorkQueue, retry_delay

Mi = 2**20


def pvc(
    *,
    uid: str = "u1",
    size: str = "100Mi",
    node: str = "",
    volume: str = "",
    capacity: str | None = None,
    deleting: bool = False,
    **spec: Any,
) -> ClaimView:
    annotations = {"volume.kubernetes.io/selected-node": node} if node else {}
    meta: dict[str, Any] = {
        "namespace": "ns",
        "name": "data",
        "uid": uid,
        "annotations": annotations,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body: dict[str, Any] = {
        "metadata": meta,
        "spec": {
            "storageClassName": "local",
            "accessModes": ["ReadWriteOnce"],
            "volumeName": volume,
            "resources": {"requests": {"storage": size}} if size else {},
            **spec,
        },
    }
    if capacity is not None:
        body["status"] = {"capacity": {"storage": capacity}}
    return ClaimView.of(body)


def sc(
    *,
    provisioner: str = "localpv.flotilla.dev",
    binding: str = "WaitForFirstConsumer",
    **parameters: str,
) -> ClassView:
    return ClassView.of(
        {
            "metadata": {"name": "local"},
            "provisioner": provisioner,
            "volumeBindingMode": binding,
            "parameters": parameters,
            "reclaimPolicy": "Retain",
        }
    )


def lv(
    *,
    phase: str = "Ready",
    deleting: bool = False,
    size: int = 100 * Mi,
    capacity: int | None = None,
    backend: str = "hostpath",
    node_uid: str | None = "n1-uid",
    gone_since: str = "",
    loss_reported: bool = False,
    reclaim: str = "Delete",
    claim_uid: str = "u1",
    finalizer: bool = True,
    message: str = "",
) -> VolumeView:
    annotations = {}
    if gone_since:
        annotations["localpv.flotilla.dev/node-gone-since"] = gone_since
    if loss_reported:
        annotations["localpv.flotilla.dev/node-loss-reported"] = "true"
    meta: dict[str, Any] = {
        "name": "pvc-u1",
        "annotations": annotations,
        "finalizers": [FINALIZER] if finalizer else [],
        "resourceVersion": "7",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {
        "node": "n1",
        "backend": backend,
        "pool": "/a",
        "size": size,
        "reclaimPolicy": reclaim,
        "subpath": ["ns_data_pvc-u1"],
        "claim": {"namespace": "ns", "name": "data", "uid": claim_uid},
    }
    if node_uid is not None:
        spec["nodeUID"] = node_uid
    status: dict[str, Any] = {"phase": phase, "path": "/a/ns_data_pvc-u1"}
    if capacity is not None:
        status["capacity"] = capacity
    if message:
        status["message"] = message
    return VolumeView.of({"metadata": meta, "spec": spec, "status": status})


def node(
    *,
    exists: bool = True,
    uid: str = "n1-uid",
    alive: bool = True,
    labels: dict[str, str] | None = None,
    pools: tuple[Pool, ...] | None = None,
) -> NodeReport:
    if not exists:
        return NodeReport(name="n1", exists=False)
    return NodeReport(
        name="n1",
        exists=True,
        node_uid=uid,
        agent_uid=uid,
        agent_alive=alive,
        labels={"kubernetes.io/hostname": "n1"} if labels is None else labels,
        pools=(Pool("n1", Backend.HOSTPATH, "/a", 1024 * Mi, 1024 * Mi),)
        if pools is None
        else pools,
    )


# --- claims --------------------------------------------------------------------------------------

CLAIM_CASES: list[
    tuple[str, ClaimView | None, ClassView | None, VolumeView | None, bool, bool, object]
] = [
    # name, claim, class, volume, pv exists, may bind, expected action (type or value)
    ("claim gone", None, sc(), None, False, True, Nothing),
    ("claim being deleted", pvc(deleting=True, node="n1"), sc(), None, False, True, Nothing),
    ("class missing", pvc(node="n1"), None, None, False, True, Nothing),
    (
        "class of another provisioner",
        pvc(node="n1"),
        sc(provisioner="x.io/nfs"),
        None,
        False,
        True,
        Nothing,
    ),
    ("bound: maybe grow", pvc(volume="pvc-u1"), sc(), None, True, True, Expand()),
    (
        "Immediate binding",
        pvc(node="n1"),
        sc(binding="Immediate"),
        None,
        False,
        True,
        Refuse(NEEDS_WFFC),
    ),
    (
        "unknown parameter",
        pvc(node="n1"),
        sc(backnd="btrfs"),
        None,
        False,
        True,
        Refuse("unknown StorageClass parameters: backnd"),
    ),
    (
        "selector",
        pvc(node="n1", selector={"matchLabels": {"a": "b"}}),
        sc(),
        None,
        False,
        True,
        Refuse("spec.selector is not supported for dynamically provisioned volumes"),
    ),
    (
        "no storage asked",
        pvc(size="", node="n1"),
        sc(),
        None,
        False,
        True,
        Refuse("the claim requests no storage"),
    ),
    ("valid, no node yet", pvc(), sc(), None, False, True, Nothing),
    ("valid, node chosen", pvc(node="n1"), sc(), None, False, True, Provision),
    ("volume being deleted", pvc(node="n1"), sc(), lv(deleting=True), False, True, Nothing),
    (
        "agent failed",
        pvc(node="n1"),
        sc(),
        lv(phase="Failed", message="disk full"),
        False,
        True,
        GiveUp("n1", "node n1 could not create pvc-u1: disk full"),
    ),
    ("agent working", pvc(node="n1"), sc(), lv(phase="Pending"), False, True, Nothing),
    ("ready, no PV", pvc(node="n1"), sc(), lv(), False, True, Finish(create_pv=True, bind=True)),
    ("ready, PV, binder's job", pvc(node="n1"), sc(), lv(), True, False, Nothing),
    ("ready, PV, bind", pvc(node="n1"), sc(), lv(), True, True, Finish(create_pv=False, bind=True)),
    (
        "ready, no PV, binder's job",
        pvc(node="n1"),
        sc(),
        lv(),
        False,
        False,
        Finish(create_pv=True, bind=False),
    ),
]


@pytest.mark.parametrize(
    ("claim", "klass", "volume", "pv_exists", "may_bind", "expected"),
    [c[1:] for c in CLAIM_CASES],
    ids=[c[0] for c in CLAIM_CASES],
)
def test_decide_claim(
    claim: ClaimView | None,
    klass: ClassView | None,
    volume: VolumeView | None,
    pv_exists: bool,
    may_bind: bool,
    expected: object,
) -> None:
    action = decide_claim(claim, klass, volume, pv_exists=pv_exists, may_bind=may_bind)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected


def test_a_provision_carries_what_placement_needs() -> None:
    action = decide_claim(
        pvc(node="n1"), sc(pathPattern="{namespace}/{pv}"), None, pv_exists=False, may_bind=True
    )
    assert isinstance(action, Provision)
    assert (action.node, action.subpath, action.claim.size) == ("n1", ("ns", "pvc-u1"), 100 * Mi)
    devices = decide_claim(
        pvc(node="n1"), sc(backend="device"), None, pv_exists=False, may_bind=True
    )
    assert isinstance(devices, Provision) and devices.subpath == ("pvc-u1",)


def _placement(
    claim: ClaimView,
    report: NodeReport,
    *,
    allocations: list[Allocation] | None = None,
    source: VolumeView | None = None,
    params: dict[str, str] | None = None,
) -> object:
    params = params or {}
    return decide_placement(
        claim_from(claim.obj),
        parse_class_params(params),
        ("ns_data_pvc-u1",),
        sc(**params),
        report,
        allocations or [],
        source,
    )


PLACEMENT_CASES: list[tuple[str, NodeReport, list[Allocation], dict[str, str], object]] = [
    ("node gone", node(exists=False), [], {}, Reschedule("node n1 does not exist")),
    (
        "agent down",
        node(alive=False),
        [],
        {},
        Reschedule("the localpv agent on node n1 is not running"),
    ),
    (
        "no room left",
        node(),
        [Allocation("n1", Backend.HOSTPATH, "/a", 1000 * Mi)],
        {},
        Reschedule(
            "node n1 has not enough free hostpath capacity: need 104857600 bytes, largest "
            f"free {24 * Mi} (total {24 * Mi})"
        ),
    ),
    (
        "no affinity label",
        node(labels={}),
        [],
        {},
        Reschedule("node n1 has no label kubernetes.io/hostname for the PV's node affinity"),
    ),
    (
        "another backend only",
        node(),
        [],
        {"backend": "btrfs"},
        Reschedule("node n1 has no btrfs storage configured"),
    ),
    ("fits", node(), [Allocation("n1", Backend.HOSTPATH, "/a", 500 * Mi)], {}, CreateVolume),
]


@pytest.mark.parametrize(
    ("report", "allocations", "params", "expected"),
    [c[1:] for c in PLACEMENT_CASES],
    ids=[c[0] for c in PLACEMENT_CASES],
)
def test_decide_placement(
    report: NodeReport, allocations: list[Allocation], params: dict[str, str], expected: object
) -> None:
    action = _placement(pvc(node="n1"), report, allocations=allocations, params=params)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected


def test_a_placed_volume_records_node_pool_claim_and_promise() -> None:
    action = _placement(pvc(node="n1"), node(), params={"uid": "1000", "mode": "0750"})
    assert isinstance(action, CreateVolume)
    spec = action.body["spec"]
    assert (spec["node"], spec["nodeUID"], spec["pool"], spec["size"]) == (
        "n1",
        "n1-uid",
        "/a",
        100 * Mi,
    )
    assert spec["claim"] == {"namespace": "ns", "name": "data", "uid": "u1"}
    assert spec["owner"] == {"uid": 1000, "gid": None, "mode": 0o750}
    assert (spec["reclaimPolicy"], spec["nodeAffinityValue"]) == ("Retain", "n1")
    assert action.allocation == Allocation(
        "n1", Backend.HOSTPATH, "/a", 100 * Mi, ("ns_data_pvc-u1",), "pvc-u1"
    )


TWO_ROOTS = (
    Pool("n1", Backend.HOSTPATH, "/a", 1024 * Mi, 1024 * Mi),
    Pool("n1", Backend.HOSTPATH, "/b", 512 * Mi, 512 * Mi),
)
INSIDE = Allocation("n1", Backend.HOSTPATH, "/a", Mi, ("ns_data_pvc-u1", "pvc-x"), "pvc-x")
AROUND = Allocation("n1", Backend.HOSTPATH, "/a", Mi, ("ns_data_pvc-u1",), "pvc-y")
ROOT_AROUND = Allocation("n1", Backend.HOSTPATH, "/", Mi, ("a",), "pvc-z")


@pytest.mark.parametrize(
    ("pools", "taken", "expected"),
    [
        (
            None,
            [INSIDE],
            Reschedule(
                "/a/ns_data_pvc-u1 would contain or sit inside the directory of "
                "volume pvc-x on node n1"
            ),
        ),
        (
            None,
            [AROUND],
            Reschedule(
                "/a/ns_data_pvc-u1 would contain or sit inside the directory of "
                "volume pvc-y on node n1"
            ),
        ),
        (
            None,
            [ROOT_AROUND],
            Reschedule(
                "/a/ns_data_pvc-u1 would contain or sit inside the "
                "directory of volume pvc-z on node n1"
            ),
        ),
        (None, [dataclasses.replace(INSIDE, node="n2")], "/a"),
        (None, [dataclasses.replace(INSIDE, backend=Backend.DEVICE)], "/a"),
        (None, [dataclasses.replace(INSIDE, subpath=("ns_data_pvc-u10",))], "/a"),
        (TWO_ROOTS, [INSIDE], "/b"),
        (TWO_ROOTS, [dataclasses.replace(INSIDE, pool="/b")], "/a"),
    ],
    ids=[
        "ancestor",
        "same",
        "a-root-inside-a-volume",
        "other-node",
        "a-device",
        "prefix-of-a-name",
        "the-other-root",
        "the-first-root",
    ],
)
def test_a_volume_is_never_placed_around_or_inside_another(
    pools: tuple[Pool, ...] | None, taken: list[Allocation], expected: object
) -> None:
    action = _placement(pvc(node="n1"), node(pools=pools), allocations=taken)
    if isinstance(expected, str):
        assert isinstance(action, CreateVolume) and action.body["spec"]["pool"] == expected
    else:
        assert action == expected


def test_a_restarted_controller_may_place_the_same_volume_again() -> None:
    """Its own earlier reservation or record (same name) is not a clash."""
    again = Allocation("n1", Backend.HOSTPATH, "/a", 100 * Mi, ("ns_data_pvc-u1",), "pvc-u1")
    assert isinstance(_placement(pvc(node="n1"), node(), allocations=[again]), CreateVolume)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, Refuse("clone source origin is not a bound localpv volume")),
        (
            lv(phase="Pending", backend="btrfs"),
            Refuse("clone source origin is not a bound localpv volume"),
        ),
        (lv(backend="btrfs"), CreateVolume),
    ],
)
def test_clones_need_a_ready_source(source: VolumeView | None, expected: object) -> None:
    claim = pvc(node="n1", dataSource={"kind": "PersistentVolumeClaim", "name": "origin"})
    report = node(pools=(Pool("n1", Backend.BTRFS, "/a", 1024 * Mi, 1024 * Mi),))
    action = _placement(claim, report, source=source, params={"backend": "btrfs"})
    if isinstance(expected, type):
        assert isinstance(action, CreateVolume)
        assert action.body["spec"]["source"] == {
            "volume": "pvc-u1",
            "pool": "/a",
            "subpath": ["ns_data_pvc-u1"],
        }
    else:
        assert action == expected


EXPANSION_CASES: list[tuple[str, ClaimView, VolumeView | None, bool, object]] = [
    ("no volume", pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"), None, True, Nothing),
    ("no PV", pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"), lv(), False, Nothing),
    (
        "volume being deleted",
        pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"),
        lv(deleting=True),
        True,
        Nothing,
    ),
    ("same size", pvc(volume="pvc-u1", size="100Mi", capacity="100Mi"), lv(), True, Nothing),
    ("smaller", pvc(volume="pvc-u1", size="50Mi", capacity="100Mi"), lv(), True, Nothing),
    (
        "a whole device",
        pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"),
        lv(backend="device"),
        True,
        ResizeFailed("whole-device volumes cannot grow"),
    ),
    ("grow", pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"), lv(), True, Grow(200 * Mi)),
    (
        "agent not done",
        pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"),
        lv(size=200 * Mi, capacity=100 * Mi),
        True,
        Nothing,
    ),
    (
        "agent done",
        pvc(volume="pvc-u1", size="200Mi", capacity="100Mi"),
        lv(size=200 * Mi, capacity=200 * Mi),
        True,
        FinishResize(200 * Mi),
    ),
    ("unreadable", pvc(volume="pvc-u1", size="lots", capacity="100Mi"), lv(), True, Nothing),
]


@pytest.mark.parametrize(
    ("claim", "volume", "pv_exists", "expected"),
    [c[1:] for c in EXPANSION_CASES],
    ids=[c[0] for c in EXPANSION_CASES],
)
def test_decide_expansion(
    claim: ClaimView, volume: VolumeView | None, pv_exists: bool, expected: object
) -> None:
    action = decide_expansion(claim, volume, pv_exists=pv_exists)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected


@pytest.mark.parametrize(
    ("others", "size", "expected"),
    [
        ([], 1024 * Mi, Grow(1024 * Mi)),
        ([Allocation("n1", Backend.HOSTPATH, "/a", 924 * Mi)], 100 * Mi, Grow(100 * Mi)),
        (
            [Allocation("n1", Backend.HOSTPATH, "/a", 925 * Mi)],
            100 * Mi,
            ResizeFailed(
                f"pool /a on n1 has {99 * Mi} bytes for this volume, {100 * Mi} requested"
            ),
        ),
        ([Allocation("n2", Backend.HOSTPATH, "/a", 1024 * Mi)], 100 * Mi, Grow(100 * Mi)),
    ],
)
def test_decide_growth(others: list[Allocation], size: int, expected: object) -> None:
    assert decide_growth(lv(), size, node(), others) == expected


def test_growth_in_a_pool_the_node_no_longer_reports_is_refused() -> None:
    assert decide_growth(lv(), Mi, node(pools=()), []) == ResizeFailed(
        f"pool /a on n1 has 0 bytes for this volume, {Mi} requested"
    )


# --- volumes -------------------------------------------------------------------------------------

VOLUME_CASES: list[tuple[str, VolumeView, NodeReport, ClaimView | None, bool, object]] = [
    ("node missing", lv(), node(exists=False), pvc(), True, StampNodeGone()),
    ("node re-created", lv(), node(uid="other"), pvc(), True, StampNodeGone()),
    ("no recorded UID: any node fits", lv(node_uid=None), node(uid="any"), pvc(), True, Nothing()),
    ("node back", lv(gone_since="2026-01-01T00:00:00Z"), node(), pvc(), True, ClearNodeGone()),
    ("being deleted", lv(deleting=True), node(), pvc(), True, HandleDeletion()),
    ("orphan, Delete", lv(), node(), None, False, DeleteRecord(force=False)),
    ("orphan of a re-created claim", lv(), node(), pvc(uid="u2"), False, DeleteRecord(force=False)),
    (
        "orphan, Retain, never ready",
        lv(reclaim="Retain", phase="Pending"),
        node(),
        None,
        False,
        DeleteRecord(force=True),
    ),
    ("orphan, Retain, ready: kept", lv(reclaim="Retain"), node(), None, False, Nothing),
    ("claim gone, PV stays", lv(), node(), None, True, Nothing),
    (
        "node lost under a claim",
        lv(gone_since="2026-01-01T00:00:00Z"),
        node(exists=False),
        pvc(),
        True,
        ReportNodeLost(
            "node n1 that holds pvc-u1 is gone or was re-created; its data is not reachable"
        ),
    ),
    (
        "loss already reported",
        lv(gone_since="2026-01-01T00:00:00Z", loss_reported=True),
        node(exists=False),
        pvc(),
        True,
        Nothing(),
    ),
    ("healthy", lv(), node(), pvc(), True, Nothing()),
]


@pytest.mark.parametrize(
    ("volume", "report", "claim", "pv_exists", "expected"),
    [c[1:] for c in VOLUME_CASES],
    ids=[c[0] for c in VOLUME_CASES],
)
def test_decide_volume(
    volume: VolumeView,
    report: NodeReport,
    claim: ClaimView | None,
    pv_exists: bool,
    expected: object,
) -> None:
    action = decide_volume(volume, report, claim, pv_exists=pv_exists)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected


RELEASE_CASES: list[tuple[str, VolumeView, NodeReport, float | None, object]] = [
    ("not our finalizer", lv(deleting=True, finalizer=False), node(exists=False), 999.0, Nothing),
    ("node there: the agent deletes", lv(deleting=True), node(), None, Nothing),
    ("gone, not stamped yet", lv(deleting=True), node(exists=False), None, Wait(30.0)),
    ("gone 100 of 300 s", lv(deleting=True), node(exists=False), 100.0, Wait(30.0)),
    ("gone 295 of 300 s", lv(deleting=True), node(exists=False), 295.0, Wait(5.1)),
    ("gone 299.9 of 300 s", lv(deleting=True), node(exists=False), 299.9, Wait(0.5)),
    (
        "re-created, past grace",
        lv(deleting=True),
        node(uid="other"),
        301.0,
        Forget(
            "node n1 is gone (or was re-created) for longer than 300s: released the record of "
            "pvc-u1; its data at /a/ns_data_pvc-u1 was NOT deleted"
        ),
    ),
]


@pytest.mark.parametrize(
    ("volume", "report", "gone_for", "expected"),
    [c[1:] for c in RELEASE_CASES],
    ids=[c[0] for c in RELEASE_CASES],
)
def test_decide_release(
    volume: VolumeView, report: NodeReport, gone_for: float | None, expected: object
) -> None:
    action = decide_release(volume, report, gone_for, 300.0)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    elif isinstance(expected, Wait):
        assert isinstance(action, Wait) and action.after == pytest.approx(expected.after)
    else:
        assert action == expected


# --- persistent volumes --------------------------------------------------------------------------


def pv(
    *, phase: str = "Released", policy: str = "Delete", ours: bool = True, deleting: bool = False
) -> PVView:
    meta: dict[str, Any] = {
        "name": "pvc-u1",
        "annotations": {
            "pv.kubernetes.io/provisioned-by": "localpv.flotilla.dev" if ours else "x.io/nfs"
        },
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return PVView.of(
        {
            "metadata": meta,
            "spec": {"persistentVolumeReclaimPolicy": policy},
            "status": {"phase": phase},
        }
    )


PV_CASES: list[tuple[str, PVView | None, VolumeView | None, object]] = [
    ("gone", None, lv(), Nothing),
    ("being deleted", pv(deleting=True), lv(), Nothing),
    ("not ours", pv(ours=False), lv(), Nothing),
    ("still bound", pv(phase="Bound"), lv(), Nothing),
    ("Retain", pv(policy="Retain"), lv(), Nothing),
    ("released: data first", pv(), lv(), DeleteVolume()),
    ("data being deleted", pv(), lv(deleting=True), Nothing),
    ("data gone: the PV", pv(), None, DeletePV()),
]


@pytest.mark.parametrize(
    ("view", "volume", "expected"), [c[1:] for c in PV_CASES], ids=[c[0] for c in PV_CASES]
)
def test_decide_pv(view: PVView | None, volume: VolumeView | None, expected: object) -> None:
    action = decide_pv(view, volume)
    if isinstance(expected, type):
        assert isinstance(action, expected)
    else:
        assert action == expected


# --- retries -------------------------------------------------------------------------------------

RETRY_CASES: list[tuple[str, Exception, int, float | None]] = [
    ("retry later says when", RetryLater(0.2, "conflict"), 0, 0.2),
    ("permanent: never", Permanent("refused"), 0, None),
    ("first failure", RuntimeError("boom"), 1, 1.0),
    ("third failure", KubeNotFoundError("x", 404), 3, 4.0),
    ("backoff is capped", RuntimeError("boom"), 20, 30.0),
    ("throttled: the server's wait", KubeTooManyRequestsError("x", 429, retry_after=7.0), 1, 7.0),
    ("throttled without a wait: backoff", KubeTooManyRequestsError("x", 429), 2, 2.0),
]


@pytest.mark.parametrize(
    ("exc", "failures", "expected"), [c[1:] for c in RETRY_CASES], ids=[c[0] for c in RETRY_CASES]
)
def test_retry_delay(exc: Exception, failures: int, expected: float | None) -> None:
    assert retry_delay(exc, failures) == expected


def test_typed_keys_of_different_kinds_never_collide_in_the_queue() -> None:
    from flotilla.localpv.controller.loop import ClaimKey, PVKey, VolumeKey

    queue: WorkQueue[ClaimKey | VolumeKey | PVKey] = WorkQueue()
    for key in (VolumeKey("pvc-1"), PVKey("pvc-1"), ClaimKey("ns/pvc-1"), PVKey("pvc-1")):
        queue.add(key)
    got = {queue.get(0.1) for _ in range(3)}
    assert got == {VolumeKey("pvc-1"), PVKey("pvc-1"), ClaimKey("ns/pvc-1")}
    # Delayed keys due at the same instant are not compared with each other.
    queue.add_after(VolumeKey("a"), 0.0)
    queue.add_after(PVKey("a"), 0.0)
    assert {queue.get(0.1), queue.get(0.1)} == {VolumeKey("a"), PVKey("a")}
