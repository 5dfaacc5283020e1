"""SIGKILL the controller, or a node agent, at random points while 50 claims bind and are deleted.

The docs promise that names are deterministic, so a process killed anywhere neither duplicates nor
orphans work. Afterwards: every claim Bound, exactly one PV per claim, no LocalVolume without a PV,
no directory without a LocalVolume; after deletion, nothing left on disk or in the API.

The claims carry ``selected-node`` themselves (what kube-scheduler would write for a consumer), so
the test measures the provisioner, not the scheduler's retry schedule. The randomness is seeded:
``LOCALPV_KILL_SEED=N`` replays a run; the seed is printed.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass

from flotilla.core.kube import to_dict, wait_until
from flotilla.localpv.model import SELECTED_NODE
from flotilla.localpv.resources import LocalVolume
from tests.localpv.conftest import wait_capacity
from tests.localpv.kit import Proc, Stack, create, delete, pvc, storage_class, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLAIMS = 50
KILLS = 3
NODES = ("node-1", "node-2")


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("LOCALPV_KILL_SEED") or random.SystemRandom().randrange(2**32))
    print(f"kill test seed: {seed} (replay with LOCALPV_KILL_SEED={seed})")
    return random.Random(seed)


@pytest.fixture
def plain_class(kube: Client, localpv_stack: Stack) -> Iterator[str]:
    name = f"lpv-kill-{uuid.uuid4().hex[:6]}"
    create(kube, StorageClass, storage_class(name))
    wait_capacity(kube, name, localpv_stack)
    yield name
    delete(kube, StorageClass, name)


def _claims(kube: Client, namespace: str) -> list[dict[str, Any]]:
    return [to_dict(c) for c in kube.list(PersistentVolumeClaim, namespace=namespace)]


def _pvs(kube: Client, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in (to_dict(x) for x in kube.list(PersistentVolume))
        if (p["spec"].get("claimRef") or {}).get("namespace") == namespace
    ]


def _volumes(kube: Client, namespace: str) -> list[dict[str, Any]]:
    return [
        v
        for v in (to_dict(x) for x in kube.list(LocalVolume))
        if (v["spec"].get("claim") or {}).get("namespace") == namespace
    ]


def _directories(stack: Stack, namespace: str) -> set[str]:
    """Volume directories of this test's claims (default pattern ``{namespace}_{pvc}_{pv}``)."""
    return {str(p) for root in stack.roots.values() for p in root.glob(f"{namespace}_*")}


def _kill_while(
    proc: Proc,
    work: Callable[[], None],
    done: Callable[[], bool],
    rng: random.Random,
    started: Callable[[], bool],
) -> int:
    """Run ``work`` in a thread and SIGKILL ``proc`` KILLS times at random moments meanwhile.

    The first kill comes within half a second, while ``work`` is still creating or deleting, so
    every run kills at least once; the next comes only once the restarted process is up.
    """
    worker = threading.Thread(target=work, name="kill-test-work")
    worker.start()
    kills = 0
    try:
        time.sleep(rng.uniform(0.05, 0.5))
        while kills < KILLS and (kills == 0 or not done()):
            proc.kill(signal.SIGKILL)
            kills += 1
            time.sleep(rng.uniform(0.0, 0.5))
            proc.start()
            wait_until(
                lambda: started() or None,
                timeout=30,
                interval=0.1,
                what=f"{proc.log.name} restarted",
            )
            time.sleep(rng.uniform(0.0, 1.0))
    finally:
        worker.join()
        if proc.popen is None or proc.popen.poll() is not None:
            proc.start()
    return kills


def _create_claims(kube: Client, namespace: str, sc: str, rng: random.Random) -> None:
    for i in range(CLAIMS):
        body = pvc(
            f"c{i:02d}", namespace, sc, "1Mi", annotations={SELECTED_NODE: rng.choice(NODES)}
        )
        create(kube, PersistentVolumeClaim, body)


def _all_bound(kube: Client, namespace: str) -> bool:
    claims = _claims(kube, namespace)
    return len(claims) == CLAIMS and all(
        c.get("status", {}).get("phase") == "Bound" for c in claims
    )


def _check_provisioned(kube: Client, namespace: str, stack: Stack) -> None:
    claims = _claims(kube, namespace)
    assert [c["metadata"]["name"] for c in claims if c["status"].get("phase") != "Bound"] == []
    pvs = _pvs(kube, namespace)
    per_claim: dict[str, int] = {}
    for pv in pvs:
        uid = pv["spec"]["claimRef"]["uid"]
        per_claim[uid] = per_claim.get(uid, 0) + 1
    assert sorted(per_claim) == sorted(c["metadata"]["uid"] for c in claims)
    assert [u for u, n in per_claim.items() if n > 1] == [], "duplicate PVs"
    pv_names = {p["metadata"]["name"] for p in pvs}
    volumes = _volumes(kube, namespace)
    assert [v["metadata"]["name"] for v in volumes if v["metadata"]["name"] not in pv_names] == []
    paths = {v["status"]["path"] for v in volumes}
    assert len(volumes) == CLAIMS
    assert _directories(stack, namespace) == paths, "orphaned or missing directories"


def _delete_claims(kube: Client, namespace: str) -> None:
    for claim in _claims(kube, namespace):
        delete(kube, PersistentVolumeClaim, claim["metadata"]["name"], namespace)


def _all_gone(kube: Client, namespace: str, stack: Stack) -> bool:
    return not (
        _pvs(kube, namespace) or _volumes(kube, namespace) or _directories(stack, namespace)
    )


def _run(
    kube: Client,
    namespace: str,
    sc: str,
    stack: Stack,
    rng: random.Random,
    victim: Proc,
    started: Callable[[], bool],
) -> None:
    kills = _kill_while(
        victim,
        lambda: _create_claims(kube, namespace, sc, rng),
        lambda: _all_bound(kube, namespace),
        rng,
        started,
    )
    wait_for(lambda: _all_bound(kube, namespace), f"{CLAIMS} claims Bound", 60, stack)
    _check_provisioned(kube, namespace, stack)
    kills += _kill_while(
        victim,
        lambda: _delete_claims(kube, namespace),
        lambda: _all_gone(kube, namespace, stack),
        rng,
        started,
    )
    wait_for(
        lambda: _all_gone(kube, namespace, stack), "no PV, LocalVolume or directory left", 60, stack
    )
    print(f"{kills} SIGKILLs of {victim.log.name}")
    assert kills >= 2


def _log_count(proc: Proc, text: str) -> int:
    try:
        return proc.log.read_text(errors="replace").count(text)
    except OSError:
        return 0


def test_killing_the_controller_neither_duplicates_nor_orphans(
    kube: Client,
    namespace: str,
    plain_class: str,
    localpv_stack: Stack,
    rng: random.Random,
) -> None:
    proc = localpv_stack.controller
    _run(
        kube,
        namespace,
        plain_class,
        localpv_stack,
        rng,
        proc,
        started=lambda: proc.popen is not None and proc.popen.poll() is None,
    )


def test_killing_an_agent_neither_duplicates_nor_orphans(
    kube: Client,
    namespace: str,
    plain_class: str,
    localpv_stack: Stack,
    rng: random.Random,
) -> None:
    """Each restart waits for the agent to run again: an agent silent for longer than the
    controller's --agent-timeout has its claims sent back to a scheduler this test does not use."""
    victim = rng.choice(NODES)
    proc = localpv_stack.agents[victim]
    print(f"killing the agent of {victim}")
    marker = f"localpv agent for {victim} running"
    runs = [_log_count(proc, marker)]

    def started() -> bool:
        count = _log_count(proc, marker)
        if count > runs[-1]:
            runs.append(count)
            return True
        return False

    _run(kube, namespace, plain_class, localpv_stack, rng, proc, started)
