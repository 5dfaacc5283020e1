"""``flotilla updates reboot-coordinator``: the Kubernetes adapter for :mod:`reboots`.

Two modes. The coordinator (one replica) lists Nodes, asks :func:`planning.plan` what to do, and
writes labels/annotations with merge patches. The node agent (one per node, ``--node-agent``)
marks ``reboot-needed``, and once allowed cordons, drains through the Eviction API (which
honours PodDisruptionBudgets; DaemonSet and mirror pods stay), runs the reboot command, and
after the reboot (a new boot id) reports back and uncordons when released. All API access goes
through :mod:`flotilla.core.kube`; every step is also posted as an Event on the Node.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flotilla.core.kube import (
    KubeError,
    KubeNotFoundError,
    evict_pod,
    get_raw,
    list_raw,
    list_raw_fields,
    patch_merge_raw,
    post_event,
)
from flotilla.updates.reboots import planning
from flotilla.updates.reboots.planning import CoordinatorConfig, NodeAction, NodeView, Step

logger = logging.getLogger(__name__)
COMPONENT = "flotilla-reboot-coordinator"


def _node_ref(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def _patch(client: Any, name: str, *, labels: dict[str, str | None] | None = None,
           annotations: dict[str, str | None] | None = None,
           unschedulable: bool | None = None) -> None:
    body: dict[str, Any] = {"metadata": {}}
    if labels:
        body["metadata"]["labels"] = labels
    if annotations:
        body["metadata"]["annotations"] = annotations
    if unschedulable is not None:
        body["spec"] = {"unschedulable": unschedulable or None}
    patch_merge_raw(client, "v1", "Node", name, body)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Coordinator:
    """Reconciles all Nodes (optionally those matching ``selector``) every ``interval`` s."""

    def __init__(self, client: Any, cfg: CoordinatorConfig, *, interval: float = 10.0,
                 selector: dict[str, str] | None = None) -> None:
        self.client = client
        self.cfg = cfg
        self.interval = interval
        self.selector = selector

    def reconcile(self, now: datetime | None = None) -> list[tuple[str, Step]]:
        """One pass: read nodes, plan, write; returns what it did."""
        nodes = [NodeView.from_node(n)
                 for n in list_raw(self.client, "v1", "Node", labels=self.selector)]
        steps = planning.plan(nodes, self.cfg, now or datetime.now(UTC))
        for name, step in steps:
            self._do(name, step)
        return steps

    def _do(self, name: str, step: Step) -> None:
        t = "true"
        if step is Step.PICK:
            resets: dict[str, str | None] = dict.fromkeys(self.cfg.before_annotations)
            _patch(self.client, name, labels={planning.BEFORE_REBOOT: t}, annotations=resets)
            msg = "picked for reboot; waiting for before-reboot checks"
        elif step is Step.ALLOW:
            _patch(self.client, name, labels={planning.BEFORE_REBOOT: None},
                   annotations={planning.REBOOT_OK: t})
            msg = "reboot allowed"
        elif step is Step.CHECK_AFTER:
            resets = dict.fromkeys(self.cfg.after_annotations)
            _patch(self.client, name, labels={planning.AFTER_REBOOT: t}, annotations=resets)
            msg = "rebooted; waiting for after-reboot checks"
        else:
            _patch(self.client, name, labels={planning.AFTER_REBOOT: None},
                   annotations={planning.REBOOT_OK: None})
            msg = "reboot cycle finished; node released"
        logger.info("node %s: %s", name, msg)
        post_event(self.client, _node_ref(name), f"Reboot{step.value.title().replace('-', '')}",
                   msg, component=COMPONENT)

    def run(self, stop: threading.Event) -> None:
        """Reconcile until ``stop``; API errors are logged and retried next pass."""
        while not stop.is_set():
            try:
                self.reconcile()
            except KubeError as e:
                logger.warning("reconcile failed (retrying): %s", e)
            stop.wait(self.interval)


@dataclass
class NodeAgentSettings:
    """The node side: which node, how to tell a reboot is needed and happened, how to reboot."""

    node: str
    reboot_command: list[str] = field(default_factory=lambda: ["systemctl", "reboot"])
    reboot_needed_file: Path | None = None
    """The update agent's ``reboot-needed`` marker; None: someone else annotates the node."""
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")
    drain_timeout: float = 600.0
    """Seconds to keep retrying evictions a budget refuses before giving up this round."""
    interval: float = 10.0


class NodeAgent:
    """One node's side of the reboot cycle."""

    def __init__(self, client: Any, settings: NodeAgentSettings) -> None:
        self.client = client
        self.s = settings
        self.reboots = 0
        self.refused = 0
        """Evictions a disruption budget refused (each retried)."""

    def _boot_id(self) -> str:
        try:
            return self.s.boot_id_file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def step(self) -> NodeAction:
        """Read the Node, decide, act once."""
        node = get_raw(self.client, "v1", "Node", self.s.node)
        if node is None:
            raise KubeNotFoundError(f"node {self.s.node} not found", 404)
        view = NodeView.from_node(node)
        local = self.s.reboot_needed_file is not None and self.s.reboot_needed_file.exists()
        action = planning.node_action(view, self._boot_id(), local)
        t = "true"
        name = self.s.node
        if action is NodeAction.MARK_NEEDED:
            _patch(self.client, name, labels={planning.REBOOT_NEEDED: t},
                   annotations={planning.REBOOT_NEEDED: t})
        elif action is NodeAction.REBOOT:
            self._reboot(view, bool((node.get("spec") or {}).get("unschedulable")))
        elif action is NodeAction.CAME_BACK:
            _patch(self.client, name, labels={planning.REBOOT_NEEDED: None},
                   annotations={planning.REBOOT_NEEDED: None, planning.REBOOT_IN_PROGRESS: None,
                                planning.BOOT_ID: None, planning.LAST_REBOOT: _now()})
            post_event(self.client, _node_ref(name), "Rebooted", "node is back after its reboot",
                       component=COMPONENT)
        elif action is NodeAction.UNCORDON:
            _patch(self.client, name, annotations={planning.MADE_UNSCHEDULABLE: None},
                   unschedulable=False)
            post_event(self.client, _node_ref(name), "Uncordoned", "released after reboot",
                       component=COMPONENT)
        return action

    def _reboot(self, view: NodeView, unschedulable: bool) -> None:
        name = self.s.node
        ann: dict[str, str | None] = {planning.REBOOT_IN_PROGRESS: "true",
                                      planning.BOOT_ID: self._boot_id()}
        if not unschedulable:
            ann[planning.MADE_UNSCHEDULABLE] = "true"  # only then is uncordoning ours to do
        _patch(self.client, name, annotations=ann, unschedulable=True if not unschedulable
               else None)
        if not self.drain():
            post_event(self.client, _node_ref(name), "DrainIncomplete",
                       "pods protected by disruption budgets remain; retrying", warning=True,
                       component=COMPONENT)
            return
        post_event(self.client, _node_ref(name), "Rebooting",
                   f"drained; running {shlex.join(self.s.reboot_command)}", component=COMPONENT)
        logger.info("node %s drained; rebooting", name)
        self.reboots += 1
        proc = subprocess.run(self.s.reboot_command, check=False, capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            logger.error("reboot command failed (%d): %s", proc.returncode, proc.stderr[-500:])

    def drain(self) -> bool:
        """Evict every evictable pod; True once none is left on the node."""
        deadline = time.monotonic() + self.s.drain_timeout
        while True:
            pods = [p for p in list_raw_fields(self.client, "v1", "Pod",
                                               {"spec.nodeName": self.s.node})
                    if planning.evictable(p)]
            if not pods:
                return True
            for p in pods:
                meta = p["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                if not evict_pod(self.client, meta["name"], meta["namespace"]):
                    self.refused += 1
                    logger.info("eviction of %s/%s refused by a disruption budget; retrying",
                                meta["namespace"], meta["name"])
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(1.0, max(0.1, self.s.interval / 5)))

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop``; API errors are logged and retried."""
        while not stop.is_set():
            try:
                self.step()
            except KubeError as e:
                logger.warning("node agent step failed (retrying): %s", e)
            stop.wait(self.s.interval)
