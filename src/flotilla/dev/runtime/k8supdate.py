"""Updates of Kubernetes resources: build + inject + apply + wait, or a live update in place."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from flotilla.dev.plan import manifests
from flotilla.dev.plan.decide import Action, ActionKind, Copy
from flotilla.dev.plan.model import InitialSync, Sync
from flotilla.dev.plan.render import container_overrides
from flotilla.dev.runtime.state import ResourceState

if TYPE_CHECKING:
    from flotilla.dev.runtime.engine import Engine


class RolloutError(RuntimeError):
    """A workload failed to become ready; the message says why (pod status or timeout)."""


def build_images(engine: Engine, st: ResourceState, refs: list[str]) -> dict[str, str]:
    """Build (or find cached) every image of a resource; declared ref → ref for the cluster."""
    assert engine.builder is not None
    out = {}
    for ref in refs:
        st.status = "building"
        with engine._slots:
            built = engine.builder.build(engine.images[ref], lambda line: engine._log(st, line))
        engine._log(st, f"{ref}: {'cached' if built.cached else 'built'} {built.cluster_ref} "
                        f"in {built.seconds:.2f}s")
        out[ref] = built.cluster_ref
    return out


def full_update(engine: Engine, st: ResourceState) -> None:
    """Build images, inject their refs, server-side apply, wait for readiness."""
    r = st.resource
    refs = build_images(engine, st, r.images)
    images = list(engine.images.values())
    env_refs = {i.ref for i in images if i.match_in_env_vars}
    objs = [manifests.inject_images(engine.kube.prepare(o, r.name), refs, env_vars=env_refs,
                                    commands=container_overrides(images)) for o in r.objects]
    st.status = "deploying"
    engine._log(st, f"applying {', '.join(manifests.object_id(o) for o in objs)}")
    engine.kube.apply(objs)
    st.applied = objs
    st.deployed_refs = refs
    if r.pod_readiness != "ignore":
        wait_ready(engine, st)
    if any(isinstance(s, InitialSync) for ref in r.images for s in engine.images[ref].live_update):
        initial_sync(engine, st)


def wait_ready(engine: Engine, st: ResourceState) -> None:
    """Poll the workloads until ready; a failing pod or the readiness timeout raises."""
    workloads = [o for o in st.applied if manifests.is_workload(o)]
    deadline = time.monotonic() + engine.settings_timeout()
    pending = list(workloads)
    while pending:
        if engine.stop_event.is_set():
            raise RolloutError("stopped")
        still = []
        for obj in pending:
            ready, failure = engine.kube.status(obj, st.resource.extra_pod_selectors)
            if failure:
                raise RolloutError(failure)
            if not ready:
                still.append(obj)
        pending = still
        if pending and time.monotonic() > deadline:
            names = ", ".join(manifests.object_id(o) for o in pending)
            raise RolloutError(f"not ready after {engine.settings_timeout():.0f}s: {names}")
        if pending:
            engine.stop_event.wait(0.3)
    engine._log(st, "ready")


def live_update(engine: Engine, st: ResourceState, action: Action) -> None:
    """Copy changed files into every running container of the image, run steps, restart.

    No running container (pod not started, crashed, replaced) falls back to a full update.
    """
    st.status = "updating"
    copies = [(c.local, c.remote) for c in action.copies]
    targets = []
    for ref in action.images:
        cluster_ref = st.deployed_refs.get(ref, ref)
        targets += engine.kube.containers(st.applied, cluster_ref)
    if not targets:
        engine._log(st, "no running container to live-update: full update instead")
        full_update(engine, st)
        return
    for c in targets:
        engine._log(st, f"live update {c.pod}/{c.name}: {len(copies)} file(s) copied, "
                        f"{len(action.deletes)} deleted, {len(action.runs)} run step(s)"
                        f"{', restart' if action.restart else ''}")
        out = engine.kube.live_update(c, action, copies)
        for line in out.splitlines():
            engine._log(st, line)


def initial_sync(engine: Engine, st: ResourceState) -> None:
    """``initial_sync()``: copy every file under the image's sync paths once after a deploy."""
    for ref in st.resource.images:
        image = engine.images[ref]
        flt = engine._filters.get(ref)
        copies = []
        for step in image.live_update:
            if not isinstance(step, Sync):
                continue
            for d, _, names in os.walk(step.local_path):
                for n in names:
                    p = os.path.join(d, n)
                    if flt is None or flt.includes(p):
                        rel = os.path.relpath(p, step.local_path)
                        copies.append(Copy(p, os.path.join(step.remote_path, rel)))
        if copies:
            live_update(engine, st, Action(ActionKind.LIVE_UPDATE, "initial_sync", copies=copies,
                                           images=[ref]))
