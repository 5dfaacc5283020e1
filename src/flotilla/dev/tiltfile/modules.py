"""The modules a Tiltfile sees besides built-ins: ``os``, ``config``, ``shlex``, ``sys``,
``v1alpha1`` (and ``set``, ``local_git_repo``, ``workload_to_resource_function``).

Each module is a Starlark ``struct`` built by the prelude below from Python callables named
``_<module>_<function>``; ``module_functions`` provides those callables for one evaluation. The
prelude also defines ``set()`` (starlark-rust has no set type): a list without duplicates, so
``in``, ``len``, iteration and ``sorted`` behave as on Tilt's set.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, Protocol

from flotilla.dev.plan.model import UIButton

# Every ``v1alpha1`` object kind Tilt's Tiltfile API can declare; the ones flotilla acts on are
# implemented below, the rest are accepted with a warning (Tilt's API server has no twin here).
V1ALPHA1_KINDS = (
    "cmd", "config_map", "extension", "extension_repo", "file_watch", "kubernetes_apply",
    "kubernetes_discovery", "ui_button", "ui_input_spec", "ui_text_input_spec",
    "ui_bool_input_spec", "ui_choice_input_spec", "ui_hidden_input_spec", "start_on_spec",
    "restart_on_spec", "probe", "handler", "exec_action", "http_get_action", "tcp_socket_action",
    "ignore_def", "label_selector", "port_forward_template", "object_selector",
    "container_selector", "kubernetes_image_locator", "kubernetes_image_object_descriptor",
    "kubernetes_watch_ref", "pod_log_stream_template_spec", "session", "ui_component_location",
    "docker_image", "cmd_image", "image_map", "live_update", "cluster", "toggle_button",
    "docker_compose_service", "port_forward",
)  # fmt: skip
_SPEC_KINDS = {k for k in V1ALPHA1_KINDS if k.endswith("_spec") or k.endswith("_action")} | {
    "probe",
    "handler",
    "ignore_def",
    "label_selector",
    "object_selector",
    "container_selector",
    "ui_component_location",
}


# Names the prelude defines in every module, besides the built-ins.
PRELUDE_NAMES = frozenset(
    {"os", "config", "shlex", "sys", "v1alpha1", "set", "local_git_repo",
     "workload_to_resource_function"}
)  # fmt: skip
RENAME_WORKLOADS = "[_name_workloads(f) for f in _workload_fns]"
"""Run in the main Tiltfile's module after it ran: names workloads declared after the call."""


class ModuleScope(Protocol):
    """What the modules need of the evaluator."""

    @property
    def cwd(self) -> Any: ...
    @property
    def tiltfile(self) -> Any: ...
    @property
    def subcommand(self) -> str: ...
    def path(self, p: str) -> str: ...
    def warn_once(self, what: str) -> None: ...
    def add_button(self, button: UIButton) -> None: ...
    def add_command(
        self, name: str, args: list[str], dir: str, env: list[str], buttons: list[str]
    ) -> None: ...
    def extension_repo(self, name: str, url: str, ref: str) -> None: ...
    def extension(self, name: str, repo_name: str, repo_path: str) -> None: ...


def _getenv(key: str, default: Any = None) -> Any:
    return os.environ.get(key, default)


def _putenv(key: str, value: str) -> None:
    os.environ[str(key)] = str(value)


def _unsetenv(key: str) -> None:
    os.environ.pop(str(key), None)


def module_functions(scope: ModuleScope) -> dict[str, Callable[..., Any]]:
    """``_<module>_<name>`` → the Python callable behind ``<module>.<name>`` in a Tiltfile."""
    fns: dict[str, Callable[..., Any]] = {
        "_os_getenv": _getenv,
        "_os_putenv": _putenv,
        "_os_unsetenv": _unsetenv,
        "_os_getcwd": lambda: str(scope.cwd),
        "_os_exists": lambda p: os.path.exists(scope.path(p)),
        "_os_abspath": scope.path,
        "_os_join": os.path.join,
        "_os_basename": os.path.basename,
        "_os_dirname": os.path.dirname,
        "_os_isdir": lambda p: os.path.isdir(scope.path(p)),
        "_os_isfile": lambda p: os.path.isfile(scope.path(p)),
        "_os_realpath": lambda p: os.path.realpath(scope.path(p)),
        "_os_relpath": lambda p, start=None: os.path.relpath(
            scope.path(p), scope.path(start) if start else str(scope.cwd)
        ),
        "_shlex_quote": lambda s: shlex.quote(str(s)),
        "_shlex_split": lambda s: shlex.split(str(s)),
        "_shlex_join": lambda args: shlex.join([str(a) for a in args]),
        "_sys_exit": _sys_exit,
    }
    for kind in V1ALPHA1_KINDS:
        fns[f"_v1alpha1_{kind}"] = _v1alpha1(scope, kind)
    return fns


class ExitTiltfile(Exception):  # noqa: N818 - a requested stop, not an error
    """``exit(code)`` / ``sys.exit(code)``: stop evaluating, keeping what was declared so far."""

    def __init__(self, message: str) -> None:
        super().__init__(f"exit({message})")
        self.message = message


def _sys_exit(code: Any = None) -> None:
    raise ExitTiltfile("" if code is None else str(code))


def _v1alpha1(scope: ModuleScope, kind: str) -> Callable[..., Any]:
    def call(name: str = "", **kwargs: Any) -> Any:
        if kind in _SPEC_KINDS:
            return {"name": name, **kwargs} if name else dict(kwargs)
        if kind == "extension_repo":
            scope.extension_repo(name, str(kwargs.get("url", "")), str(kwargs.get("ref", "")))
        elif kind == "extension":
            scope.extension(
                name, str(kwargs.get("repo_name", "")), str(kwargs.get("repo_path", ""))
            )
        elif kind == "ui_button":
            loc = kwargs.get("location") or {}
            scope.add_button(
                UIButton(
                    name=name,
                    text=str(kwargs.get("text") or name),
                    location=str(loc.get("component_type", "")),
                    resource=str(loc.get("component_id", "")),
                    icon=str(kwargs.get("icon_name") or ""),
                    disabled=bool(kwargs.get("disabled", False)),
                    requires_confirmation=bool(kwargs.get("requires_confirmation", False)),
                )
            )
        elif kind == "cmd":
            start_on = kwargs.get("start_on") or {}
            scope.add_command(
                name,
                [str(a) for a in kwargs.get("args") or []],
                scope.path(str(kwargs.get("dir") or ".")),
                [str(e) for e in kwargs.get("env") or []],
                [str(b) for b in start_on.get("ui_buttons") or []],
            )
        else:
            scope.warn_once(f"v1alpha1.{kind}")
        return None

    return call


def prelude(scope: ModuleScope) -> str:
    """Starlark source that builds the module structs from the ``_``-prefixed callables."""
    v1 = ", ".join(f"{k}=_v1alpha1_{k}" for k in V1ALPHA1_KINDS)
    main = str(scope.tiltfile)
    return f"""
os = struct(
    getenv=_os_getenv, putenv=_os_putenv, unsetenv=_os_unsetenv, getcwd=_os_getcwd,
    environ=_os_environ, name="posix",
    path=struct(exists=_os_exists, abspath=_os_abspath, join=_os_join, basename=_os_basename,
                dirname=_os_dirname, realpath=_os_realpath, relpath=_os_relpath, sep="/",
                isdir=_os_isdir, isfile=_os_isfile),
)
config = struct(
    define_string=_config_define_string, define_string_list=_config_define_string_list,
    define_bool=_config_define_bool, define_object=_config_define_object, parse=_config_parse,
    set_enabled_resources=_config_set_enabled_resources,
    clear_enabled_resources=_config_clear_enabled_resources,
    tilt_subcommand={scope.subcommand!r}, main_path={main!r}, main_dir={os.path.dirname(main)!r},
)
shlex = struct(quote=_shlex_quote, split=_shlex_split, join=_shlex_join)
sys = struct(argv=[{sys.argv[0]!r}], executable={sys.executable!r}, exit=_sys_exit)
v1alpha1 = struct({v1})

def local_git_repo(path):
    root = _local_git_repo(path)
    return struct(paths=lambda p: _os_join(root, p))

_workload_fns = []

def _name_workloads(fn):
    for id in _workload_ids():
        obj = struct(name=id["name"], kind=id["kind"], namespace=id["namespace"], group=id["group"])
        _set_workload_name(id["id"], fn(obj))

def workload_to_resource_function(fn):
    _workload_fns.append(fn)
    _name_workloads(fn)

def set(iterable=[]):
    out = []
    for item in iterable:
        if item not in out:
            out.append(item)
    return out
"""
