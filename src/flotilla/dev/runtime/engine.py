"""The dev loop: evaluate, build, deploy, watch, and do the cheapest correct update per change.

Threads, not asyncio: the docker SDK, kubectl and subprocesses are blocking, and each resource's
update is a sequence of blocking steps. One thread per update (a semaphore bounds concurrent
builds by ``update_settings(max_parallel_updates)``), one watcher, one monitor; all named, all
stopped by ``stop()`` within a bounded time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.dev.plan import decide, resources
from flotilla.dev.plan.context import ContextFilter, Matcher, image_filter, read_ignore_file
from flotilla.dev.plan.decide import Action, ActionKind
from flotilla.dev.plan.model import (
    ImageTarget,
    LocalResource,
    Resource,
    ResourceKind,
    TiltfileResult,
)
from flotilla.dev.runtime.build import Builder, Registry
from flotilla.dev.runtime.local import Server, run_cmd, wait_probe
from flotilla.dev.runtime.state import BuildRecord, ResourceState, write_record
from flotilla.dev.tiltfile.errors import TiltfileError
from flotilla.dev.tiltfile.evaluator import evaluate

logger = logging.getLogger(__name__)
TILTFILE = "(Tiltfile)"


@dataclass
class EngineConfig:
    """How to run a Tiltfile; read from flags at the entry point."""

    tiltfile: Path
    kubeconfig: Path | None = None
    namespace: str = ""
    """Namespace for objects that name none; '' means the kubeconfig's."""
    args: list[str] = field(default_factory=list)
    registry: str = ""
    """Registry (host:port) used when the Tiltfile calls no default_registry."""
    docker_host: str | None = None
    ci: bool = False
    subcommand: str = ""
    """What ``config.tilt_subcommand`` says; '' means ``ci`` or ``up`` from ``ci``."""
    watch: bool = True
    debounce_ms: int = 50
    """Quiet time (ms) after the last file event before acting on a batch."""
    echo: Callable[[str, str], None] | None = None
    """Called with (resource, line) for every log line, e.g. to print to the terminal."""


class Engine:
    """One running ``flotilla dev up`` (or ``ci``): resources, their states, the loop.

    It implements ``Session``, which is all its collaborators see of it."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.tiltfile = cfg.tiltfile.resolve()
        self.stop_event = threading.Event()
        self.lock = threading.RLock()
        self.states: dict[str, ResourceState] = {}
        self.resources: list[Resource] = []
        self.images: dict[str, ImageTarget] = {}
        self.result: TiltfileResult | None = None
        self.tiltfile_state = ResourceState(Resource(TILTFILE, ResourceKind.LOCAL))
        self.builder: Builder | None = None
        self.kube: Any = None  # KubeDeployer, created only when the Tiltfile has k8s objects
        self.compose: Any = None  # ComposeRunner, created only for docker_compose projects
        self._client: Any = None
        self._servers: dict[str, Server] = {}
        self.build_slots = threading.Semaphore(3)
        self._threads: list[threading.Thread] = []
        self._filters: dict[str, ContextFilter] = {}
        self._tiltignore: tuple[tuple[str, Matcher], ...] = ()
        self.monitor: Any = None

    # --- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)evaluate the Tiltfile; raises ``TiltfileError``/``ResourceError`` on failure."""
        self.tiltfile_state.status = "updating"
        start = time.monotonic()
        context, namespace = "", self.cfg.namespace or "default"
        if self.cfg.kubeconfig is not None:
            from flotilla.core.kube import kubeconfig_context

            context, _, kns = kubeconfig_context(self.cfg.kubeconfig)
            namespace = self.cfg.namespace or kns
        try:
            result, _ = evaluate(
                self.tiltfile,
                args=self.cfg.args,
                kube_context=context,
                kube_namespace=namespace,
                subcommand=self.cfg.subcommand or ("ci" if self.cfg.ci else "up"),
            )
            res = resources.assemble(result)
        except (TiltfileError, ValueError) as exc:
            self._tiltfile_done(start, str(exc))
            raise
        for line in result.logs:
            self.log_to(self.tiltfile_state, line)
        for w in result.warnings:
            self.log_to(self.tiltfile_state, f"WARNING: {w}")
        for ref in resources.unused_images(result.images, res):
            self.log_to(
                self.tiltfile_state, f"WARNING: image {ref} is built but no resource uses it"
            )
        with self.lock:
            self.result = result
            self.resources = res
            self.images = {i.ref: i for i in result.images}
            for r in res:
                st = self.states.get(r.name)
                if st is None:
                    self.states[r.name] = ResourceState(r)
                else:
                    st.resource = r
            for name in list(self.states):
                if name not in {r.name for r in res}:
                    del self.states[name]
            self.build_slots = threading.Semaphore(max(1, result.settings.max_parallel_updates))
            tiltignore = read_ignore_file(str(self.tiltfile.parent / ".tiltignore"))
            tiltignore += list(result.settings.watch_ignore)
            self._tiltignore = ((str(self.tiltfile.parent), Matcher.of(tiltignore)),)
            self._filters = {i.ref: image_filter(i, self._tiltignore) for i in result.images}
            for r in res:
                if r.local is not None:
                    self._filters[r.name] = ContextFilter(
                        "/",
                        Matcher.of(
                            [
                                os.path.relpath(self.tiltfile.parent, "/") + "/" + p
                                for p in r.local.ignore
                            ]
                        ),
                        (),
                        self._tiltignore,
                    )
        self._connect(result, namespace)
        self._tiltfile_done(start, "")

    def _tiltfile_done(self, start: float, error: str) -> None:
        st = self.tiltfile_state
        st.last = BuildRecord("reload", "Tiltfile", time.time(), time.monotonic() - start, error)
        st.history.append(st.last)
        st.status, st.error = ("error", error) if error else ("ready", "")
        if error:
            self.log_to(st, f"ERROR: {error}")

    def _connect(self, result: TiltfileResult, namespace: str) -> None:
        reg = Registry(
            result.settings.default_registry or self.cfg.registry,
            result.settings.registry_from_cluster,
            result.settings.registry_single_name,
        )
        if self.builder is None:
            self.builder = Builder(self.cfg.docker_host, reg, self._tiltignore)
        self.builder.registry, self.builder.tiltignore = reg, self._tiltignore
        if result.k8s_objects and self.kube is None:
            if self.cfg.kubeconfig is None:
                raise TiltfileError(
                    "the Tiltfile deploys to Kubernetes: pass --kubeconfig or set KUBECONFIG"
                )
            self._check_context(result)
            from flotilla.core.kube import client_from_kubeconfig
            from flotilla.dev.runtime.kubedeploy import KubeDeployer
            from flotilla.dev.runtime.monitor import Monitor

            self._client = client_from_kubeconfig(self.cfg.kubeconfig)
            self.kube = KubeDeployer(self._client, self.cfg.kubeconfig, namespace)
            self.monitor = Monitor(self)
        if result.compose and self.compose is None:
            from flotilla.dev.runtime.compose import ComposeRunner

            self.compose = ComposeRunner(self.builder)

    def _check_context(self, result: TiltfileResult) -> None:
        """Tilt's safety rule: deploy only to local clusters or contexts the Tiltfile allows."""
        from flotilla.core.kube import kubeconfig_context

        assert self.cfg.kubeconfig is not None
        context, server, _ = kubeconfig_context(self.cfg.kubeconfig)
        local = any(h in server for h in ("//127.", "//localhost", "//[::1]"))
        if not local and context not in result.settings.allowed_contexts:
            raise TiltfileError(
                f"context {context!r} ({server}) is not local; add "
                f"allow_k8s_contexts({context!r}) to the Tiltfile"
            )

    # --- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start every auto_init resource (in dependency order) and the watcher/monitor.

        When the Tiltfile failed to load, wait for an edit that fixes it first (as ``tilt up``
        does: the error stays on the ``(Tiltfile)`` resource meanwhile).
        """
        if self.result is None:
            self._spawn("await-tiltfile", self._await_tiltfile)
            return
        initial = resources.initial_set(self.resources, self.result.enabled_resources)
        for r in self.resources:
            if r.name not in initial:
                self.states[r.name].status = "disabled"  # auto_init=False or not enabled
        for name in initial:
            self.submit(name, None, initial=True)
        if self.monitor is not None:
            self._spawn("monitor", self.monitor.run)
        if self.cfg.watch:
            from flotilla.dev.runtime.watch import watch_loop

            self._spawn("watch", lambda: watch_loop(self, self.cfg.debounce_ms))
            self.record()  # a long-running `up`: let `down` in another shell find and stop it

    def _await_tiltfile(self) -> None:
        import watchfiles

        for _ in watchfiles.watch(
            self.tiltfile.parent,
            stop_event=self.stop_event,
            debounce=self.cfg.debounce_ms,
            rust_timeout=500,
            raise_interrupt=False,
        ):
            try:
                self.load()
            except (TiltfileError, ValueError):
                continue
            self.start()
            return

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except Exception:  # a crash is logged, never silent, never fatal to the loop
                logger.exception("dev thread %s crashed", name)

        t = threading.Thread(target=guarded, name=f"dev-{name}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()
        return t

    def submit(self, name: str, action: Action | None, *, initial: bool = False) -> None:
        """Run an update of ``name`` in its own thread (``None`` = full update)."""
        st = self.states[name]
        if not initial:
            st.ready_event.clear()
        self._spawn(f"update-{name}", lambda: self._update(st, action, initial))

    def trigger(self, name: str) -> None:
        """The UI's trigger button / manual mode: apply pending changes, else a full update."""
        if name == TILTFILE:
            self.changed({str(self.tiltfile)}, force=True)
            return
        st = self.states[name]
        pending, st.pending_changes = st.pending_changes, set()
        action = self._plan_one(st.resource, pending) if pending else None
        self.submit(name, action if action and action.kind != ActionKind.NONE else None)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """``flotilla dev enable|disable``: a disabled resource ignores changes (its serve_cmd
        stops); enabling it runs a full update. Deployed objects stay, as with Tilt's toggle."""
        st = self.states[name]
        if not enabled:
            server = self._servers.pop(name, None)
            if server is not None:
                server.stop()
            st.status = "disabled"
            self.log_to(st, "disabled")
        elif st.status == "disabled":
            st.status = "pending"
            self.log_to(st, "enabled")
            self.submit(name, None)

    def set_args(self, args: list[str]) -> None:
        """``flotilla dev args``: new Tiltfile arguments, then a reload (as ``tilt args``)."""
        self.cfg.args = list(args)
        self.changed({str(self.tiltfile)}, force=True)

    def press(self, name: str) -> None:
        """A ``uibutton``: run its command, its output going to its resource's log."""
        button = next(b for b in (self.result.buttons if self.result else []) if b.name == name)
        st = self.state(button.resource) or self.tiltfile_state
        env = dict(e.split("=", 1) for e in button.env if "=" in e)

        def run() -> None:
            lr = LocalResource(name=f"button {name}", cmd=button.argv, env=env, dir=button.dir)
            self.log_to(st, f"button {name}: {' '.join(button.argv)}")
            code = run_cmd(lr, lambda line: self.log_to(st, line), self.stop_event)
            self.log_to(st, f"button {name}: exit {code}")

        self._spawn(f"button-{name}", run)

    def changed(self, paths: set[str], *, force: bool = False) -> None:
        """A debounced batch of file changes from the watcher."""
        if self.result is None:
            return
        exists = {p for p in paths if os.path.exists(p)}
        config_files = set(self.result.watched_files) | {str(self.tiltfile)}
        deployed = {n for n, s in self.states.items() if s.applied or s.status == "ready"}
        plans = decide.plan(
            self.resources,
            self.images,
            paths,
            exists=exists,
            filters=self._filters,
            deployed=deployed,
            config_files=config_files,
        )
        if "*" in plans:
            self._reload(plans["*"])
            return
        for name, action in plans.items():
            st = self.states[name]
            if st.status == "disabled":  # `flotilla dev disable`, or not started yet
                continue
            if not st.resource.trigger_mode.auto and not force:
                st.pending_changes |= paths
                self.log_to(st, f"changes waiting for a manual trigger: {action.reason}")
                continue
            self.submit(name, action)

    def _plan_one(self, r: Resource, paths: set[str]) -> Action:
        exists = {p for p in paths if os.path.exists(p)}
        st = self.states[r.name]
        return decide.resource_action(
            r, self.images, paths, exists=exists, filters=self._filters, deployed=bool(st.applied)
        )

    def _reload(self, action: Action) -> None:
        before = {r.name: _fingerprint(r, self.images) for r in self.resources}
        self.log_to(self.tiltfile_state, f"reloading: {action.reason}")
        try:
            self.load()
        except (TiltfileError, ValueError):
            return
        for r in self.resources:
            if before.get(r.name) != _fingerprint(r, self.images) and r.auto_init:
                self.submit(
                    r.name,
                    Action(ActionKind.REAPPLY, "definition changed") if r.name in before else None,
                )

    def _update(self, st: ResourceState, action: Action | None, initial: bool) -> None:
        r = st.resource
        if initial:
            for dep in r.resource_deps:
                dst = self.states.get(dep)
                st.status = "waiting"
                while dst is not None and not dst.ready_event.wait(0.2):
                    if self.stop_event.is_set():
                        return
        with st.lock:
            kind = (
                str(action.kind)
                if action
                else ("run" if r.kind == ResourceKind.LOCAL else "build+deploy")
            )
            rec = BuildRecord(kind, action.reason if action else "full update", time.time())
            st.last = rec
            st.history.append(rec)
            start = time.monotonic()
            try:
                self._do_update(st, action)
                st.status, st.error = "ready", ""
                st.ready_event.set()
            except Exception as exc:  # every failure is shown on its resource, then we go on
                if self.stop_event.is_set():
                    return
                rec.error = st.error = str(exc)
                st.status = "error"
                self.log_to(st, f"ERROR: {exc}")
            finally:
                rec.seconds = time.monotonic() - start
            if not rec.error:
                self.log_to(st, f"{kind} done in {rec.seconds:.2f}s")

    def _do_update(self, st: ResourceState, action: Action | None) -> None:
        r = st.resource
        if r.kind == ResourceKind.LOCAL:
            self._update_local(st)
        elif r.kind == ResourceKind.COMPOSE:
            self.compose.update(self, st, action)
        elif action is not None and action.kind == ActionKind.LIVE_UPDATE:
            from flotilla.dev.runtime.k8supdate import live_update

            live_update(self, st, action)
        else:
            from flotilla.dev.runtime.k8supdate import full_update

            full_update(self, st)
            self.record()

    def _update_local(self, st: ResourceState) -> None:
        lr = st.resource.local
        assert lr is not None
        old = self._servers.pop(lr.name, None)
        if old is not None:
            old.stop()
        cd = st.resource.custom_deploy
        if cd is not None and cd.image_deps and self.builder is not None:
            # Tilt builds a k8s_custom_deploy's image_deps first and hands them to apply_cmd.
            env = dict(lr.env)
            for i, ref in enumerate(cd.image_deps):
                st.status = "building"
                built = self.builder.build(
                    self.images[ref], lambda line: self.log_to(st, line), self.images
                )
                env[f"TILT_IMAGE_MAP_{i}"] = ref
                env[f"TILT_IMAGE_{i}"] = built.cluster_ref
            lr = dataclasses.replace(lr, env=env)
        if lr.cmd:
            st.status = "updating"
            self.log_to(st, f"running: {lr.cmd if isinstance(lr.cmd, str) else ' '.join(lr.cmd)}")
            code = run_cmd(lr, lambda line: self.log_to(st, line), self.stop_event)
            if code != 0:
                raise RuntimeError(f"cmd exited with code {code}")
        if lr.serve_cmd:
            server = Server(lr, lambda line: self.log_to(st, line))
            self._servers[lr.name] = server
            if lr.readiness_probe is not None:
                deadline = time.monotonic() + self.settings_timeout()
                if not wait_probe(
                    lr.readiness_probe, self.stop_event, deadline, lambda: server.exit_code is None
                ):
                    raise RuntimeError(
                        "serve_cmd did not pass its readiness probe"
                        if server.exit_code is None
                        else f"serve_cmd exited with code {server.exit_code}"
                    )

    def context_filter(self, key: str) -> ContextFilter | None:
        return self._filters.get(key)

    def settings_timeout(self) -> float:
        return self.result.settings.readiness_timeout_secs if self.result else 300.0

    def record(self) -> None:
        """Write what is applied, for ``flotilla dev down`` from another shell."""
        objs = [
            {
                "apiVersion": o["apiVersion"],
                "kind": o["kind"],
                "name": o["metadata"]["name"],
                "namespace": o["metadata"].get("namespace"),
            }
            for s in self.states.values()
            if s.resource.kind == ResourceKind.K8S
            for o in s.applied
        ]
        write_record(
            self.tiltfile,
            {
                "pid": os.getpid(),
                "objects": objs,
                "compose": self.compose.projects() if self.compose else [],
            },
        )

    def log_to(self, st: ResourceState, line: str) -> None:
        st.append_log(line)
        if self.cfg.echo is not None:
            self.cfg.echo(st.resource.name, line)

    def log(self, name: str, line: str) -> None:
        st = self.states.get(name) or self.tiltfile_state
        self.log_to(st, line)

    # --- views and shutdown ----------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            items = [self.tiltfile_state.snapshot()]
            items += [self.states[r.name].snapshot() for r in self.resources]
        items[0]["name"] = TILTFILE
        return items

    def state(self, name: str) -> ResourceState | None:
        return self.tiltfile_state if name == TILTFILE else self.states.get(name)

    def ci_result(self) -> tuple[bool, str]:
        """(finished, failure) for ``dev ci``: all started resources ready, or the first error."""
        if self.tiltfile_state.status == "error":
            return True, f"{TILTFILE}: {self.tiltfile_state.error}"
        started = [s for s in self.states.values() if s.status != "disabled"]
        for s in started:
            if s.status == "error":
                return True, s.resource.name
        return all(s.status == "ready" for s in started), ""

    def stop(self) -> None:
        """Stop watching, servers, port-forwards and log streams; deployed objects stay."""
        self.stop_event.set()
        for server in list(self._servers.values()):
            server.stop()
        self._servers.clear()
        if self.monitor is not None:
            self.monitor.stop()
        for t in self._threads:
            t.join(10)
        if self.compose is not None:
            self.compose.close()
        if self.builder is not None:
            self.builder.close()
        if self._client is not None:
            self._client.close()


def _fingerprint(r: Resource, images: dict[str, ImageTarget]) -> str:
    """What a reload must compare to know a resource's definition changed."""
    return repr(
        (r.objects, [images[i] for i in r.images], r.local, r.compose_service, r.port_forwards)
    )
