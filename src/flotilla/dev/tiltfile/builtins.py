"""Tilt's built-in functions, with Tilt's argument names and defaults.

``Builtins`` holds one evaluation's state; each Tilt built-in is a method that ``@builtin``
(``registry.py``) records in ``REGISTRY`` under its Tilt name, as kopf's ``on.*`` decorators
fill a registry. Relative paths resolve against the file being run and declarations land in its
``TiltfileResult``. Tilt's ``Blob`` is a plain string here; strings that came from
``local``/``read_file``/``helm``/... are remembered so ``k8s_yaml`` knows they are YAML. Usage
errors raise ``UsageError``; the evaluator adds the Tiltfile's file and line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import starlark as sl

from flotilla.core import yamlload
from flotilla.dev.plan import imagedeps, manifests
from flotilla.dev.plan.model import (
    ComposeProject,
    CustomDeploy,
    DcResourceOptions,
    FallBackOn,
    ImageTarget,
    InitialSync,
    K8sResourceOptions,
    LocalResource,
    Probe,
    RestartContainer,
    Run,
    Sync,
    TriggerMode,
)
from flotilla.dev.tiltfile.arguments import (
    command_of,
    links_of,
    live_update_steps,
    port_forwards_of,
    strs,
    trigger_mode_of,
)
from flotilla.dev.tiltfile.errors import UsageError
from flotilla.dev.tiltfile.registry import REGISTRY, builtin
from flotilla.dev.tiltfile.tools import find_tool, tool_env
from flotilla.dev.tiltfile.yamltools import YamlBuiltins

CONSTANTS: dict[str, Any] = {
    "TRIGGER_MODE_AUTO": int(TriggerMode.AUTO),
    "TRIGGER_MODE_MANUAL": int(TriggerMode.MANUAL),
}

RESTART_FILE = "/tmp/.restart-proc"


def _env(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _entrypoint(value: Any) -> tuple[str, ...]:
    """A string entrypoint runs as ``sh -c ENTRYPOINT`` (trimmed), as Tilt's ``model.ToUnixCmd``
    makes it (its docs say ``/bin/sh``; the argv it sets is ``sh``); a list is the argv."""
    if isinstance(value, str):
        return ("sh", "-c", value.strip()) if value.strip() else ()
    return strs(value, "entrypoint")


def _opaque(value: Any) -> sl.OpaquePythonObject:
    return sl.OpaquePythonObject(value)


class Builtins(YamlBuiltins):
    """The functions a Tiltfile sees, bound to one evaluation (``functions()``)."""

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Every registered built-in by its Tilt name, bound to this evaluation."""
        return {name: getattr(self, method) for name, method in REGISTRY.items()}

    # --- helpers ---------------------------------------------------------------------------
    def _run(
        self, command: Any, env: dict[str, str], dir: str, stdin: str | None, what: str
    ) -> str:
        cmd = command_of(command, "command")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if not argv:
            raise UsageError(f"{what}: empty command")
        proc = subprocess.run(
            argv,
            cwd=self.ev.path(dir) if dir else str(self.ev.cwd),
            input=stdin,
            capture_output=True,
            text=True,
            env=tool_env({**os.environ, **env}),
            check=False,
        )
        if proc.returncode != 0:
            shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
            raise UsageError(
                f"{what}: command `{shown}` exited {proc.returncode}: "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        return proc.stdout

    def _image_common(self, ref: str) -> None:
        if not isinstance(ref, str) or not ref:
            raise UsageError("ref must be a non-empty image name")
        if any(i.ref == ref for i in self.res.images):
            raise UsageError(f"image {ref!r} has already been declared")

    # --- Kubernetes ------------------------------------------------------------------------
    @builtin()
    def k8s_yaml(self, yaml: Any, allow_duplicates: bool = False) -> None:
        seen = {manifests.object_id(o) for o in self.res.k8s_objects}
        for source, text in self._yaml_texts(yaml):
            for obj in manifests.parse_yaml_stream(text, source=source):
                oid = manifests.object_id(obj)
                if oid in seen and not allow_duplicates:
                    raise UsageError(f"duplicate YAML object {oid} (pass allow_duplicates=True)")
                seen.add(oid)
                self.res.k8s_objects.append(obj)

    @builtin()
    def k8s_resource(
        self,
        workload: str = "",
        new_name: str = "",
        port_forwards: Any = None,
        extra_pod_selectors: Any = None,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        objects: Any = None,
        auto_init: bool = True,
        pod_readiness: str = "",
        links: Any = None,
        labels: Any = None,
        discovery_strategy: str = "",
    ) -> None:
        if not workload and not new_name:
            raise UsageError("k8s_resource needs workload or new_name")
        if pod_readiness not in ("", "wait", "ignore"):
            raise UsageError(f"pod_readiness must be 'wait' or 'ignore', not {pod_readiness!r}")
        sels = extra_pod_selectors or []
        self.res.k8s_resources.append(
            K8sResourceOptions(
                workload=workload,
                new_name=new_name,
                port_forwards=port_forwards_of(port_forwards),
                extra_pod_selectors=tuple(
                    dict(s) for s in (sels if isinstance(sels, list) else [sels])
                ),
                trigger_mode=None if trigger_mode is None else trigger_mode_of(trigger_mode),
                resource_deps=strs(resource_deps, "resource_deps"),
                objects=strs(objects, "objects"),
                auto_init=bool(auto_init),
                pod_readiness=pod_readiness,
                links=links_of(links),
                labels=strs(labels, "labels"),
            )
        )

    @builtin()
    def allow_k8s_contexts(self, contexts: Any) -> None:
        settings = self.res.settings
        settings.allowed_contexts = settings.allowed_contexts + strs(contexts, "contexts")

    @builtin()
    def k8s_context(self) -> str:
        return self.ev.kube_context

    @builtin()
    def k8s_namespace(self) -> str:
        return self.ev.kube_namespace

    @builtin()
    def helm(
        self,
        pathToChartDir: str,  # noqa: N803 - Tilt's argument name
        name: str = "",
        namespace: str = "",
        values: Any = None,
        set: Any = None,
        kube_version: str = "",
        skip_crds: bool = False,
    ) -> str:
        chart = self.ev.path(pathToChartDir)
        self.ev.watch(pathToChartDir)
        argv = [find_tool("helm"), "template", name or "chart", chart]
        if namespace:
            argv += ["--namespace", namespace]
        for v in strs(values, "values"):
            self.ev.watch(v)
            argv += ["--values", self.ev.path(v)]
        for s in strs(set, "set"):
            argv += ["--set", s]
        if kube_version:
            argv += ["--kube-version", kube_version]
        argv.append("--skip-crds" if skip_crds else "--include-crds")
        out = self._run(argv, {}, "", None, "helm")
        if namespace:
            # `helm template --namespace` leaves objects without one; Tilt sets it on each
            # (tiltfile/files.go), or they would land in the default namespace
            try:
                objs = manifests.parse_yaml_stream(out, source="helm")
            except manifests.ManifestError as exc:
                raise UsageError(str(exc)) from None
            out = manifests.dump_yaml_stream([manifests.set_namespace(o, namespace) for o in objs])
        return self.ev.blob(out)

    @builtin()
    def kustomize(
        self,
        pathToDir: str,  # noqa: N803 - Tilt's argument name
        kustomize_bin: Any = None,
        flags: Any = None,
    ) -> str:
        self.ev.watch(pathToDir)
        argv = [kustomize_bin, "build"] if kustomize_bin else [find_tool("kubectl"), "kustomize"]
        return self.ev.blob(
            self._run(
                [*argv, self.ev.path(pathToDir), *strs(flags, "flags")], {}, "", None, "kustomize"
            )
        )

    # --- images ----------------------------------------------------------------------------
    @builtin()
    def docker_build(
        self,
        ref: str,
        context: str,
        build_args: Any = None,
        dockerfile: Any = None,
        dockerfile_contents: str = "",
        live_update: Any = None,
        match_in_env_vars: bool = False,
        ignore: Any = None,
        only: Any = None,
        entrypoint: Any = None,
        target: str = "",
        ssh: Any = "",
        network: str = "",
        secret: Any = "",
        extra_tag: Any = "",
        container_args: Any = None,
        cache_from: Any = None,
        pull: bool = False,
        platform: str = "",
        extra_hosts: Any = None,
    ) -> None:
        self._image_common(ref)
        ctx = self.ev.path(context)
        if not os.path.isdir(ctx):
            raise UsageError(f"build context {ctx} is not a directory")
        # Tilt: the default is <context>/Dockerfile; a given path is relative to the Tiltfile.
        df = (
            ""
            if dockerfile_contents
            else (
                os.path.join(ctx, "Dockerfile") if dockerfile is None else self.ev.path(dockerfile)
            )
        )
        if df and not os.path.exists(df):
            raise UsageError(f"Dockerfile {df} does not exist")
        # Read to find FROM dependencies, but not watched as a Tiltfile input: a Dockerfile edit
        # rebuilds the image (plan/decide.py), as in Tilt, rather than reloading the Tiltfile.
        text = dockerfile_contents or (Path(df).read_text(errors="replace") if df else "")
        deps = imagedeps.deps_of(str(text), _env(build_args), [i.ref for i in self.res.images])
        # Tilt lets a sync copy from the context of any image this one is built from.
        by_ref, roots, todo = {i.ref: i for i in self.res.images}, [ctx], list(deps)
        while todo:
            base = by_ref[todo.pop()]
            roots += [base.context, *base.deps]
            todo += base.image_deps
        self.res.images.append(
            ImageTarget(
                ref=ref,
                context=ctx,
                dockerfile=df,
                dockerfile_contents=str(dockerfile_contents),
                build_args=_env(build_args),
                target=target,
                live_update=live_update_steps(live_update, tuple(roots)),
                image_deps=deps,
                ignore=strs(ignore, "ignore"),
                only=strs(only, "only"),
                entrypoint=_entrypoint(entrypoint),
                container_args=None if container_args is None else strs(container_args, "args"),
                match_in_env_vars=bool(match_in_env_vars),
                extra_tag=strs(extra_tag, "extra_tag"),
                pull=bool(pull),
                network=network,
            )
        )

    @builtin()
    def custom_build(
        self,
        ref: str,
        command: Any,
        deps: Any,
        tag: str = "",
        disable_push: bool = False,
        skips_local_docker: bool = False,
        live_update: Any = None,
        match_in_env_vars: bool = False,
        ignore: Any = None,
        entrypoint: Any = None,
        command_bat_val: str = "",
        outputs_image_ref_to: str = "",
        command_bat: str = "",
        image_deps: Any = None,
        env: Any = None,
        dir: str = "",
    ) -> None:
        self._image_common(ref)
        ev = self.ev
        paths = tuple(ev.path(d) for d in strs(deps, "deps"))
        self.res.images.append(
            ImageTarget(
                ref=ref,
                context=str(ev.cwd),
                kind="custom",
                command=command_of(command, "command"),
                deps=paths,
                tag=tag,
                disable_push=bool(disable_push),
                skips_local_docker=bool(skips_local_docker),
                live_update=live_update_steps(live_update, paths),
                ignore=strs(ignore, "ignore"),
                entrypoint=_entrypoint(entrypoint),
                match_in_env_vars=bool(match_in_env_vars),
                outputs_image_ref_to=ev.path(outputs_image_ref_to) if outputs_image_ref_to else "",
                env=_env(env),
                dir=ev.path(dir) if dir else str(ev.cwd),
            )
        )

    @builtin("_docker_build_with_restart")
    def docker_build_with_restart(
        self,
        ref: str,
        context: str,
        entrypoint: Any,
        live_update: Any,
        base_suffix: str = "-tilt_docker_build_with_restart_base",
        restart_file: str = RESTART_FILE,
        trigger: Any = None,
        exit_policy: str = "restart",
        **kwargs: Any,
    ) -> None:
        entry = command_of(entrypoint, "entrypoint")
        argv = ("sh", "-c", entry) if isinstance(entry, str) else entry
        self.docker_build(ref, context, live_update=live_update, **kwargs)
        self.res.images[-1].restart_entrypoint = argv

    @builtin("_custom_build_with_restart")
    def custom_build_with_restart(
        self, ref: str, command: Any, deps: Any, entrypoint: Any, live_update: Any, **kwargs: Any
    ) -> None:
        raise UsageError(
            "custom_build_with_restart is not supported; use "
            "docker_build_with_restart or restart in a run() step"
        )

    @builtin()
    def k8s_custom_deploy(
        self,
        name: str,
        apply_cmd: Any,
        delete_cmd: Any,
        deps: Any,
        image_selector: str = "",
        live_update: Any = None,
        apply_dir: str = "",
        apply_env: Any = None,
        apply_cmd_bat: Any = "",
        delete_dir: str = "",
        delete_env: Any = None,
        delete_cmd_bat: Any = "",
        container_selector: str = "",
        image_deps: Any = None,
    ) -> None:
        ev = self.ev
        if not name:
            raise UsageError("k8s_custom_deploy needs a name")
        if any(d.name == name for d in self.res.custom_deploys):
            raise UsageError(f"k8s_custom_deploy named {name!r} already exists")
        paths = tuple(ev.path(d) for d in strs(deps, "deps"))
        if image_selector and live_update:
            self.res.images.append(
                ImageTarget(
                    ref=image_selector,
                    context=str(ev.cwd),
                    kind="custom",
                    command=":",  # as Tilt: the image is only live-updated, never built
                    deps=paths,
                    skips_local_docker=True,
                    live_update=live_update_steps(live_update, paths),
                )
            )
        self.res.custom_deploys.append(
            CustomDeploy(
                name=name,
                apply_cmd=command_of(apply_cmd, "apply_cmd"),
                delete_cmd=command_of(delete_cmd, "delete_cmd"),
                deps=paths,
                image_selector=image_selector,
                apply_dir=ev.path(apply_dir) if apply_dir else str(ev.cwd),
                apply_env=_env(apply_env),
                delete_dir=ev.path(delete_dir) if delete_dir else str(ev.cwd),
                delete_env=_env(delete_env),
                image_deps=strs(image_deps, "image_deps"),
            )
        )

    @builtin()
    def default_registry(
        self, host: str, host_from_cluster: Any = None, single_name: str = ""
    ) -> None:
        self.res.settings.default_registry = host
        self.res.settings.registry_from_cluster = host_from_cluster or ""
        self.res.settings.registry_single_name = single_name

    # --- live update steps -----------------------------------------------------------------
    @builtin()
    def sync(self, local_path: str, remote_path: str) -> sl.OpaquePythonObject:
        if not str(remote_path).startswith("/"):
            raise UsageError(f"sync remote_path {remote_path!r} must be absolute")
        return _opaque(Sync(self.ev.path(local_path), str(remote_path)))

    @builtin()
    def run(self, cmd: Any, trigger: Any = None, echo_off: bool = False) -> sl.OpaquePythonObject:
        triggers = tuple(self.ev.path(t) for t in strs(trigger, "trigger"))
        return _opaque(Run(command_of(cmd, "cmd"), triggers, bool(echo_off)))

    @builtin()
    def restart_container(self) -> sl.OpaquePythonObject:
        return _opaque(RestartContainer())

    @builtin()
    def fall_back_on(self, files: Any) -> sl.OpaquePythonObject:
        return _opaque(FallBackOn(tuple(self.ev.path(f) for f in strs(files, "files"))))

    @builtin()
    def initial_sync(self) -> sl.OpaquePythonObject:
        return _opaque(InitialSync())

    # --- local resources and docker compose ------------------------------------------------
    @builtin()
    def local_resource(
        self,
        name: str,
        cmd: Any = "",
        deps: Any = None,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        ignore: Any = None,
        auto_init: bool = True,
        serve_cmd: Any = "",
        cmd_bat: Any = "",
        serve_cmd_bat: Any = "",
        allow_parallel: bool = False,
        links: Any = None,
        labels: Any = None,
        env: Any = None,
        serve_env: Any = None,
        readiness_probe: Any = None,
        dir: str = "",
        serve_dir: str = "",
    ) -> None:
        res, ev = self.res, self.ev
        if any(r.name == name for r in res.local_resources):
            raise UsageError(f"local_resource named {name!r} already exists")
        if readiness_probe is not None and not isinstance(readiness_probe, Probe):
            raise UsageError("readiness_probe must be made with probe()")
        res.local_resources.append(
            LocalResource(
                name=name,
                cmd=command_of(cmd, "cmd"),
                deps=tuple(ev.path(d) for d in strs(deps, "deps")),
                trigger_mode=res.settings.trigger_mode
                if trigger_mode is None
                else trigger_mode_of(trigger_mode),
                resource_deps=strs(resource_deps, "resource_deps"),
                ignore=strs(ignore, "ignore"),
                auto_init=bool(auto_init),
                serve_cmd=command_of(serve_cmd, "serve_cmd"),
                allow_parallel=bool(allow_parallel),
                links=links_of(links),
                labels=strs(labels, "labels"),
                env=_env(env),
                serve_env=_env(serve_env),
                readiness_probe=readiness_probe,
                dir=ev.path(dir) if dir else str(ev.cwd),
                serve_dir=ev.path(serve_dir) if serve_dir else str(ev.cwd),
            )
        )

    @builtin()
    def local(
        self,
        command: Any,
        quiet: bool = False,
        command_bat: Any = "",
        echo_off: bool = False,
        env: Any = None,
        dir: str = "",
        stdin: Any = None,
    ) -> str:
        out = self._run(command, _env(env), dir, None if stdin is None else str(stdin), "local")
        if not quiet:
            self.res.logs.append(out)
        return self.ev.blob(out)

    @builtin()
    def docker_compose(
        self,
        configPaths: Any,  # noqa: N803 - Tilt's argument name
        env_file: Any = None,
        project_name: str = "",
        profiles: Any = None,
        wait: bool = False,
    ) -> None:
        paths = tuple(self.ev.path(p) for p in strs(configPaths, "configPaths"))
        services: dict[str, dict[str, Any]] = {}
        named = ""
        for p in paths:
            doc = yamlload.load(self._read_text(p, "docker_compose")) or {}
            named = str(doc.get("name") or named) if isinstance(doc, dict) else named
            for svc, spec in (doc.get("services") or {}).items():
                services.setdefault(svc, {}).update(spec or {})
                services[svc]["_dir"] = os.path.dirname(p)
        if not paths:
            raise UsageError("docker_compose needs at least one file")
        # compose's own rule (compose-go NormalizeProjectName): lower case, only [a-z0-9_-]
        proj = project_name or named or os.path.basename(os.path.dirname(paths[0]))
        proj = re.sub(r"[^a-z0-9_-]", "", str(proj).lower()).lstrip("_-")
        if not proj:
            raise UsageError("docker_compose: the project name is empty once normalised")
        self.res.compose.append(
            ComposeProject(paths, str(proj), self.ev.path(env_file) if env_file else "", services)
        )

    @builtin()
    def dc_resource(
        self,
        name: str,
        trigger_mode: Any = None,
        resource_deps: Any = None,
        links: Any = None,
        labels: Any = None,
        auto_init: bool = True,
        project_name: str = "",
        new_name: str = "",
        infer_links: bool = True,
    ) -> None:
        self.res.dc_resources.append(
            DcResourceOptions(
                name=name,
                new_name=new_name,
                trigger_mode=None if trigger_mode is None else trigger_mode_of(trigger_mode),
                resource_deps=strs(resource_deps, "resource_deps"),
                links=links_of(links),
                labels=strs(labels, "labels"),
                auto_init=bool(auto_init),
            )
        )

    # --- files and data --------------------------------------------------------------------

    @builtin("_namespace_create")
    def namespace_create(
        self, name: str, allow_duplicates: bool = False, annotations: Any = None, labels: Any = None
    ) -> None:
        self.k8s_yaml(self.namespace_yaml(name, annotations, labels), allow_duplicates)

    @builtin("_namespace_inject")
    def namespace_inject(self, x: str, ns: str) -> str:
        objs = [
            o for src, t in self._yaml_texts(x) for o in manifests.parse_yaml_stream(t, source=src)
        ]
        out = []
        for o in objs:
            o = manifests.set_namespace(o, ns)
            if o.get("kind") not in manifests.CLUSTER_SCOPED_KINDS:
                o["metadata"]["namespace"] = ns
            out.append(o)
        return self.ev.blob(manifests.dump_yaml_stream(out))
