"""Which files changed → what to do: the cheapest correct action per resource. Pure.

Live update when every changed file of an image is covered by a ``sync`` (and none by
``fall_back_on``); otherwise a rebuild; a manifest or Tiltfile change re-applies or reloads.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from flotilla.dev.plan.context import ContextFilter
from flotilla.dev.plan.model import (
    FallBackOn,
    ImageTarget,
    LocalResource,
    Resource,
    ResourceKind,
    RestartContainer,
    Run,
    Sync,
)


class ActionKind(enum.StrEnum):
    NONE = "none"
    LIVE_UPDATE = "live_update"
    REBUILD = "rebuild"
    REAPPLY = "reapply"
    RERUN = "rerun"  # a local resource's cmd
    RELOAD = "reload"  # the Tiltfile itself changed


@dataclass(frozen=True)
class Copy:
    local: str
    remote: str


@dataclass
class Action:
    """What to do for one resource, and why (shown in the UI and logs)."""

    kind: ActionKind
    reason: str = ""
    copies: list[Copy] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    restart: bool = False
    images: list[str] = field(default_factory=list)  # refs to rebuild / live-update


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def remote_path(path: str, sync: Sync) -> str:
    """Where ``path`` (under ``sync.local_path``) lands in the container."""
    rel = os.path.relpath(path, sync.local_path)
    return sync.remote_path if rel == "." else os.path.join(sync.remote_path, rel)


def image_action(
    image: ImageTarget,
    changed: Iterable[str],
    *,
    exists: set[str],
    flt: ContextFilter | None = None,
    deployed: bool = True,
) -> Action:
    """The action for one image given changed absolute paths (``exists``: still on disk).

    ``flt`` says which paths belong to the image (ignores applied); ``deployed`` is False before
    the first successful deploy, when only a build makes sense.
    """
    changed = set(changed)
    if image.dockerfile and image.dockerfile in changed:  # outside ``only`` too, as in Tilt
        return Action(ActionKind.REBUILD, "Dockerfile changed", images=[image.ref])
    relevant = sorted(
        p
        for p in changed
        if any(_under(p, root) for root in image.watched) and (flt is None or flt.includes(p))
    )
    if not relevant:
        return Action(ActionKind.NONE)
    if not deployed:
        return Action(ActionKind.REBUILD, "not running yet", images=[image.ref])
    steps = image.live_update
    syncs = [s for s in steps if isinstance(s, Sync)]
    if not syncs:
        return Action(
            ActionKind.REBUILD, f"{_short(relevant)} changed; no live_update", images=[image.ref]
        )
    for step in steps:
        if isinstance(step, FallBackOn):
            hit = [p for p in relevant if any(_under(p, f) for f in step.paths)]
            if hit:
                return Action(
                    ActionKind.REBUILD, f"{_short(hit)} is under fall_back_on", images=[image.ref]
                )
    action = Action(ActionKind.LIVE_UPDATE, f"sync {_short(relevant)}", images=[image.ref])
    for path in relevant:
        sync = next((s for s in reversed(syncs) if _under(path, s.local_path)), None)
        if sync is None:
            return Action(
                ActionKind.REBUILD, f"{_short([path])} matches no sync()", images=[image.ref]
            )
        target = remote_path(path, sync)
        if path in exists:
            action.copies.append(Copy(path, target))
        else:
            action.deletes.append(target)
    for step in steps:
        if isinstance(step, Run) and (
            not step.trigger or any(_under(p, t) for p in relevant for t in step.trigger)
        ):
            action.runs.append(step)
    action.restart = any(isinstance(s, RestartContainer) for s in steps) or bool(
        image.restart_entrypoint
    )
    return action


def local_action(lr: LocalResource, changed: Iterable[str], flt: ContextFilter | None) -> Action:
    hits = [
        p
        for p in changed
        if any(_under(p, d) for d in lr.deps) and (flt is None or flt.includes(p))
    ]
    if not hits:
        return Action(ActionKind.NONE)
    return Action(ActionKind.RERUN, f"{_short(hits)} changed")


def _bases(image: ImageTarget, images: dict[str, ImageTarget]) -> list[ImageTarget]:
    """The declared images ``image`` is built from, transitively."""
    out: list[ImageTarget] = []
    todo = list(image.image_deps)
    while todo:
        ref = todo.pop()
        if ref in images and images[ref] not in out:
            out.append(images[ref])
            todo += images[ref].image_deps
    return out


def resource_action(
    resource: Resource,
    images: dict[str, ImageTarget],
    changed: set[str],
    *,
    exists: set[str],
    filters: dict[str, ContextFilter],
    deployed: bool,
) -> Action:
    """Combine the per-image decisions of a resource: any rebuild wins over live updates."""
    if resource.kind == ResourceKind.LOCAL and resource.local is not None:
        return local_action(resource.local, changed, filters.get(resource.name))
    actions = []
    for ref in resource.images:
        image = images[ref]
        actions.append(
            image_action(image, changed, exists=exists, flt=filters.get(ref), deployed=deployed)
        )
        for base in _bases(image, images):
            # A file of an image this one is built from: the dependent's live update decides,
            # as in Tilt (a sync may copy from the base's context); a rebuild rebuilds both.
            view = dataclasses.replace(
                image, kind=base.kind, context=base.context, deps=base.deps,
                dockerfile=base.dockerfile,
            )  # fmt: skip
            actions.append(
                image_action(view, changed, exists=exists, flt=filters.get(base.ref),
                             deployed=deployed)
            )  # fmt: skip
    rebuild = [a for a in actions if a.kind == ActionKind.REBUILD]
    if rebuild:
        return Action(
            ActionKind.REBUILD,
            "; ".join(a.reason for a in rebuild),
            images=[r for a in rebuild for r in a.images],
        )
    live = [a for a in actions if a.kind == ActionKind.LIVE_UPDATE]
    if live:
        merged = Action(ActionKind.LIVE_UPDATE, "; ".join(a.reason for a in live))
        for a in live:
            merged.copies += a.copies
            merged.deletes += a.deletes
            merged.runs += a.runs
            merged.restart = merged.restart or a.restart
            merged.images += a.images
        return merged
    return Action(ActionKind.NONE)


def plan(
    resources: list[Resource],
    images: dict[str, ImageTarget],
    changed: set[str],
    *,
    exists: set[str],
    filters: dict[str, ContextFilter],
    deployed: set[str],
    config_files: set[str],
) -> dict[str, Action]:
    """Actions for every resource a change concerns; a config-file change reloads everything."""
    reload = sorted(changed & config_files)
    if reload:
        return {"*": Action(ActionKind.RELOAD, f"{_short(reload)} changed")}
    out: dict[str, Action] = {}
    for r in resources:
        a = resource_action(
            r, images, changed, exists=exists, filters=filters, deployed=r.name in deployed
        )
        if a.kind != ActionKind.NONE:
            out[r.name] = a
    return out


def _short(paths: list[str]) -> str:
    names = [os.path.basename(p) for p in paths[:3]]
    more = f" (+{len(paths) - 3})" if len(paths) > 3 else ""
    return ", ".join(names) + more
