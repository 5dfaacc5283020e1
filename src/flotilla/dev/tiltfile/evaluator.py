"""Evaluate a Tiltfile with a real Starlark interpreter (starlark-pyo3) into a ``TiltfileResult``.

Built-ins are plain Python functions with Tilt's argument names and defaults (see ``builtins.py``);
this module runs files, resolves ``load``/``include``, provides the ``os`` and ``config`` modules
and turns every failure into a ``TiltfileError`` that names the file and line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark as sl

from flotilla.dev.plan.model import TiltfileResult
from flotilla.dev.tiltfile.arguments import parse_config_args
from flotilla.dev.tiltfile.builtins import CONSTANTS, EXTENSIONS, Builtins
from flotilla.dev.tiltfile.errors import BuiltinError, TiltfileError, UsageError

__all__ = ["Evaluator", "TiltfileError", "UsageError", "evaluate"]

_GLOBALS = sl.Globals.extended_by([
    sl.LibraryExtension.StructType, sl.LibraryExtension.Json, sl.LibraryExtension.Print,
    sl.LibraryExtension.Map, sl.LibraryExtension.Filter, sl.LibraryExtension.Partial,
])
_LOCATION = re.compile(r"--> (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)")
_NOT_FOUND = re.compile(r"Variable `(?P<name>[^`]+)` not found")


@dataclass
class Evaluator:
    """State of one evaluation: what was declared, which files were read, config flags."""

    tiltfile: Path
    args: list[str] = field(default_factory=list)
    kube_context: str = ""
    kube_namespace: str = "default"
    result: TiltfileResult = field(init=False)
    blobs: set[str] = field(default_factory=set)
    config_defs: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    config_parsed: dict[str, Any] | None = None
    _dirs: list[Path] = field(default_factory=list)
    _loaded: dict[str, sl.FrozenModule] = field(default_factory=dict)
    _included: set[str] = field(default_factory=set)
    _last_error: str = ""
    _last_was_usage: bool = False
    _pending: TiltfileError | None = None
    _builtins: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tiltfile = self.tiltfile.resolve()
        self.result = TiltfileResult(tiltfile=str(self.tiltfile), k8s_context=self.kube_context,
                                     namespace=self.kube_namespace)
        self._builtins = Builtins(self).functions()

    # --- paths -----------------------------------------------------------------------------
    @property
    def cwd(self) -> Path:
        """Directory of the file being evaluated: relative paths resolve against it."""
        return self._dirs[-1] if self._dirs else self.tiltfile.parent

    def path(self, p: str) -> str:
        """Absolute, normalised form of a path given in a Tiltfile."""
        return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(str(p))))

    def watch(self, p: str) -> None:
        self.result.watched_files.add(self.path(p))

    def blob(self, text: str) -> str:
        """Mark ``text`` as a Blob (file contents / command output), not a path."""
        self.blobs.add(text)
        return text

    # --- running files ---------------------------------------------------------------------
    def run(self) -> TiltfileResult:
        self._exec_file(self.tiltfile)
        return self.result

    def _module(self) -> sl.Module:
        mod = sl.Module()
        for name, fn in self._builtins.items():
            mod.add_callable(name, self._wrap(name, fn))
        mod.add_callable("_os_getenv", self._wrap("os.getenv", _getenv))
        mod.add_callable("_os_exists", self._wrap("os.path.exists",
                                                  lambda p: os.path.exists(self.path(p))))
        mod.add_callable("_os_abspath", self._wrap("os.path.abspath", self.path))
        mod.add_callable("_os_join", os.path.join)
        mod.add_callable("_os_basename", os.path.basename)
        mod.add_callable("_os_dirname", os.path.dirname)
        mod.add_callable("_os_getcwd", lambda: str(self.cwd))
        mod.add_callable("_os_putenv", self._wrap("os.putenv", _putenv))
        mod.add_callable("_os_realpath", self._wrap("os.path.realpath",
                                                    lambda p: os.path.realpath(self.path(p))))
        mod.add_callable("_os_relpath", lambda p, start=None: os.path.relpath(
            self.path(p), self.path(start) if start else str(self.cwd)))
        for name in ("define_string", "define_string_list", "define_bool", "define_object",
                     "parse", "set_enabled_resources", "clear_enabled_resources"):
            mod.add_callable(f"_config_{name}",
                             self._wrap(f"config.{name}", getattr(self, f"_config_{name}")))
        for key, value in CONSTANTS.items():
            mod[key] = value
        mod["_os_environ"] = dict(os.environ)
        mod["_os_name"] = "posix"
        mod["_os_sep"] = os.sep
        sl.eval(mod, sl.parse("<prelude>", _PRELUDE, _dialect()), _GLOBALS)
        return mod

    def _exec_file(self, path: Path) -> sl.Module:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TiltfileError(f"cannot read {path}: {exc.strerror}", str(path)) from exc
        self.result.watched_files.add(str(path))
        self.result.loaded_files.append(str(path))
        mod = self._module()
        self._dirs.append(path.parent)
        try:
            ast = sl.parse(str(path), text, _dialect())
            sl.eval(mod, ast, _GLOBALS, sl.FileLoader(self._loader_for(path.parent)))
        except sl.StarlarkError as exc:
            raise self._translate(exc, path) from None
        finally:
            self._dirs.pop()
        return mod

    def _loader_for(self, base: Path) -> Callable[[str], sl.FrozenModule]:
        def load(module_id: str) -> sl.FrozenModule:
            if module_id.startswith("ext://"):
                return self._extension(module_id)
            target = (base / module_id).resolve()
            key = str(target)
            try:
                if key not in self._loaded:
                    self._loaded[key] = self._exec_file(target).freeze()
            except TiltfileError as exc:
                self._pending = self._pending or exc
                raise
            return self._loaded[key]
        return load

    def include(self, path: str) -> None:
        """``include(path)``: evaluate another Tiltfile once, discarding its symbols."""
        target = Path(self.path(path))
        if str(target) in self._included:
            return
        self._included.add(str(target))
        self._exec_file(target)

    def _extension(self, module_id: str) -> sl.FrozenModule:
        name = module_id.removeprefix("ext://")
        source = EXTENSIONS.get(name)
        if source is None:
            known = ", ".join("ext://" + n for n in sorted(EXTENSIONS))
            self._last_error = f"load: extension {module_id} is not built in (built in: {known})"
            raise BuiltinError(self._last_error)
        key = module_id
        if key not in self._loaded:
            mod = self._module()
            sl.eval(mod, sl.parse(module_id, source, _dialect()), _GLOBALS)
            self._loaded[key] = mod.freeze()
        return self._loaded[key]

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except TiltfileError as exc:
                if isinstance(exc, UsageError) and not exc.file:  # raised by this built-in
                    self._last_was_usage = True
                    msg = exc.message
                    self._last_error = (msg if msg.startswith(name.split(".")[-1])
                                        else f"{name}: {msg}")
                    raise BuiltinError(self._last_error) from None
                self._pending = self._pending or exc  # from an included file: already located
                raise BuiltinError(str(exc)) from None
            except TypeError as exc:
                self._last_was_usage = True
                self._last_error = f"{name}: {_type_error(exc)}"
                raise BuiltinError(self._last_error) from None
            except Exception as exc:
                self._last_was_usage = True
                msg = str(exc)
                self._last_error = msg if msg.startswith(name.split(".")[-1]) else f"{name}: {msg}"
                raise BuiltinError(self._last_error) from None
        return call

    def _translate(self, exc: sl.StarlarkError, path: Path) -> TiltfileError:
        if self._pending is not None:
            return self._pending
        text = str(exc)
        loc = _LOCATION.search(text)
        file, line = (loc.group("file"), int(loc.group("line"))) if loc else (str(path), 0)
        missing = _NOT_FOUND.search(text)
        if missing:
            message = (f"unknown built-in or name `{missing.group('name')}` "
                       "(flotilla dev does not implement it)")
        elif "TiltfileError:" in text or self._last_error:
            message = self._last_error or _first_error_line(text)
        else:
            message = _first_error_line(text)
        if self._last_was_usage and not missing:
            return UsageError(message, file, line)
        return TiltfileError(message, file, line)

    # --- config ----------------------------------------------------------------------------
    def _config_define_string(self, name: str, args: bool = False, usage: str = "") -> None:
        self.config_defs[name] = ("string", args, usage)

    def _config_define_string_list(self, name: str, args: bool = False, usage: str = "") -> None:
        self.config_defs[name] = ("string_list", args, usage)

    def _config_define_bool(self, name: str, args: bool = False, usage: str = "") -> None:
        self.config_defs[name] = ("bool", args, usage)

    def _config_define_object(self, name: str, args: bool = False, usage: str = "") -> None:
        self.config_defs[name] = ("object", args, usage)

    def _config_set_enabled_resources(self, resources: list[str]) -> None:
        self.result.enabled_resources = [str(r) for r in resources]

    def _config_clear_enabled_resources(self) -> None:
        self.result.enabled_resources = []

    def _config_parse(self) -> dict[str, Any]:
        """Values from ``tilt_config.json`` beside the Tiltfile, then from the command line."""
        if self.config_parsed is not None:
            return self.config_parsed
        values: dict[str, Any] = {}
        cfg = self.tiltfile.parent / "tilt_config.json"
        if cfg.exists():
            self.result.watched_files.add(str(cfg))
            try:
                loaded = json.loads(cfg.read_text())
            except ValueError as exc:
                raise BuiltinError(f"{cfg}: invalid JSON: {exc}") from exc
            for key, value in loaded.items():
                if key not in self.config_defs:
                    raise BuiltinError(f"{cfg}: unknown setting {key!r}")
                values[key] = value
        values.update(parse_config_args(self.config_defs, self.args))
        self.config_parsed = values
        return values


_PRELUDE = """
os = struct(
    getenv=_os_getenv, putenv=_os_putenv, getcwd=_os_getcwd, environ=_os_environ, name=_os_name,
    path=struct(exists=_os_exists, abspath=_os_abspath, join=_os_join, basename=_os_basename,
                dirname=_os_dirname, realpath=_os_realpath, relpath=_os_relpath, sep=_os_sep),
)
config = struct(
    define_string=_config_define_string, define_string_list=_config_define_string_list,
    define_bool=_config_define_bool, define_object=_config_define_object, parse=_config_parse,
    set_enabled_resources=_config_set_enabled_resources,
    clear_enabled_resources=_config_clear_enabled_resources,
    tilt_subcommand="up",
)
"""


def _dialect() -> sl.Dialect:
    """Tilt's Starlark allows top-level if/for, lambdas, nested defs and recursion."""
    return sl.Dialect.extended()


def _getenv(key: str, default: Any = None) -> Any:
    return os.environ.get(key, default)


def _putenv(key: str, value: str) -> None:
    os.environ[key] = value


def _type_error(exc: TypeError) -> str:
    msg = str(exc)
    return re.sub(r"^\S*?\(\)\s*", "", msg) or msg


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("error: "):
            return line.removeprefix("error: ").removeprefix("BuiltinError: ")
    return text.strip().splitlines()[-1] if text.strip() else "evaluation failed"


def evaluate(
    tiltfile: Path | str,
    *,
    args: list[str] | None = None,
    kube_context: str = "",
    kube_namespace: str = "default",
) -> tuple[TiltfileResult, Evaluator]:
    """Evaluate ``tiltfile``; raises ``TiltfileError`` naming the file and line on failure."""
    ev = Evaluator(Path(tiltfile), list(args or []), kube_context, kube_namespace)
    if not ev.tiltfile.exists():
        raise TiltfileError(f"no Tiltfile at {ev.tiltfile}")
    return ev.run(), ev
