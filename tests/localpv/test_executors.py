"""The controller's executors against a fake API: error classes become the right next step.

The decisions are covered by tables (test_decisions.py); here each executor meets the answers the
API server gives (conflicts, missing objects, refused patches) as lightkube raises them, so the
mapping in ``core.kube`` and the ``except`` clauses are tested together.
"""

from __future__ import annotations

from typing import Any, cast

import httpx2
import pytest
from lightkube import ApiError, Client

from flotilla.localpv.controller.claims import Claims, Provision
from flotilla.localpv.controller.context import Caches, Context, ControllerSettings, Recorder
from flotilla.localpv.controller.views import ClaimView, ClassView, VolumeView
from flotilla.localpv.controller.volumes import Volumes
from flotilla.localpv.policies import parse_class_params
from flotilla.localpv.resources import claim_from, now_iso
from flotilla.localpv.runtime import Permanent, RetryLater
from tests.localpv.test_decisions import lv, pvc, sc


def api_error(status: int, reason: str) -> ApiError:
    request = httpx2.Request("PATCH", "https://api.example/x")
    response = httpx2.Response(
        status,
        request=request,
        json={"kind": "Status", "code": status, "reason": reason, "message": reason.lower()},
    )
    return ApiError(request=request, response=response)


class FakeCache:
    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {self.key_of(o): o for o in objs}

    @staticmethod
    def key_of(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objs.get(key)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objs.values())

    def put(self, obj: dict[str, Any]) -> None:
        self.objs[self.key_of(obj)] = obj


class FakeClient:
    """Answers every call of one verb with ``fail[verb]`` (an exception) or echoes the object."""

    def __init__(self, **fail: Exception) -> None:
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def _call(self, verb: str, detail: Any, result: Any = None) -> Any:
        self.calls.append((verb, detail))
        if verb in self.fail:
            raise self.fail[verb]
        return result

    def patch(self, res: Any, name: str, patch: Any, **_kw: Any) -> Any:
        return self._call(
            "patch",
            (res.__name__, name, patch),
            {"metadata": {"name": name, "resourceVersion": "8"}, "spec": {}},
        )

    def create(self, obj: Any, *_a: Any, **_kw: Any) -> Any:
        return self._call("create", obj, obj.to_dict() if hasattr(obj, "to_dict") else obj)

    def delete(self, res: Any, name: str, **_kw: Any) -> Any:
        return self._call("delete", (res.__name__, name))


class Events(Recorder):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def claim(
        self, pvc: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        self.seen.append((reason, message))

    def volume(
        self, lv: dict[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        self.seen.append((reason, message))

    def pv(self, pv: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.seen.append((reason, message))


def context(
    client: FakeClient,
    *,
    volumes: tuple[dict[str, Any], ...] = (),
    nodes: tuple[dict[str, Any], ...] = (),
    agents: tuple[dict[str, Any], ...] = (),
) -> tuple[Context, Events]:
    def fake(*objs: dict[str, Any]) -> Any:  # an Informer's cache, without the watch
        return FakeCache(*objs)

    caches = Caches(
        pvcs=fake(),
        pvs=fake(),
        classes=fake(),
        nodes=fake(*nodes),
        volumes=fake(*volumes),
        agents=fake(*agents),
        capacities=fake(),
    )
    events = Events()
    return Context(cast(Client, client), ControllerSettings(), caches, events), events


# --- binding -------------------------------------------------------------------------------------


def test_a_conflict_while_binding_asks_for_a_quick_retry() -> None:
    ctx, _ = context(FakeClient(patch=api_error(409, "Conflict")))
    with pytest.raises(RetryLater) as again:
        Claims(ctx)._bind(pvc(node="n1"), lv())
    assert again.value.after == 0.2
    assert not ctx.memory.was_bound("pvc-u1")


@pytest.mark.parametrize(("status", "reason"), [(404, "NotFound"), (422, "Invalid")])
def test_binding_the_api_refuses_is_left_to_the_pv_binder(status: int, reason: str) -> None:
    ctx, _ = context(FakeClient(patch=api_error(status, reason)))
    Claims(ctx)._bind(pvc(node="n1"), lv())
    assert ctx.memory.was_bound("pvc-u1")


def test_other_binding_failures_go_to_the_worker_loop() -> None:
    from flotilla.core.kube import KubeForbiddenError

    ctx, _ = context(FakeClient(patch=api_error(403, "Forbidden")))
    with pytest.raises(KubeForbiddenError):
        Claims(ctx)._bind(pvc(node="n1"), lv())


# --- rescheduling --------------------------------------------------------------------------------


def test_rescheduling_drops_the_node_with_a_tested_json_patch_and_says_why() -> None:
    client = FakeClient()
    ctx, events = context(client)
    Claims(ctx)._reschedule(pvc(node="n1"), "n1", "node n1 is full")
    verb, (_, name, patch) = client.calls[0]
    assert (verb, name) == ("patch", "data")
    assert patch[0] == {
        "op": "test",
        "value": "n1",
        "path": "/metadata/annotations/volume.kubernetes.io~1selected-node",
    }
    assert patch[1]["op"] == "remove"
    assert events.seen == [
        ("Rescheduling", "node n1 is full; asking the scheduler to choose another node")
    ]


@pytest.mark.parametrize(
    ("status", "reason"), [(404, "NotFound"), (409, "Conflict"), (422, "Invalid")]
)
def test_a_claim_that_moved_on_is_not_rescheduled_again(status: int, reason: str) -> None:
    ctx, events = context(FakeClient(patch=api_error(status, reason)))
    Claims(ctx)._reschedule(pvc(node="n1"), "n1", "node n1 is full")
    assert events.seen == []


# --- provisioning --------------------------------------------------------------------------------

NODE: dict[str, Any] = {
    "metadata": {"name": "n1", "uid": "n1-uid", "labels": {"kubernetes.io/hostname": "n1"}}
}


def agent(pools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A LocalNode that reported just now (a stale heartbeat would make the node ineligible)."""
    return {
        "metadata": {"name": "n1"},
        "status": {
            "heartbeat": now_iso(),
            "nodeUID": "n1-uid",
            "pools": pools
            or [{"backend": "hostpath", "name": "/a", "budget": 2**30, "free": 2**30}],
        },
    }


def _provision(client: FakeClient) -> tuple[Context, Events]:
    ctx, events = context(client, nodes=(NODE,), agents=(agent(),))
    claim = pvc(node="n1")
    step = Provision(claim_from(claim.obj), parse_class_params({}), ("ns_data_pvc-u1",), "n1")
    Claims(ctx)._provision(claim, sc(), step)
    return ctx, events


def test_a_placed_volume_is_written_and_cached_and_the_promise_released() -> None:
    ctx, _ = _provision(FakeClient())
    assert ctx.caches.volumes.get("pvc-u1") is not None
    assert ctx.memory.reserved == {}


def test_a_volume_that_already_exists_is_continued_by_the_watch() -> None:
    ctx, _ = _provision(FakeClient(create=api_error(409, "AlreadyExists")))
    assert ctx.memory.reserved == {}


def test_a_volume_the_api_refuses_is_permanent_and_releases_its_promise() -> None:
    with pytest.raises(Permanent, match="refused the LocalVolume for ns/data"):
        _provision(FakeClient(create=api_error(422, "Invalid")))


def test_a_node_without_room_sends_the_claim_back() -> None:
    full = agent([{"backend": "hostpath", "name": "/a", "budget": 10, "free": 10}])
    client = FakeClient()
    ctx, events = context(client, nodes=(NODE,), agents=(full,))
    claim = pvc(node="n1")
    step = Provision(claim_from(claim.obj), parse_class_params({}), ("x",), "n1")
    Claims(ctx)._provision(claim, sc(), step)
    assert [c[0] for c in client.calls] == ["patch"]  # the selected-node patch, no create
    assert events.seen[0][0] == "Rescheduling"


# --- volumes -------------------------------------------------------------------------------------


def test_a_deleted_volume_on_a_missing_node_waits_for_the_grace_period() -> None:
    gone = lv(deleting=True, gone_since=now_iso())
    ctx, _ = context(FakeClient(), volumes=(gone.obj,))
    with pytest.raises(RetryLater) as again:
        Volumes(ctx).reconcile("pvc-u1")
    assert 0.5 <= again.value.after <= 30.0


def test_a_refusal_is_said_once_per_claim_and_reason() -> None:
    ctx, events = context(FakeClient())
    claims = Claims(ctx)
    for _ in range(3):
        claims._refuse(pvc(node="n1"), "no")
    claims._refuse(pvc(node="n1"), "another reason")
    assert [m for _, m in events.seen] == ["no", "another reason"]
    ctx.memory.forget_claim("ns/data")
    claims._refuse(pvc(node="n1"), "another reason")
    assert len(events.seen) == 3


def test_views_read_what_decisions_need() -> None:
    assert ClassView.of({"metadata": {"name": "x"}}).reclaim_policy == "Delete"
    assert ClaimView.of({"metadata": {"name": "c", "namespace": "n"}}).capacity == "0"
    odd = VolumeView.of({"metadata": {"name": "v"}, "spec": {"size": "lots"}})
    assert (odd.size, odd.node_uid, odd.path) == (0, None, "?")
