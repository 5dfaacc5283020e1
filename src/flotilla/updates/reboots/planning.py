"""Reboot coordination decisions (FLUO-class), as plain functions over node views. No I/O.

Labels and annotations live under ``flotilla.dev/``. The node agent marks ``reboot-needed``; the
coordinator picks up to ``max_rebooting`` nodes inside a reboot window (labelling them
``before-reboot`` while before-reboot checks run, then annotating ``reboot-ok``); the node agent
cordons, drains, reboots and reports back; the coordinator runs after-reboot checks
(``after-reboot`` label) and removes ``reboot-ok``; the node agent uncordons. A node counts
against the maximum from the moment it is picked until it is schedulable again, so at most
``max_rebooting`` nodes are ever cordoned by us.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flotilla.updates.models import Window
from flotilla.updates.policies import in_any_window

PREFIX = "flotilla.dev/"
REBOOT_NEEDED = PREFIX + "reboot-needed"
"""Label and annotation, ``"true"``: this node has staged an update and wants a reboot."""
REBOOT_PAUSED = PREFIX + "reboot-paused"
"""Annotation ``"true"``: an operator holds this node back."""
BEFORE_REBOOT = PREFIX + "before-reboot"
"""Label ``"true"``: picked; waiting for the before-reboot check annotations."""
AFTER_REBOOT = PREFIX + "after-reboot"
"""Label ``"true"``: rebooted; waiting for the after-reboot check annotations."""
REBOOT_OK = PREFIX + "reboot-ok"
"""Annotation ``"true"``: the coordinator allows this node to drain and reboot."""
REBOOT_IN_PROGRESS = PREFIX + "reboot-in-progress"
"""Annotation ``"true"``: the node agent is draining or rebooting."""
MADE_UNSCHEDULABLE = PREFIX + "agent-made-unschedulable"
"""Annotation ``"true"``: we cordoned the node (so we, and only we, uncordon it)."""
BOOT_ID = PREFIX + "boot-id"
"""Annotation: the boot id before the reboot; a different one afterwards means it happened."""
LAST_REBOOT = PREFIX + "last-reboot"
"""Annotation: when the node last came back from a coordinated reboot (RFC 3339, UTC)."""


def _true(d: Mapping[str, str], key: str) -> bool:
    return d.get(key, "").lower() == "true"


@dataclass(frozen=True)
class NodeView:
    """What the coordinator reads from one Node."""

    name: str
    reboot_needed: bool = False
    paused: bool = False
    before: bool = False
    ok: bool = False
    in_progress: bool = False
    after: bool = False
    cordoned_by_us: bool = False
    annotations: Mapping[str, str] = field(default_factory=dict)
    last_reboot: datetime | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> NodeView:
        """Read a Node as a plain dict (as the API returns it)."""
        meta = node.get("metadata") or {}
        ann: dict[str, str] = dict(meta.get("annotations") or {})
        labels: dict[str, str] = dict(meta.get("labels") or {})
        last = None
        if ann.get(LAST_REBOOT):
            try:
                last = datetime.fromisoformat(ann[LAST_REBOOT].replace("Z", "+00:00"))
            except ValueError:
                last = None
        return cls(
            name=str(meta.get("name", "")),
            reboot_needed=_true(ann, REBOOT_NEEDED) or _true(labels, REBOOT_NEEDED),
            paused=_true(ann, REBOOT_PAUSED),
            before=_true(labels, BEFORE_REBOOT),
            ok=_true(ann, REBOOT_OK),
            in_progress=_true(ann, REBOOT_IN_PROGRESS),
            after=_true(labels, AFTER_REBOOT),
            cordoned_by_us=_true(ann, MADE_UNSCHEDULABLE),
            annotations=ann,
            last_reboot=last,
        )

    @property
    def busy(self) -> bool:
        """Counts against the maximum: picked, rebooting, checking, or still cordoned by us."""
        return self.before or self.ok or self.in_progress or self.after or self.cordoned_by_us

    def checks_pass(self, keys: Iterable[str]) -> bool:
        """Every named annotation is ``"true"`` (none configured: passes)."""
        return all(_true(self.annotations, k) for k in keys)


@dataclass(frozen=True)
class CoordinatorConfig:
    """How the coordinator paces reboots."""

    max_rebooting: int = 1
    """Nodes allowed in the reboot cycle at once (FLUO is fixed at 1)."""
    windows: tuple[Window, ...] = ()
    """New reboots start only inside one of these weekly windows; empty means any time."""
    timezone: str = "UTC"
    delay: timedelta = timedelta(0)
    """Wait this long after a node came back before starting the next reboot."""
    before_annotations: tuple[str, ...] = ()
    """Annotations that must be ``"true"`` on a picked node before it may reboot."""
    after_annotations: tuple[str, ...] = ()
    """Annotations that must be ``"true"`` after the reboot before the node is released."""


class Step(enum.StrEnum):
    """What the coordinator does to one node."""

    PICK = "pick"
    """Label ``before-reboot`` (and reset the before-check annotations)."""
    ALLOW = "allow"
    """Annotate ``reboot-ok``, drop ``before-reboot``."""
    CHECK_AFTER = "check-after"
    """Label ``after-reboot`` (and reset the after-check annotations)."""
    RELEASE = "release"
    """Drop ``reboot-ok`` and ``after-reboot``: the node agent uncordons."""


def may_start(
    nodes: Iterable[NodeView], cfg: CoordinatorConfig, now: datetime
) -> tuple[int, str]:
    """How many new reboots may start now, and why not when zero."""
    nodes = tuple(nodes)
    if not in_any_window(now, cfg.windows, cfg.timezone):
        return 0, "outside the reboot windows"
    last = max((n.last_reboot for n in nodes if n.last_reboot is not None), default=None)
    if cfg.delay and last is not None and now - last < cfg.delay:
        return 0, f"waiting {cfg.delay} after the last reboot"
    free = cfg.max_rebooting - sum(1 for n in nodes if n.busy)
    if free <= 0:
        return 0, f"{cfg.max_rebooting} node(s) already in the reboot cycle"
    if cfg.delay:
        free = 1  # a delay between reboots means one at a time
    return free, ""


def plan(
    nodes: Iterable[NodeView], cfg: CoordinatorConfig, now: datetime
) -> list[tuple[str, Step]]:
    """The steps for one pass of the coordinator, in order."""
    nodes = sorted(nodes, key=lambda n: n.name)
    steps: list[tuple[str, Step]] = []
    for n in nodes:
        if n.after and n.checks_pass(cfg.after_annotations):
            steps.append((n.name, Step.RELEASE))
        elif n.ok and not n.after and not n.in_progress and not n.reboot_needed:
            steps.append((n.name, Step.CHECK_AFTER if cfg.after_annotations else Step.RELEASE))
        elif n.before and not n.ok and n.checks_pass(cfg.before_annotations):
            steps.append((n.name, Step.ALLOW))
    free, _ = may_start(nodes, cfg, now)
    candidates = [n for n in nodes if n.reboot_needed and not n.paused and not n.busy]
    for n in candidates[: max(free, 0)]:
        steps.append((n.name, Step.PICK if cfg.before_annotations else Step.ALLOW))
    return steps


class NodeAction(enum.StrEnum):
    """What the node agent does next."""

    NOTHING = "nothing"
    MARK_NEEDED = "mark-needed"
    REBOOT = "reboot"
    """Mark in progress (with the boot id), cordon, drain, run the reboot command."""
    CAME_BACK = "came-back"
    """The boot id changed: clear reboot-needed and in-progress, stamp last-reboot."""
    UNCORDON = "uncordon"


def node_action(view: NodeView, boot_id: str, needs_reboot_locally: bool) -> NodeAction:
    """The node agent's decision from its Node and its own boot id and update state."""
    if view.in_progress:
        if view.annotations.get(BOOT_ID, "") != boot_id:
            return NodeAction.CAME_BACK
        return NodeAction.REBOOT  # interrupted before the reboot: finish draining, reboot
    if view.ok and view.reboot_needed:
        return NodeAction.REBOOT
    if not view.ok and not view.before and view.cordoned_by_us:
        return NodeAction.UNCORDON
    if needs_reboot_locally and not view.reboot_needed and not view.ok:
        return NodeAction.MARK_NEEDED
    return NodeAction.NOTHING


def evictable(pod: Mapping[str, Any]) -> bool:
    """Pods a drain evicts: not DaemonSet-owned, not mirror pods, not finished."""
    meta = pod.get("metadata") or {}
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed")
