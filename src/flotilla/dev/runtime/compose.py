"""Docker Compose services run through the docker SDK (no compose binary is needed).

Supported service keys: image, build (context, dockerfile, args, target), command, entrypoint,
environment, ports (bound to 127.0.0.1 unless an address is given), volumes (bind mounts),
working_dir, user, labels, depends_on. Containers are named ``<project>-<service>-1`` and labelled
as compose does, on a ``<project>_default`` network where services find each other by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from flotilla.dev.plan.decide import Action, ActionKind
from flotilla.dev.plan.model import ImageTarget, RestartContainer
from flotilla.dev.runtime.build import Builder
from flotilla.dev.runtime.kubedeploy import live_update_script, tar_of
from flotilla.dev.runtime.state import ResourceState

if TYPE_CHECKING:
    from flotilla.dev.runtime.session import Session

logger = logging.getLogger(__name__)
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
UNSUPPORTED_KEYS = {"deploy", "secrets", "configs", "extends", "network_mode", "networks"}


def port_bindings(ports: list[Any]) -> dict[str, Any]:
    """Compose ``ports`` → docker SDK ``ports``; host ports bind to loopback by default."""
    out: dict[str, Any] = {}
    for p in ports:
        if isinstance(p, dict):
            target, published = str(p["target"]), p.get("published")
            host = p.get("host_ip", "127.0.0.1")
            proto = p.get("protocol", "tcp")
        else:
            parts = str(p).split(":")
            proto = "tcp"
            if "/" in parts[-1]:
                parts[-1], proto = parts[-1].split("/", 1)
            target = parts[-1]
            published = parts[-2] if len(parts) >= 2 else None
            host = parts[0] if len(parts) == 3 else "127.0.0.1"
        out[f"{target}/{proto}"] = (host, int(published)) if published else None
    return out


def environment(env: Any) -> dict[str, str]:
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def bind_mounts(volumes: list[Any], base: str) -> dict[str, dict[str, str]]:
    out = {}
    for v in volumes or []:
        parts = str(v).split(":")
        if len(parts) >= 2 and (parts[0].startswith((".", "/", "~"))):
            src = os.path.normpath(os.path.join(base, os.path.expanduser(parts[0])))
            out[src] = {"bind": parts[1], "mode": parts[2] if len(parts) > 2 else "rw"}
    return out


class ComposeRunner:
    """Creates, live-updates and removes compose containers; owns one docker client."""

    def __init__(self, builder: Builder) -> None:
        self.builder = builder
        self._projects: set[str] = set()
        self._logs: list[threading.Thread] = []
        self._network_lock = threading.Lock()  # services start in parallel: one network each

    @property
    def client(self) -> docker.DockerClient:
        return self.builder.client

    def projects(self) -> list[str]:
        return sorted(self._projects)

    def container_name(self, project: str, service: str, spec: dict[str, Any] | None = None) -> str:
        """The service's ``container_name:``, else compose's ``<project>-<service>-1``."""
        given = (spec or {}).get("container_name")
        return str(given) if given else f"{project}-{service}-1"

    def _image(self, session: Session, st: ResourceState) -> str:
        spec = st.resource.compose_service or {}
        if st.resource.images:
            ref = st.resource.images[0]
            built = self.builder.build(
                session.images[ref], lambda line: session.log_to(st, line), session.images
            )
            st.deployed_refs = {ref: built.local_ref}
            return built.local_ref
        build = spec.get("build")
        if build:
            conf = {"context": build} if isinstance(build, str) else dict(build)
            ctx = os.path.normpath(os.path.join(spec["_dir"], conf.get("context", ".")))
            name = str(spec.get("image") or f"{st.resource.compose_project}-{st.resource.name}")
            target = ImageTarget(
                ref=name,
                context=ctx,
                dockerfile=os.path.join(ctx, conf.get("dockerfile", "Dockerfile")),
                build_args=environment(conf.get("args")),
                target=conf.get("target", ""),
            )
            saved = self.builder.registry
            self.builder.registry = dataclasses.replace(saved, host="")
            try:
                return self.builder.build(
                    target, lambda line: session.log_to(st, line), session.images
                ).local_ref
            finally:
                self.builder.registry = saved
        if not spec.get("image"):
            raise ValueError(f"compose service {st.resource.name} has neither image nor build")
        return str(spec["image"])

    def update(self, session: Session, st: ResourceState, action: Action | None) -> None:
        if action is not None and action.kind == ActionKind.LIVE_UPDATE:
            self.live_update(session, st, action)
            return
        spec = st.resource.compose_service or {}
        bad = UNSUPPORTED_KEYS & set(spec)
        if bad:
            raise ValueError(f"compose keys not supported: {', '.join(sorted(bad))}")
        st.status = "building"
        image = self._image(session, st)
        project = st.resource.compose_project
        self._projects.add(project)
        name = self.container_name(project, st.resource.name, spec)
        self.remove_container(name)
        network = self._network(project)
        st.status = "deploying"
        labels = {
            PROJECT_LABEL: project,
            SERVICE_LABEL: st.resource.name,
            **environment(spec.get("labels")),
        }
        container = self.client.containers.create(
            image,
            command=spec.get("command"),
            entrypoint=spec.get("entrypoint"),
            name=name,
            environment=environment(spec.get("environment")),
            labels=labels,
            ports=port_bindings(spec.get("ports") or []),
            working_dir=spec.get("working_dir"),
            user=spec.get("user"),
            volumes=bind_mounts(spec.get("volumes") or [], spec["_dir"]),
            network=network,
            detach=True,
        )
        network_obj = self.client.networks.get(network)
        with contextlib.suppress(docker.errors.APIError):
            network_obj.disconnect(container)
        network_obj.connect(container, aliases=[st.resource.name])
        container.start()
        st.applied = [{"container": name}]
        self._wait_running(session, st, name)
        self._follow(session, st, name)

    def _network(self, project: str) -> str:
        """The project's network, created once even when services start together (dockerd
        accepts two networks of one name, and then refuses to use either by name)."""
        name = f"{project}_default"
        with self._network_lock:
            same = [n for n in self.client.networks.list(names=[name]) if n.name == name]
            for extra in same[1:]:  # left by an earlier race: keep one
                with contextlib.suppress(docker.errors.APIError):
                    extra.remove()
            if not same:
                self.client.networks.create(name, labels={PROJECT_LABEL: project})
        return name

    def _wait_running(self, session: Session, st: ResourceState, name: str) -> None:
        deadline = time.monotonic() + session.settings_timeout()
        while time.monotonic() < deadline and not session.stop_event.is_set():
            c = self.client.containers.get(name)
            state = c.attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") in ("exited", "dead"):
                raise RuntimeError(f"container {name} exited with code {state.get('ExitCode')}")
            if state.get("Running") and health in (None, "healthy"):
                return
            session.stop_event.wait(0.2)
        raise RuntimeError(f"container {name} not running/healthy in time")

    def _follow(self, session: Session, st: ResourceState, name: str) -> None:
        since = int(time.time()) - 1

        def pump() -> None:
            try:
                c = self.client.containers.get(name)
                for chunk in c.logs(stream=True, follow=True, since=since):
                    session.log_to(st, chunk.decode(errors="replace").rstrip("\n"))
            except Exception as exc:  # container removed or client closed: the stream ends
                logger.debug("compose logs %s ended: %s", name, exc)

        t = threading.Thread(target=pump, name=f"compose-logs-{name}", daemon=True)
        t.start()
        self._logs.append(t)

    def live_update(self, session: Session, st: ResourceState, action: Action) -> None:
        st.status = "updating"
        name = self.container_name(
            st.resource.compose_project, st.resource.name, st.resource.compose_service
        )
        try:
            c = self.client.containers.get(name)
        except docker.errors.NotFound:
            self.update(session, st, None)
            return
        copies = [(cp.local, cp.remote) for cp in action.copies]
        try:
            if copies:
                c.put_archive("/", tar_of(copies))
        except docker.errors.APIError as exc:  # as Tilt: a failed sync rebuilds
            session.log_to(st, f"sync into {name} failed ({exc}): full update instead")
            self.update(session, st, None)
            return
        docker_restart = any(
            isinstance(s, RestartContainer)
            for ref in action.images
            for s in session.images[ref].live_update
        )
        script_action = dataclasses.replace(action, restart=action.restart and not docker_restart)
        script = live_update_script(script_action, has_files=False)
        code, out = c.exec_run(["sh", "-c", script])
        text = out.decode(errors="replace") if isinstance(out, bytes) else ""
        for line in text.splitlines():
            session.log_to(st, line)
        if code != 0:
            raise RuntimeError(f"live update in {name} failed (exit {code})")
        if docker_restart:
            c.restart(timeout=2)
            self._follow(session, st, name)
        session.log_to(st, f"live update {name}: {len(copies)} file(s)")

    def remove_container(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name).remove(force=True)

    def down(self, project: str) -> int:
        """Remove a project's containers and network; how many containers were removed."""
        removed = 0
        for c in self.client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
        ):
            c.remove(force=True)
            removed += 1
        for net in self.client.networks.list(filters={"label": f"{PROJECT_LABEL}={project}"}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                net.remove()
        return removed

    def close(self) -> None:
        for t in self._logs:
            t.join(0.1)
