"""Tilt's built-in functions, with Tilt's argument names and defaults.

Each is a closure over the ``Evaluator`` so relative paths resolve against the file being run and
declarations land in its ``TiltfileResult``. Tilt's ``Blob`` is a plain string here; strings that
came from ``local``/``read_file``/``helm``/... are remembered so ``k8s_yaml`` knows they are YAML.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import starlark as sl
import yaml

from flotilla.dev.plan import manifests
from flotilla.dev.plan.model import (
    ComposeProject,
    DcResourceOptions,
    FallBackOn,
    ImageTarget,
    InitialSync,
    K8sResourceOptions,
    Link,
    LiveUpdateStep,
    LocalResource,
    PortForward,
    Probe,
    RestartContainer,
    Run,
    Sync,
    TriggerMode,
)
from flotilla.dev.tiltfile.tools import find_tool

if TYPE_CHECKING:
    from flotilla.dev.tiltfile.evaluator import Evaluator

CONSTANTS: dict[str, Any] = {
    "TRIGGER_MODE_AUTO": int(TriggerMode.AUTO),
    "TRIGGER_MODE_MANUAL": int(TriggerMode.MANUAL),
}

# Extensions that ``load('ext://NAME', ...)`` finds without a network: thin aliases of built-ins.
EXTENSIONS: dict[str, str] = {
    "restart_process": (
        "docker_build_with_restart = _docker_build_with_restart\n"
        "custom_build_with_restart = _custom_build_with_restart\n"
    ),
    "namespace": (
        "namespace_yaml = _namespace_yaml\nnamespace_create = _namespace_create\n"
        "namespace_inject = _namespace_inject\n"
    ),
}

RESTART_FILE = "/tmp/.restart-proc"


def _strs(value: Any, what: str) -> tuple[str, ...]:
    """Tilt accepts a string or a list of strings almost everywhere."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise TypeError(f"{what} must be a string or a list of strings")
        return tuple(value)
    raise TypeError(f"{what} must be a string or a list of strings, not {type(value).__name__}")


def _cmd(value: Any, what: str) -> tuple[str, ...] | str:
    """A command: a string runs through ``sh -c``, a list runs as is."""
    if isinstance(value, str):
        return value
    return _strs(value, what)


def _trigger_mode(value: Any) -> TriggerMode:
    try:
        return TriggerMode(int(value))
    except (TypeError, ValueError):
        raise ValueError(f"invalid trigger_mode {value!r}: use TRIGGER_MODE_AUTO or "
                         "TRIGGER_MODE_MANUAL") from None


def _objs(value: Any, cls: type[Any], what: str) -> tuple[Any, ...]:
    items = value if isinstance(value, list | tuple) else [value] if value is not None else []
    for item in items:
        if not isinstance(item, cls):
            raise TypeError(f"{what} must be {cls.__name__} values, got {type(item).__name__}")
    return tuple(items)


def _links(value: Any) -> tuple[Link, ...]:
    out = []
    for item in value if isinstance(value, list | tuple) else [value] if value else []:
        out.append(Link(item) if isinstance(item, str) else _objs(item, Link, "links")[0])
    return tuple(out)


def _port_forwards(value: Any) -> tuple[PortForward, ...]:
    out: list[PortForward] = []
    items = value if isinstance(value, list | tuple) else [value] if value not in (None, "") else []
    for item in items:
        if isinstance(item, PortForward):
            out.append(item)
        elif isinstance(item, int):
            out.append(PortForward(item, item))
        elif isinstance(item, str):
            local, _, remote = item.partition(":")
            if not local.isdigit() or (remote and not remote.isdigit()):
                raise ValueError(f"port_forwards: {item!r} is not PORT or LOCAL:REMOTE")
            out.append(PortForward(int(local), int(remote or local)))
        else:
            raise TypeError(f"port_forwards: unsupported value {item!r}")
    return tuple(out)


def _live_update(ev: Evaluator, steps: Any, roots: tuple[str, ...]) -> tuple[LiveUpdateStep, ...]:
    """Check the steps' order as Tilt does: fall_back_on, initial_sync, sync, run, restart."""
    items = _objs(steps, (Sync, Run, RestartContainer, FallBackOn, InitialSync),  # type: ignore[arg-type]
                  "live_update")
    rank = {FallBackOn: 0, InitialSync: 1, Sync: 2, Run: 3, RestartContainer: 4}
    last = 0
    for step in items:
        r = rank[type(step)]
        if r < last:
            raise ValueError("live_update steps must be ordered fall_back_on, initial_sync, "
                             f"sync, run, restart_container; {type(step).__name__} came too late")
        last = r
        if isinstance(step, Sync) and roots and not any(
            step.local_path == root or step.local_path.startswith(root.rstrip("/") + "/")
            for root in roots
        ):
            raise ValueError(f"sync source {step.local_path} is not inside the build context "
                             f"or deps ({', '.join(roots)})")
    return tuple(items)


def parse_config_args(defs: dict[str, tuple[str, bool, str]], args: list[str]) -> dict[str, Any]:
    """Tilt's ``config.parse()`` over ``up -- ARGS``: flags, positionals for ``args=True``."""
    values: dict[str, Any] = {}
    positional = next((n for n, (_, a, _) in defs.items() if a), None)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in defs:
                raise ValueError(f"config: unknown flag --{name} (defined: "
                                 f"{', '.join('--' + d for d in sorted(defs)) or 'none'})")
            kind = defs[name][0]
            if kind == "bool":
                values[name] = value.lower() not in ("false", "0", "no") if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise ValueError(f"config: flag --{name} needs a value")
                    value = args[i]
                if kind == "string_list":
                    values.setdefault(name, []).append(value)
                elif kind == "object":
                    values[name] = json.loads(value)
                else:
                    values[name] = value
        else:
            if positional is None:
                raise ValueError(f"config: positional argument {arg!r} but no setting takes args")
            if defs[positional][0] == "string_list":
                values.setdefault(positional, []).append(arg)
            else:
                values[positional] = arg
        i += 1
    return values


def _run_local(ev: Evaluator, command: Any, env: dict[str, str], dir: str, stdin: str | None,
               what: str) -> str:
    cmd = _cmd(command, "command")
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    if not argv:
        raise ValueError(f"{what}: empty command")
    proc = subprocess.run(argv, cwd=ev.path(dir) if dir else str(ev.cwd), input=stdin,
                          capture_output=True, text=True, env={**os.environ, **env}, check=False)
    if proc.returncode != 0:
        shown = cmd if isinstance(cmd, str) else shlex.join(cmd)
        raise RuntimeError(f"{what}: command `{shown}` exited {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc.stdout


def make_builtins(ev: Evaluator) -> dict[str, Callable[..., Any]]:
    """The functions a Tiltfile sees, bound to ``ev``."""
    res = ev.result

    def read_text(path: str, what: str) -> str:
        full = ev.path(path)
        ev.watch(path)
        try:
            return Path(full).read_text()
        except OSError as exc:
            raise FileNotFoundError(f"{what}: cannot read {full}: {exc.strerror}") from None

    def yaml_texts(value: Any) -> list[tuple[str, str]]:
        items = value if isinstance(value, list | tuple) else [value]
        out: list[tuple[str, str]] = []
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"expected a path or Blob, got {type(item).__name__}")
            if item in ev.blobs or ("\n" in item and "kind:" in item):
                out.append(("<blob>", item))
            else:
                out.append((ev.path(item), read_text(item, "k8s_yaml")))
        return out

    def k8s_yaml(yaml: Any, allow_duplicates: bool = False) -> None:
        seen = {manifests.object_id(o) for o in res.k8s_objects}
        for source, text in yaml_texts(yaml):
            for obj in manifests.parse_yaml_stream(text, source=source):
                oid = manifests.object_id(obj)
                if oid in seen and not allow_duplicates:
                    raise ValueError(f"duplicate YAML object {oid} (pass allow_duplicates=True)")
                seen.add(oid)
                res.k8s_objects.append(obj)

    def k8s_resource(workload: str = "", new_name: str = "", port_forwards: Any = None,
                     extra_pod_selectors: Any = None, trigger_mode: Any = None,
                     resource_deps: Any = None, objects: Any = None, auto_init: bool = True,
                     pod_readiness: str = "", links: Any = None, labels: Any = None,
                     discovery_strategy: str = "") -> None:
        if not workload and not new_name:
            raise ValueError("k8s_resource needs workload or new_name")
        if pod_readiness not in ("", "wait", "ignore"):
            raise ValueError(f"pod_readiness must be 'wait' or 'ignore', not {pod_readiness!r}")
        sels = extra_pod_selectors or []
        res.k8s_resources.append(K8sResourceOptions(
            workload=workload, new_name=new_name, port_forwards=_port_forwards(port_forwards),
            extra_pod_selectors=tuple(dict(s) for s in
                                      (sels if isinstance(sels, list) else [sels])),
            trigger_mode=None if trigger_mode is None else _trigger_mode(trigger_mode),
            resource_deps=_strs(resource_deps, "resource_deps"), objects=_strs(objects, "objects"),
            auto_init=bool(auto_init), pod_readiness=pod_readiness, links=_links(links),
            labels=_strs(labels, "labels")))

    def image_common(ref: str) -> None:
        if not isinstance(ref, str) or not ref:
            raise ValueError("ref must be a non-empty image name")
        if any(i.ref == ref for i in res.images):
            raise ValueError(f"image {ref!r} has already been declared")

    def docker_build(ref: str, context: str, build_args: Any = None, dockerfile: Any = None,
                     dockerfile_contents: str = "", live_update: Any = None,
                     match_in_env_vars: bool = False, ignore: Any = None, only: Any = None,
                     entrypoint: Any = None, target: str = "", ssh: Any = "", network: str = "",
                     secret: Any = "", extra_tag: Any = "", container_args: Any = None,
                     cache_from: Any = None, pull: bool = False, platform: str = "",
                     extra_hosts: Any = None) -> None:
        image_common(ref)
        ctx = ev.path(context)
        if not os.path.isdir(ctx):
            raise ValueError(f"build context {ctx} is not a directory")
        # Tilt: the default is <context>/Dockerfile; a given path is relative to the Tiltfile.
        df = "" if dockerfile_contents else (
            os.path.join(ctx, "Dockerfile") if dockerfile is None else ev.path(dockerfile))
        if df and not os.path.exists(df):
            raise ValueError(f"Dockerfile {df} does not exist")
        res.images.append(ImageTarget(
            ref=ref, context=ctx, dockerfile=df, dockerfile_contents=str(dockerfile_contents),
            build_args={str(k): str(v) for k, v in (build_args or {}).items()}, target=target,
            live_update=_live_update(ev, live_update, (ctx,)), ignore=_strs(ignore, "ignore"),
            only=_strs(only, "only"), entrypoint=_strs(entrypoint, "entrypoint"),
            container_args=None if container_args is None else _strs(container_args, "args"),
            match_in_env_vars=bool(match_in_env_vars), extra_tag=_strs(extra_tag, "extra_tag"),
            pull=bool(pull), network=network))

    def custom_build(ref: str, command: Any, deps: Any, tag: str = "", disable_push: bool = False,
                     skips_local_docker: bool = False, live_update: Any = None,
                     match_in_env_vars: bool = False, ignore: Any = None, entrypoint: Any = None,
                     command_bat_val: str = "", outputs_image_ref_to: str = "",
                     command_bat: str = "", image_deps: Any = None, env: Any = None,
                     dir: str = "") -> None:
        image_common(ref)
        paths = tuple(ev.path(d) for d in _strs(deps, "deps"))
        res.images.append(ImageTarget(
            ref=ref, context=str(ev.cwd), kind="custom", command=_cmd(command, "command"),
            deps=paths, tag=tag, disable_push=bool(disable_push),
            skips_local_docker=bool(skips_local_docker),
            live_update=_live_update(ev, live_update, paths), ignore=_strs(ignore, "ignore"),
            entrypoint=_strs(entrypoint, "entrypoint"), match_in_env_vars=bool(match_in_env_vars),
            outputs_image_ref_to=ev.path(outputs_image_ref_to) if outputs_image_ref_to else "",
            env={str(k): str(v) for k, v in (env or {}).items()},
            dir=ev.path(dir) if dir else str(ev.cwd)))

    def _docker_build_with_restart(ref: str, context: str, entrypoint: Any, live_update: Any,
                                   base_suffix: str = "-tilt_docker_build_with_restart_base",
                                   restart_file: str = RESTART_FILE, trigger: Any = None,
                                   exit_policy: str = "restart", **kwargs: Any) -> None:
        entry = _cmd(entrypoint, "entrypoint")
        argv = ("sh", "-c", entry) if isinstance(entry, str) else entry
        docker_build(ref, context, live_update=live_update, **kwargs)
        res.images[-1].restart_entrypoint = argv

    def _custom_build_with_restart(ref: str, command: Any, deps: Any, entrypoint: Any,
                                   live_update: Any, **kwargs: Any) -> None:
        raise ValueError("custom_build_with_restart is not supported; use "
                         "docker_build_with_restart or restart in a run() step")

    def local_resource(name: str, cmd: Any = "", deps: Any = None, trigger_mode: Any = None,
                       resource_deps: Any = None, ignore: Any = None, auto_init: bool = True,
                       serve_cmd: Any = "", cmd_bat: Any = "", serve_cmd_bat: Any = "",
                       allow_parallel: bool = False, links: Any = None, labels: Any = None,
                       env: Any = None, serve_env: Any = None, readiness_probe: Any = None,
                       dir: str = "", serve_dir: str = "") -> None:
        if any(r.name == name for r in res.local_resources):
            raise ValueError(f"local_resource named {name!r} already exists")
        if readiness_probe is not None and not isinstance(readiness_probe, Probe):
            raise TypeError("readiness_probe must be made with probe()")
        res.local_resources.append(LocalResource(
            name=name, cmd=_cmd(cmd, "cmd"), deps=tuple(ev.path(d) for d in _strs(deps, "deps")),
            trigger_mode=res.settings.trigger_mode if trigger_mode is None
            else _trigger_mode(trigger_mode),
            resource_deps=_strs(resource_deps, "resource_deps"), ignore=_strs(ignore, "ignore"),
            auto_init=bool(auto_init), serve_cmd=_cmd(serve_cmd, "serve_cmd"),
            allow_parallel=bool(allow_parallel), links=_links(links),
            labels=_strs(labels, "labels"),
            env={str(k): str(v) for k, v in (env or {}).items()},
            serve_env={str(k): str(v) for k, v in (serve_env or {}).items()},
            readiness_probe=readiness_probe, dir=ev.path(dir) if dir else str(ev.cwd),
            serve_dir=ev.path(serve_dir) if serve_dir else str(ev.cwd)))

    def sync(local_path: str, remote_path: str) -> sl.OpaquePythonObject:
        if not str(remote_path).startswith("/"):
            raise ValueError(f"sync remote_path {remote_path!r} must be absolute")
        return sl.OpaquePythonObject(Sync(ev.path(local_path), str(remote_path)))

    def run(cmd: Any, trigger: Any = None, echo_off: bool = False) -> sl.OpaquePythonObject:
        triggers = tuple(ev.path(t) for t in _strs(trigger, "trigger"))
        return sl.OpaquePythonObject(Run(_cmd(cmd, "cmd"), triggers, bool(echo_off)))

    def fall_back_on(files: Any) -> sl.OpaquePythonObject:
        return sl.OpaquePythonObject(FallBackOn(tuple(ev.path(f) for f in _strs(files, "files"))))

    def probe(initial_delay_secs: float = 0, timeout_secs: float = 1, period_secs: float = 10,
              success_threshold: int = 1, failure_threshold: int = 3, exec: Any = None,
              http_get: Any = None, tcp_socket: Any = None) -> sl.OpaquePythonObject:
        actions = [a for a in (exec, http_get, tcp_socket) if a is not None]
        if len(actions) != 1:
            raise ValueError("probe needs exactly one of exec, http_get, tcp_socket")
        base: Probe = actions[0]
        return sl.OpaquePythonObject(Probe(
            base.kind, base.command, base.host, base.port, base.path, float(initial_delay_secs),
            float(timeout_secs), float(period_secs), int(success_threshold),
            int(failure_threshold)))

    def helm(pathToChartDir: str,  # noqa: N803 - Tilt's argument name
             name: str = "", namespace: str = "", values: Any = None, set: Any = None,
             kube_version: str = "", skip_crds: bool = False) -> str:
        chart = ev.path(pathToChartDir)
        ev.watch(pathToChartDir)
        argv = [find_tool("helm"), "template", name or "chart", chart]
        if namespace:
            argv += ["--namespace", namespace]
        for v in _strs(values, "values"):
            ev.watch(v)
            argv += ["--values", ev.path(v)]
        for s in _strs(set, "set"):
            argv += ["--set", s]
        if kube_version:
            argv += ["--kube-version", kube_version]
        argv.append("--skip-crds" if skip_crds else "--include-crds")
        return ev.blob(_run_local(ev, argv, {}, "", None, "helm"))

    def kustomize(pathToDir: str,  # noqa: N803 - Tilt's argument name
                  kustomize_bin: Any = None, flags: Any = None) -> str:
        ev.watch(pathToDir)
        argv = ([kustomize_bin, "build"] if kustomize_bin
                else [find_tool("kubectl"), "kustomize"])
        return ev.blob(_run_local(ev, [*argv, ev.path(pathToDir), *_strs(flags, "flags")],
                                  {}, "", None, "kustomize"))

    def docker_compose(configPaths: Any,  # noqa: N803 - Tilt's argument name
                       env_file: Any = None, project_name: str = "",
                       profiles: Any = None, wait: bool = False) -> None:
        paths = tuple(ev.path(p) for p in _strs(configPaths, "configPaths"))
        services: dict[str, dict[str, Any]] = {}
        for p in paths:
            doc = yaml.safe_load(read_text(p, "docker_compose")) or {}
            for svc, spec in (doc.get("services") or {}).items():
                services.setdefault(svc, {}).update(spec or {})
                services[svc]["_dir"] = os.path.dirname(p)
        if not paths:
            raise ValueError("docker_compose needs at least one file")
        proj = project_name or os.path.basename(os.path.dirname(paths[0]))
        res.compose.append(ComposeProject(paths, str(proj), ev.path(env_file) if env_file else "",
                                          services))

    def dc_resource(name: str, trigger_mode: Any = None, resource_deps: Any = None,
                    links: Any = None, labels: Any = None, auto_init: bool = True,
                    project_name: str = "", new_name: str = "", infer_links: bool = True) -> None:
        res.dc_resources.append(DcResourceOptions(
            name=name, new_name=new_name,
            trigger_mode=None if trigger_mode is None else _trigger_mode(trigger_mode),
            resource_deps=_strs(resource_deps, "resource_deps"), links=_links(links),
            labels=_strs(labels, "labels"), auto_init=bool(auto_init)))

    def default_registry(host: str, host_from_cluster: Any = None, single_name: str = "") -> None:
        res.settings.default_registry = host
        res.settings.registry_from_cluster = host_from_cluster or ""
        res.settings.registry_single_name = single_name

    def read_file(file_path: str, default: Any = None) -> Any:
        try:
            return ev.blob(read_text(file_path, "read_file"))
        except FileNotFoundError:
            if default is None:
                raise
            return ev.blob(str(default))

    def read_structured(loader: Callable[[str], Any], what: str) -> Callable[..., Any]:
        def read(path: str, default: Any = None) -> Any:
            try:
                text = read_text(path, what)
            except FileNotFoundError:
                if default is None:
                    raise
                return default
            try:
                return loader(text)
            except (ValueError, yaml.YAMLError) as exc:
                raise ValueError(f"{what}: {ev.path(path)}: {exc}") from None
        return read

    def decode_yaml_stream(yaml_text: str) -> list[Any]:
        return [d for d in yaml.safe_load_all(str(yaml_text)) if d is not None]

    def encode_yaml_stream(objs: Any) -> str:
        return ev.blob(manifests.dump_yaml_stream(list(objs)))

    def listdir(directory: str, recursive: bool = False) -> list[str]:
        root = ev.path(directory)
        ev.watch(directory)
        if not os.path.isdir(root):
            raise ValueError(f"listdir: {root} is not a directory")
        if not recursive:
            return sorted(os.path.join(root, n) for n in os.listdir(root)
                          if os.path.isfile(os.path.join(root, n)))
        return sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)

    def local(command: Any, quiet: bool = False, command_bat: Any = "", echo_off: bool = False,
              env: Any = None, dir: str = "", stdin: Any = None) -> str:
        out = _run_local(ev, command, {str(k): str(v) for k, v in (env or {}).items()}, dir,
                         None if stdin is None else str(stdin), "local")
        if not quiet:
            res.logs.append(out)
        return ev.blob(out)

    def update_settings(max_parallel_updates: int = 3, k8s_upsert_timeout_secs: int = 30,
                        suppress_unused_image_warnings: Any = None) -> None:
        res.settings.max_parallel_updates = int(max_parallel_updates)
        res.settings.k8s_upsert_timeout_secs = int(k8s_upsert_timeout_secs)

    def ci_settings(k8s_grace_period: str = "", timeout: str = "",
                    readiness_timeout: str = "") -> None:
        if timeout:
            res.settings.ci_timeout_secs = _duration(timeout)
        if readiness_timeout:
            res.settings.readiness_timeout_secs = _duration(readiness_timeout)

    def trigger_mode(trigger_mode: Any) -> None:
        res.settings.trigger_mode = _trigger_mode(trigger_mode)

    def fail(msg: str) -> None:
        raise RuntimeError(f"fail: {msg}")

    def warn(msg: str) -> None:
        res.warnings.append(str(msg))

    def tilt_print(*args: Any, sep: str = " ") -> None:
        res.logs.append(sep.join(str(a) for a in args))

    def _namespace_yaml(name: str, annotations: Any = None, labels: Any = None) -> str:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = dict(s.split("=", 1) for s in _strs(labels, "labels"))
        if annotations:
            meta["annotations"] = dict(s.split("=", 1) for s in _strs(annotations, "annotations"))
        return ev.blob(yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": meta},
                                      sort_keys=False))

    def _namespace_create(name: str, allow_duplicates: bool = False, annotations: Any = None,
                          labels: Any = None) -> None:
        k8s_yaml(_namespace_yaml(name, annotations, labels), allow_duplicates)

    def _namespace_inject(x: str, ns: str) -> str:
        texts = yaml_texts(x)
        objs = [o for src, t in texts for o in manifests.parse_yaml_stream(t, source=src)]
        out = []
        for o in objs:
            o = manifests.set_namespace(o, ns)
            if o.get("kind") not in manifests.CLUSTER_SCOPED_KINDS:
                o["metadata"]["namespace"] = ns
            out.append(o)
        return ev.blob(manifests.dump_yaml_stream(out))

    fns: dict[str, Callable[..., Any]] = {
        "k8s_yaml": k8s_yaml, "k8s_resource": k8s_resource, "docker_build": docker_build,
        "custom_build": custom_build, "local_resource": local_resource, "sync": sync, "run": run,
        "restart_container": lambda: sl.OpaquePythonObject(RestartContainer()),
        "fall_back_on": fall_back_on,
        "initial_sync": lambda: sl.OpaquePythonObject(InitialSync()),
        "include": ev.include,
        "allow_k8s_contexts": lambda contexts: setattr(
            res.settings, "allowed_contexts",
            res.settings.allowed_contexts + _strs(contexts, "contexts")),
        "k8s_context": lambda: ev.kube_context,
        "k8s_namespace": lambda: ev.kube_namespace,
        "local": local, "default_registry": default_registry, "helm": helm,
        "kustomize": kustomize, "docker_compose": docker_compose, "dc_resource": dc_resource,
        "link": lambda url, name=None: sl.OpaquePythonObject(Link(str(url), name or "")),
        "port_forward": lambda local_port, container_port=None, name=None, link_path=None,
        host=None: sl.OpaquePythonObject(PortForward(
            int(local_port), None if container_port is None else int(container_port),
            name or "", link_path or "", host or "127.0.0.1")),
        "probe": probe,
        "exec_action": lambda command: sl.OpaquePythonObject(
            Probe("exec", _strs(command, "command"))),
        "http_get_action": lambda port, host="127.0.0.1", scheme="http", path="/":
        sl.OpaquePythonObject(Probe("http", (), host, int(port), path or "/")),
        "tcp_socket_action": lambda port, host="127.0.0.1": sl.OpaquePythonObject(
            Probe("tcp", (), host, int(port))),
        "trigger_mode": trigger_mode, "read_file": read_file,
        "read_json": read_structured(json.loads, "read_json"),
        "read_yaml": read_structured(yaml.safe_load, "read_yaml"),
        "decode_json": lambda json_text: json.loads(str(json_text)),
        "encode_json": lambda obj: ev.blob(json.dumps(obj, indent=2)),
        "decode_yaml": lambda yaml_text: yaml.safe_load(str(yaml_text)),
        "encode_yaml": lambda obj: ev.blob(yaml.safe_dump(obj, sort_keys=False)),
        "decode_yaml_stream": decode_yaml_stream, "encode_yaml_stream": encode_yaml_stream,
        "blob": lambda contents: ev.blob(str(contents)),
        "listdir": listdir, "watch_file": ev.watch,
        "watch_settings": lambda ignore: setattr(
            res.settings, "watch_ignore", _strs(ignore, "ignore")),
        "version_settings": lambda check_updates=True, constraint="": setattr(
            res.settings, "version_constraint", str(constraint)),
        "update_settings": update_settings, "ci_settings": ci_settings,
        "fail": fail, "warn": warn, "print": tilt_print,
        "_docker_build_with_restart": _docker_build_with_restart,
        "_custom_build_with_restart": _custom_build_with_restart,
        "_namespace_yaml": _namespace_yaml, "_namespace_create": _namespace_create,
        "_namespace_inject": _namespace_inject,
    }
    return fns


def _duration(text: str) -> float:
    """Go-style durations as Tilt takes them: ``90s``, ``5m``, ``1h30m``."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)
