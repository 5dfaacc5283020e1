"""Failures on the real control plane: a controller killed mid-way, nodes deleted or re-created."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Event, Node, PersistentVolume, PersistentVolumeClaim, Pod

from flotilla.core.kube import to_dict
from flotilla.localpv.resources import LocalVolume
from flotilla.testenv.components import node_document
from tests.localpv.conftest import wait_capacity
from tests.localpv.kit import (
    Stack,
    bound_pvc,
    create,
    delete,
    delete_pod_and_claim,
    get,
    pod,
    pvc,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _volumes_for(kube: Client, namespace: str) -> list[dict[str, object]]:
    return [
        lv
        for lv in (to_dict(o) for o in kube.list(LocalVolume))
        if lv["spec"]["claim"]["namespace"] == namespace
    ]


def test_controller_killed_while_provisioning_leaves_no_duplicate(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    claims = [f"c{i}" for i in range(8)]
    for name in claims:
        create(kube, PersistentVolumeClaim, pvc(name, namespace, hostpath_class, "10Mi"))
        create(kube, Pod, pod(f"p-{name}", namespace, name))
    time.sleep(0.4)
    localpv_stack.restart_controller(signal.SIGKILL)
    paths = set()
    for name in claims:
        claim = bound_pvc(kube, name, namespace, localpv_stack, timeout=60)
        pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
        paths.add(pv["spec"]["local"]["path"])
    assert len(paths) == len(claims)
    assert len(_volumes_for(kube, namespace)) == len(claims)
    on_disk = [p for root in localpv_stack.roots.values() for p in root.glob(f"{namespace}_*")]
    assert sorted(map(str, on_disk)) == sorted(paths)


def test_controller_killed_before_the_pv_leaves_no_orphan(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    localpv_stack: Stack,
) -> None:
    agents = [a.popen for a in localpv_stack.agents.values() if a.popen is not None]
    for agent in agents:
        agent.send_signal(signal.SIGSTOP)
    try:
        create(kube, PersistentVolumeClaim, pvc("orphan", namespace, hostpath_class, "10Mi"))
        create(kube, Pod, pod("p-orphan", namespace, "orphan"))
        wait_for(lambda: _volumes_for(kube, namespace), "LocalVolume recorded", 30, localpv_stack)
        localpv_stack.controller.kill(signal.SIGKILL)
        delete_pod_and_claim(kube, namespace, "p-orphan", "orphan")
        wait_for(
            lambda: get(kube, PersistentVolumeClaim, "orphan", namespace) is None, "claim gone", 30
        )
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGCONT)
        localpv_stack.controller.start()
    wait_for(
        lambda: not _volumes_for(kube, namespace), "orphan LocalVolume removed", 30, localpv_stack
    )
    assert not [p for root in localpv_stack.roots.values() for p in root.glob(f"{namespace}_*")]
    assert not [
        pv
        for pv in (to_dict(o) for o in kube.list(PersistentVolume))
        if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace
    ]


@pytest.fixture
def extra_node(kube: Client, localpv_stack: Stack, hostpath_class: str) -> Iterator[str]:
    """A kwok node of our own (deleting a shared node would hurt other tests) with an agent."""
    name = f"lpv-{uuid.uuid4().hex[:6]}"
    root = localpv_stack.workdir / name / "hostpath"
    root.mkdir(parents=True)
    localpv_stack.roots[name] = root
    create(kube, Node, node_document(name))
    localpv_stack.start_agent(name, "--hostpath-root", f"{root}=1Gi")
    wait_capacity(kube, hostpath_class, localpv_stack, nodes=(name,))
    yield name
    localpv_stack.agents.pop(name).kill()
    delete(kube, Node, name)


def _released_events(kube: Client, volume: str) -> list[str]:
    return [
        e.get("message", "")
        for e in (
            to_dict(o)
            for o in kube.list(Event, namespace="default", fields={"involvedObject.name": volume})
        )
        if e.get("reason") == "ReleasedNodeGone"
    ]


def _bind_on(kube: Client, namespace: str, sc: str, node: str, stack: Stack) -> tuple[str, Path]:
    create(kube, PersistentVolumeClaim, pvc("data", namespace, sc, "10Mi"))
    create(kube, Pod, pod("app", namespace, "data", node=node))
    claim = bound_pvc(kube, "data", namespace, stack)
    pv = to_dict(kube.get(PersistentVolume, claim["spec"]["volumeName"]))
    path = Path(pv["spec"]["local"]["path"])
    (path / "file").write_text("still here")
    return pv["metadata"]["name"], path


def test_deleted_node_releases_after_grace_without_claiming_deletion(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    extra_node: str,
    localpv_stack: Stack,
) -> None:
    volume, path = _bind_on(kube, namespace, hostpath_class, extra_node, localpv_stack)
    delete(kube, Pod, "app", namespace)
    wait_for(lambda: get(kube, Pod, "app", namespace) is None, "pod gone")
    localpv_stack.agents[extra_node].kill()
    delete(kube, Node, extra_node)
    started = time.monotonic()
    delete(kube, PersistentVolumeClaim, "data", namespace)
    wait_for(lambda: get(kube, LocalVolume, volume) is None, "record released", 40, localpv_stack)
    assert time.monotonic() - started >= 3.5, "released only after the 4 s grace period"
    # Events are written by the controller's background thread, so one may land just after.
    messages = wait_for(lambda: _released_events(kube, volume), "ReleasedNodeGone event", 10)
    assert "NOT deleted" in messages[0]
    assert (path / "file").read_text() == "still here"
    wait_for(lambda: get(kube, PersistentVolume, volume) is None, "PV removed", 30, localpv_stack)


def test_a_node_recreated_under_the_same_name_is_not_trusted_with_old_volumes(
    kube: Client,
    namespace: str,
    hostpath_class: str,
    extra_node: str,
    localpv_stack: Stack,
) -> None:
    volume, path = _bind_on(kube, namespace, hostpath_class, extra_node, localpv_stack)
    delete(kube, Pod, "app", namespace)
    wait_for(lambda: get(kube, Pod, "app", namespace) is None, "pod gone")
    delete(kube, Node, extra_node)
    wait_for(lambda: get(kube, Node, extra_node) is None, "node gone")
    create(kube, Node, node_document(extra_node))  # same name, new UID: another machine
    delete(kube, PersistentVolumeClaim, "data", namespace)
    wait_for(lambda: get(kube, LocalVolume, volume) is None, "record released", 40, localpv_stack)
    messages = wait_for(lambda: _released_events(kube, volume), "ReleasedNodeGone event", 10)
    assert "NOT deleted" in messages[0]
    assert (path / "file").read_text() == "still here", "the agent did not delete it"
    # The re-created node serves new claims once its agent re-registered.
    create(kube, PersistentVolumeClaim, pvc("fresh", namespace, hostpath_class, "10Mi"))
    create(kube, Pod, pod("fresh", namespace, "fresh", node=extra_node))
    bound_pvc(kube, "fresh", namespace, localpv_stack, timeout=40)


@pytest.mark.slow
def test_only_one_controller_leads_and_a_released_lease_passes_on(
    kube: Client,
    namespace: str,
) -> None:
    from lightkube.resources.coordination_v1 import Lease

    from flotilla.core.kube import warm_up_decoders
    from flotilla.localpv.controller.leader import LeaderElector

    warm_up_decoders(Lease)
    stop = threading.Event()
    first = LeaderElector(kube, namespace=namespace, name="lpv-test", duration=15, renew=0.5)
    second = LeaderElector(kube, namespace=namespace, name="lpv-test", duration=15, renew=0.5)
    second.identity = "standby"
    won: list[bool] = []
    try:
        assert first.acquire(stop)
        contender = threading.Thread(target=lambda: won.append(second.acquire(stop)), daemon=True)
        contender.start()
        time.sleep(1.5)
        assert not won, "the standby must wait while the leader renews"
        first.release()
        contender.join(10)
        assert won == [True]
    finally:
        stop.set()
        second.release()
        time.sleep(0.6)  # let the renewal threads see the stop before the client closes
