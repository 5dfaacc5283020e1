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

from flotilla.dev.plan.context import link_image_deps
from flotilla.dev.plan.model import TiltfileResult, UIButton
from flotilla.dev.tiltfile.arguments import parse_config_args
from flotilla.dev.tiltfile.builtins import CONSTANTS, Builtins
from flotilla.dev.tiltfile.errors import BuiltinError, TiltfileError, UsageError
from flotilla.dev.tiltfile.extensions import ExtensionResolver
from flotilla.dev.tiltfile.modules import (
    PRELUDE_NAMES,
    RENAME_WORKLOADS,
    ExitTiltfile,
    module_functions,
    prelude,
)
from flotilla.dev.tiltfile.source import (
    LineMap,
    expand_tabs,
    rewrite_while,
    top_level_names,
    unresolved_names,
)

__all__ = ["Evaluator", "TiltfileError", "UsageError", "evaluate"]

_GLOBALS = sl.Globals.extended_by(
    [
        sl.LibraryExtension.StructType,
        sl.LibraryExtension.Json,
        sl.LibraryExtension.Print,
        sl.LibraryExtension.Map,
        sl.LibraryExtension.Filter,
        sl.LibraryExtension.Partial,
    ]
)
_LOCATION = re.compile(r"--> (?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+)")
_FRAME = re.compile(r"^\s*\* (?P<file>[^\n]+?):(?P<line>\d+), in ", re.MULTILINE)
_NOT_FOUND = re.compile(r"Variable `(?P<name>[^`]+)` not found")


@dataclass
class Evaluator:
    """State of one evaluation: what was declared, which files were read, config flags."""

    tiltfile: Path
    args: list[str] = field(default_factory=list)
    kube_context: str = ""
    kube_namespace: str = "default"
    subcommand: str = "up"
    result: TiltfileResult = field(init=False)
    blobs: set[str] = field(default_factory=set)
    config_defs: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    config_parsed: dict[str, Any] | None = None
    config_parse_dir: Path | None = None
    _dirs: list[Path] = field(default_factory=list)
    _loaded: dict[str, sl.FrozenModule] = field(default_factory=dict)
    _included: set[str] = field(default_factory=set)
    _last_error: str = ""
    _last_was_usage: bool = False
    _pending: TiltfileError | None = None
    _builtins: dict[str, Callable[..., Any]] = field(default_factory=dict)
    _line_maps: dict[str, LineMap] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)
    _exit_message: str | None = None
    _dynamic: dict[str, dict[str, Any]] = field(default_factory=dict)
    extensions: ExtensionResolver = field(init=False)

    def __post_init__(self) -> None:
        self.tiltfile = self.tiltfile.resolve()
        self.result = TiltfileResult(
            tiltfile=str(self.tiltfile),
            k8s_context=self.kube_context,
            namespace=self.kube_namespace,
        )
        self._builtins = Builtins(self).functions()
        self._builtins["exit"] = self._exit
        self.extensions = ExtensionResolver(self.tiltfile.parent)

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
        try:
            root = self._exec_file(self.tiltfile)
            try:
                sl.eval(root, sl.parse("<workload names>", RENAME_WORKLOADS, _dialect()), _GLOBALS)
            except sl.StarlarkError as exc:
                raise self._translate(exc, self.tiltfile, "") from None
            try:
                link_image_deps(self.result.images)
            except ValueError as exc:
                raise TiltfileError(str(exc), str(self.tiltfile)) from None
        except ExitTiltfile as stop:  # Tilt: stops without an error, logging the value
            if stop.message:
                self.result.logs.append(stop.message)
        return self.result

    def _module(self) -> sl.Module:
        mod = sl.Module()
        for name, fn in self._builtins.items():
            mod.add_callable(name, self._wrap(name, fn))
        for name, fn in module_functions(self).items():
            mod.add_callable(name, self._wrap(name[1:].replace("_", ".", 1), fn))
        for name in (
            "define_string",
            "define_string_list",
            "define_bool",
            "define_object",
            "parse",
            "set_enabled_resources",
            "clear_enabled_resources",
        ):
            mod.add_callable(
                f"_config_{name}", self._wrap(f"config.{name}", getattr(self, f"_config_{name}"))
            )
        for key, value in CONSTANTS.items():
            mod[key] = value
        mod["_os_environ"] = dict(os.environ)
        sl.eval(mod, sl.parse("<prelude>", prelude(self), _dialect()), _GLOBALS)
        return mod

    # --- what the modules record ------------------------------------------------------------
    def warn_once(self, what: str) -> None:
        """A setting or API object with no meaning here: accepted, and said once."""
        if what not in self._warned:
            self._warned.add(what)
            self.result.warnings.append(f"{what} has no effect in flotilla dev (ignored)")

    def add_button(self, button: UIButton) -> None:
        self.result.buttons = [b for b in self.result.buttons if b.name != button.name]
        self.result.buttons.append(button)

    def add_command(
        self, name: str, args: list[str], dir: str, env: list[str], buttons: list[str]
    ) -> None:
        for b in self.result.buttons:
            if b.name in buttons:
                b.argv, b.dir, b.env = tuple(args), dir, tuple(env)

    def extension_repo(self, name: str, url: str, ref: str) -> None:
        self.extensions.add_repo(name, url, ref)

    def extension(self, name: str, repo_name: str, repo_path: str) -> None:
        self.extensions.add_extension(name, repo_name, repo_path)

    def _exit(self, code: Any = None) -> None:
        raise ExitTiltfile("" if code is None else str(code))

    def _exec_file(self, path: Path) -> sl.Module:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TiltfileError(f"cannot read {path}: {exc.strerror}", str(path)) from exc
        self.result.watched_files.add(str(path))
        self.result.loaded_files.append(str(path))
        return self._exec_text(path, text, path.parent, str(path))

    def _exec_text(self, path: Path, text: str, cwd: Path, name: str) -> sl.Module:
        """Run one file's text with ``cwd`` as its directory; ``name`` is its file in errors."""
        mod = self._module()
        mod["__file__"] = name  # Tilt sets it to the file being run
        source, self._line_maps[name] = rewrite_while(expand_tabs(text))
        self._dirs.append(cwd)
        try:
            ast = sl.parse(name, source, _dialect())
            sl.eval(mod, ast, _GLOBALS, sl.FileLoader(self._loader_for(cwd)))
        except sl.StarlarkError as exc:
            if self._exit_message is not None:
                raise ExitTiltfile(self._exit_message) from None
            raise self._translate(exc, path, text) from None
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

    def load_dynamic(self, path: str) -> dict[str, Any]:
        """``load_dynamic(path)``: run a file once; its top-level values that are data.

        Starlark functions cannot pass through Python, so functions are left out (use ``load``).
        """
        if path.startswith("ext://"):
            found = self.extensions.resolve(path)
            if found is None:
                raise UsageError(f"load_dynamic: {path} is built in; use load() for it")
            target = found
        else:
            target = Path(self.path(path))
        key = f"dynamic:{target}"
        if key in self._dynamic:
            return self._dynamic[key]
        try:
            text = target.read_text()
        except OSError as exc:
            raise UsageError(f"load_dynamic: cannot read {target}: {exc.strerror}") from None
        mod = self._exec_file(target)
        captured: dict[str, Any] = {}
        mod.add_callable("_capture", captured.__setitem__)
        pairs = ", ".join(f"({n!r}, {n})" for n in top_level_names(text))
        snippet = f"[_capture(n, v) for n, v in [{pairs}] if type(v) != 'function']"
        sl.eval(mod, sl.parse("<load_dynamic>", snippet, _dialect()), _GLOBALS)
        self._dynamic[key] = captured
        return captured

    def include(self, path: str) -> None:
        """``include(path)``: evaluate another Tiltfile once, discarding its symbols."""
        target = Path(self.path(path))
        if str(target) in self._included:
            return
        self._included.add(str(target))
        self._exec_file(target)

    def _extension(self, module_id: str) -> sl.FrozenModule:
        if module_id not in self._loaded:
            try:
                tiltfile = self.extensions.resolve(module_id)
            except ValueError as exc:
                self._last_error = f"load: {module_id}: {exc}"
                raise BuiltinError(self._last_error) from None
            if tiltfile is None:  # served built in (restart_process, namespace)
                source, name, cwd = self.extensions.builtin_source(module_id), module_id, self.cwd
                path = self.tiltfile
            else:
                source, name, cwd = tiltfile.read_text(), str(tiltfile), tiltfile.parent
                path = tiltfile
                self.result.loaded_files.append(name)
            try:
                self._loaded[module_id] = self._exec_text(path, source, cwd, name).freeze()
            except TiltfileError as exc:
                self._pending = self._pending or exc
                raise
        return self._loaded[module_id]

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ExitTiltfile as stop:
                self._exit_message = stop.message
                raise BuiltinError(str(stop)) from None
            except TiltfileError as exc:
                if isinstance(exc, UsageError) and not exc.file:  # raised by this built-in
                    self._last_was_usage = True
                    msg = exc.message
                    self._last_error = (
                        msg if msg.startswith(name.split(".")[-1]) else f"{name}: {msg}"
                    )
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

    def _translate(self, exc: sl.StarlarkError, path: Path, text: str) -> TiltfileError:
        if self._pending is not None:
            return self._pending
        msg = str(exc)
        loc = _LOCATION.search(msg)
        file, line = (loc.group("file"), int(loc.group("line"))) if loc else (str(path), 0)
        if file.startswith("<"):  # inside the prelude: blame the Tiltfile's call
            frames = [f for f in _FRAME.findall(msg) if not f[0].startswith("<")]
            if frames:
                file, line = frames[-1][0], int(frames[-1][1])
        lmap = self._line_maps.get(file)
        if lmap is not None and line:
            line = lmap.original(line)
        missing = _NOT_FOUND.search(msg)
        if missing:
            return self._unresolved(missing.group("name"), file, line, text)
        if "TiltfileError:" in msg or self._last_error:
            message = self._last_error or _first_error_line(msg)
        else:
            message = _first_error_line(msg)
        if self._last_was_usage:
            return UsageError(message, file, line)
        return TiltfileError(message, file, line)

    def _unresolved(self, name: str, file: str, line: int, text: str) -> TiltfileError:
        """Every name the file reads that nothing defines, each with its ``FILE:LINE``."""
        known = set(self._builtins) | set(PRELUDE_NAMES) | {"__file__"}
        known |= set(CONSTANTS)
        found = dict(unresolved_names(text, known))
        found.setdefault(name, line)
        lines = [f"{file}:{ln}: unknown built-in or name `{n}`" for n, ln in found.items()]
        lines.sort(key=lambda s: int(s.split(":")[1]))
        head = f"unknown built-in or name `{name}` (flotilla dev does not implement it)"
        if len(found) == 1:
            return TiltfileError(head, file, line)
        return TiltfileError(
            f"{len(found)} unknown built-ins or names (flotilla dev does not implement them):\n"
            + "\n".join(lines),
            file,
            min(found.values()),
        )

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
        """Values from ``tilt_config.json`` beside the Tiltfile, then from the command line.

        As in Tilt, every call must come from one directory (an ``include``d or loaded file
        elsewhere cannot parse): its config flags are relative to that directory.
        """
        here = self.cwd
        if self.config_parse_dir is not None and here != self.config_parse_dir:
            raise BuiltinError(
                "config.parse can only be called from one Tiltfile working directory per run. "
                f"It was called from {self.config_parse_dir} and {here}"
            )
        self.config_parse_dir = here
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


def _dialect() -> sl.Dialect:
    """Tilt's Starlark allows top-level if/for, lambdas, nested defs and recursion."""
    return sl.Dialect.extended()


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
    subcommand: str = "up",
) -> tuple[TiltfileResult, Evaluator]:
    """Evaluate ``tiltfile``; raises ``TiltfileError`` naming the file and line on failure.

    ``subcommand`` is what ``config.tilt_subcommand`` says: ``up``, ``ci`` or ``down``.
    """
    ev = Evaluator(Path(tiltfile), list(args or []), kube_context, kube_namespace, subcommand)
    if not ev.tiltfile.exists():
        raise TiltfileError(f"no Tiltfile at {ev.tiltfile}")
    return ev.run(), ev
