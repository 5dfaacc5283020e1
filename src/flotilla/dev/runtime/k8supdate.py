"""Updates of Kubernetes resources: build + inject + apply + wait, or a live update in place."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from flotilla.dev.plan import kinds, manifests
from flotilla.dev.plan.decide import Action, ActionKind, Copy
from flotilla.dev.plan.model import InitialSync, Sync
from flotilla.dev.plan.render import container_overrides
from flotilla.dev.runtime.kubedeploy import LiveUpdateSyncError
from flotilla.dev.runtime.state import ResourceState

if TYPE_CHECKING:
    from flotilla.dev.runtime.session import Session


class RolloutError(RuntimeError):
    """A workload failed to become ready; the message says why (pod status or timeout)."""


def build_images(session: Session, st: ResourceState, refs: list[str]) -> dict[str, str]:
    """Build (or find cached) every image of a resource; declared ref → ref for the cluster."""
    assert session.builder is not None
    out = {}
    for ref in refs:
        st.status = "building"
        with session.build_slots:
            built = session.builder.build(
                session.images[ref], lambda line: session.log_to(st, line), session.images
            )
        session.log_to(
            st,
            f"{ref}: {'cached' if built.cached else 'built'} {built.cluster_ref} "
            f"in {built.seconds:.2f}s",
        )
        out[ref] = built.cluster_ref
    return out


def full_update(session: Session, st: ResourceState) -> None:
    """Build images, inject their refs, server-side apply, wait for readiness."""
    r = st.resource
    refs = build_images(session, st, r.images)
    images = list(session.images.values())
    env_refs = {i.ref for i in images if i.match_in_env_vars}
    objs = [
        manifests.inject_images(
            session.kube.prepare(o, r.name),
            refs,
            env_vars=env_refs,
            commands=container_overrides(images),
        )
        if r.image_json_paths is None
        else kinds.inject(session.kube.prepare(o, r.name), r.image_json_paths, refs)
        for o in r.objects
    ]
    st.status = "deploying"
    session.log_to(st, f"applying {', '.join(manifests.object_id(o) for o in objs)}")
    session.kube.apply(objs)
    st.applied = objs
    st.deployed_refs = refs
    if r.pod_readiness != "ignore":
        wait_ready(session, st)
    if any(isinstance(s, InitialSync) for ref in r.images for s in session.images[ref].live_update):
        initial_sync(session, st)


def wait_ready(session: Session, st: ResourceState) -> None:
    """Poll the workloads until ready; a failing pod or the readiness timeout raises."""
    workloads = [o for o in st.applied if manifests.is_workload(o)]
    deadline = time.monotonic() + session.settings_timeout()
    pending = list(workloads)
    while pending:
        if session.stop_event.is_set():
            raise RolloutError("stopped")
        still = []
        for obj in pending:
            ready, failure = session.kube.status(obj, st.resource.extra_pod_selectors)
            if failure:
                raise RolloutError(failure)
            if not ready:
                still.append(obj)
        pending = still
        if pending and time.monotonic() > deadline:
            names = ", ".join(manifests.object_id(o) for o in pending)
            raise RolloutError(f"not ready after {session.settings_timeout():.0f}s: {names}")
        if pending:
            session.stop_event.wait(0.3)
    session.log_to(st, "ready")


def live_update(session: Session, st: ResourceState, action: Action) -> None:
    """Copy changed files into every running container of the image, run steps, restart.

    No running container (pod not started, crashed, replaced), one that cannot be reached, or a
    failed copy falls back to a full update; a failing ``run`` step does not (as in Tilt).
    """
    st.status = "updating"
    copies = [(c.local, c.remote) for c in action.copies]
    targets = []
    for ref in action.images:
        cluster_ref = st.deployed_refs.get(ref, ref)
        targets += session.kube.containers(st.applied, cluster_ref)
    if not targets:
        session.log_to(st, "no running container to live-update: full update instead")
        full_update(session, st)
        return
    for c in targets:
        session.log_to(
            st,
            f"live update {c.pod}/{c.name}: {len(copies)} file(s) copied, "
            f"{len(action.deletes)} deleted, {len(action.runs)} run step(s)"
            f"{', restart' if action.restart else ''}",
        )
        try:
            out = session.kube.live_update(c, action, copies)
        except LiveUpdateSyncError as exc:  # as Tilt: a failed sync rebuilds, a failed run doesn't
            session.log_to(st, f"{exc}: full update instead")
            full_update(session, st)
            return
        for line in out.splitlines():
            session.log_to(st, line)


def initial_sync(session: Session, st: ResourceState) -> None:
    """``initial_sync()``: copy every file under the image's sync paths once after a deploy."""
    for ref in st.resource.images:
        image = session.images[ref]
        flt = session.context_filter(ref)
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
            live_update(
                session,
                st,
                Action(ActionKind.LIVE_UPDATE, "initial_sync", copies=copies, images=[ref]),
            )
