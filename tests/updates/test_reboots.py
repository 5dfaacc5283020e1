"""Reboot coordination decisions: pure functions, no cluster."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from flotilla.updates.policies import parse_window
from flotilla.updates.reboots import planning as reboots
from flotilla.updates.reboots.planning import (
    CoordinatorConfig,
    NodeAction,
    NodeView,
    Step,
    evictable,
    may_start,
    node_action,
    plan,
)

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # a Thursday


def _needing(n: int) -> list[NodeView]:
    return [NodeView(f"n{i}", reboot_needed=True) for i in range(n)]


def test_picks_up_to_max_in_name_order() -> None:
    steps = plan(_needing(5), CoordinatorConfig(max_rebooting=2), NOW)
    assert steps == [("n0", Step.ALLOW), ("n1", Step.ALLOW)]
    busy = [replace(v, ok=True) if v.name in ("n0", "n1") else v for v in _needing(5)]
    assert plan(busy, CoordinatorConfig(max_rebooting=2), NOW) == []


def test_paused_nodes_and_cordoned_nodes_count_right() -> None:
    nodes = [NodeView("a", reboot_needed=True, paused=True), NodeView("b", cordoned_by_us=True),
             NodeView("c", reboot_needed=True)]
    assert plan(nodes, CoordinatorConfig(max_rebooting=1), NOW) == []
    assert plan(nodes, CoordinatorConfig(max_rebooting=2), NOW) == [("c", Step.ALLOW)]


def test_windows_gate_only_new_reboots() -> None:
    cfg = CoordinatorConfig(max_rebooting=3, windows=(parse_window("Sat 02:00-06:00"),))
    assert may_start(_needing(1), cfg, NOW) == (0, "outside the reboot windows")
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert plan(_needing(1), cfg, saturday) == [("n0", Step.ALLOW)]
    back = NodeView("x", ok=True)  # came back: released even outside the window
    assert plan([back], cfg, NOW) == [("x", Step.RELEASE)]
    two = replace(cfg, windows=(*cfg.windows, parse_window("Thu 02:00-04:00")))
    assert plan(_needing(1), two, NOW) == [("n0", Step.ALLOW)]


def test_delay_between_reboots() -> None:
    cfg = CoordinatorConfig(max_rebooting=3, delay=timedelta(minutes=10))
    recent = NodeView("done", last_reboot=NOW - timedelta(minutes=5))
    assert plan([recent, *_needing(3)], cfg, NOW) == []
    old = replace(recent, last_reboot=NOW - timedelta(minutes=11))
    assert plan([old, *_needing(3)], cfg, NOW) == [("n0", Step.ALLOW)]


def test_before_and_after_checks() -> None:
    cfg = CoordinatorConfig(max_rebooting=1, before_annotations=("a/ok",),
                            after_annotations=("a/healthy",))
    assert plan(_needing(1), cfg, NOW) == [("n0", Step.PICK)]
    picked = NodeView("n0", reboot_needed=True, before=True)
    assert plan([picked], cfg, NOW) == []
    passed = replace(picked, annotations={"a/ok": "true"})
    assert plan([passed], cfg, NOW) == [("n0", Step.ALLOW)]
    back = NodeView("n0", ok=True)
    assert plan([back], cfg, NOW) == [("n0", Step.CHECK_AFTER)]
    checking = NodeView("n0", ok=True, after=True)
    assert plan([checking], cfg, NOW) == []
    assert plan([replace(checking, annotations={"a/healthy": "true"})], cfg, NOW) == [
        ("n0", Step.RELEASE)]


def test_node_reads_from_api_dict() -> None:
    node = {"metadata": {"name": "w1", "labels": {reboots.REBOOT_NEEDED: "true"},
                         "annotations": {reboots.REBOOT_OK: "true",
                                         reboots.LAST_REBOOT: "2026-11-26T02:00:00Z",
                                         reboots.REBOOT_PAUSED: "TRUE"}}}
    v = NodeView.from_node(node)
    assert (v.name, v.reboot_needed, v.ok, v.paused, v.busy) == ("w1", True, True, True, True)
    assert v.last_reboot == datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    assert NodeView.from_node({"metadata": {"name": "x", "annotations": {
        reboots.LAST_REBOOT: "garbage"}}}).last_reboot is None


def test_node_agent_decisions() -> None:
    assert node_action(NodeView("n"), "b1", True) is NodeAction.MARK_NEEDED
    assert node_action(NodeView("n", reboot_needed=True), "b1", True) is NodeAction.NOTHING
    allowed = NodeView("n", reboot_needed=True, ok=True)
    assert node_action(allowed, "b1", True) is NodeAction.REBOOT
    draining = replace(allowed, in_progress=True, annotations={reboots.BOOT_ID: "b1"})
    assert node_action(draining, "b1", True) is NodeAction.REBOOT
    assert node_action(draining, "b2", False) is NodeAction.CAME_BACK
    released = NodeView("n", cordoned_by_us=True)
    assert node_action(released, "b2", False) is NodeAction.UNCORDON
    waiting = NodeView("n", ok=True, cordoned_by_us=True)
    assert node_action(waiting, "b2", False) is NodeAction.NOTHING


def test_drain_skips_daemonsets_mirrors_and_finished_pods() -> None:
    assert evictable({"metadata": {"ownerReferences": [{"kind": "ReplicaSet"}]}})
    assert not evictable({"metadata": {"ownerReferences": [{"kind": "DaemonSet"}]}})
    assert not evictable({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}})
    assert not evictable({"metadata": {}, "status": {"phase": "Succeeded"}})


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.randoms(use_true_random=False))
def test_whole_cycle_never_exceeds_max_and_finishes(n: int, limit: int, rnd: object) -> None:
    """Run coordinator passes and node agents in random order over a fake cluster."""
    import random

    assert isinstance(rnd, random.Random)
    cfg = CoordinatorConfig(max_rebooting=limit)
    nodes = {f"n{i}": NodeView(f"n{i}", reboot_needed=True) for i in range(n)}
    boot = dict.fromkeys(nodes, "b0")
    cordoned: set[str] = set()
    rebooted: dict[str, int] = dict.fromkeys(nodes, 0)
    for i in range(60 * n + 200):
        settle = i >= 60 * n  # then: alternate passes and every agent, until all is done
        if (settle and i % 2 == 0) or (not settle and rnd.random() < 0.3):
            for name, step in plan(nodes.values(), cfg, NOW):
                v = nodes[name]
                if step is Step.ALLOW:
                    nodes[name] = replace(v, ok=True, before=False)
                elif step is Step.RELEASE:
                    nodes[name] = replace(v, ok=False, after=False)
        else:
            for name in [rnd.choice(sorted(nodes))] if not settle else sorted(nodes):
                _agent_step(name, nodes, boot, cordoned, rebooted)
        assert len(cordoned) <= limit
        assert sum(1 for v in nodes.values() if v.busy) <= limit
    assert all(c == 1 for c in rebooted.values())
    assert not cordoned and not any(v.busy or v.reboot_needed for v in nodes.values())


def _agent_step(name: str, nodes: dict[str, NodeView], boot: dict[str, str], cordoned: set[str],
                rebooted: dict[str, int]) -> None:
    v = nodes[name]
    act = node_action(v, boot[name], False)
    if act is NodeAction.REBOOT:
        cordoned.add(name)
        nodes[name] = replace(v, in_progress=True, cordoned_by_us=True,
                              annotations={reboots.BOOT_ID: boot[name]})
        boot[name] += "x"
        rebooted[name] += 1
    elif act is NodeAction.CAME_BACK:
        nodes[name] = replace(v, in_progress=False, reboot_needed=False)
    elif act is NodeAction.UNCORDON:
        cordoned.discard(name)
        nodes[name] = replace(v, cordoned_by_us=False)
