"""Tilt built-ins that read files and data, settings, messages, and the namespace extension.

The base of :class:`~flotilla.dev.tiltfile.builtins.Builtins`: it holds the evaluation's scope
and the file helpers every built-in shares. Split from ``builtins`` only to keep each module
short; the methods register through ``@builtin`` exactly as the others do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from flotilla.core import yamlload
from flotilla.dev.plan import manifests
from flotilla.dev.tiltfile.arguments import strs
from flotilla.dev.tiltfile.errors import UsageError
from flotilla.dev.tiltfile.registry import Scope, builtin


class FileBuiltins:
    """Files, data formats, settings and messages: the built-ins that declare nothing to run."""

    def __init__(self, scope: Scope) -> None:
        self.ev = scope
        self.res = scope.result

    def _read_text(self, path: str, what: str) -> str:
        full = self.ev.path(path)
        self.ev.watch(path)
        try:
            return Path(full).read_text()
        except OSError as exc:
            raise FileNotFoundError(f"{what}: cannot read {full}: {exc.strerror}") from None

    def _read_structured(
        self, path: str, default: Any, loader: Callable[[str], Any], what: str
    ) -> Any:
        try:
            text = self._read_text(path, what)
        except FileNotFoundError:
            if default is None:
                raise
            return default
        try:
            return loader(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise UsageError(f"{what}: {self.ev.path(path)}: {exc}") from None

    def _yaml_texts(self, value: Any) -> list[tuple[str, str]]:
        items = value if isinstance(value, list | tuple) else [value]
        out: list[tuple[str, str]] = []
        for item in items:
            if not isinstance(item, str):
                raise UsageError(f"expected a path or Blob, got {type(item).__name__}")
            if item in self.ev.blobs or ("\n" in item and "kind:" in item):
                out.append(("<blob>", item))
            else:
                out.append((self.ev.path(item), self._read_text(item, "k8s_yaml")))
        return out

    @builtin()
    def include(self, path: str) -> None:
        self.ev.include(path)

    @builtin()
    def watch_file(self, file_path: str) -> None:
        self.ev.watch(file_path)

    @builtin()
    def read_file(self, file_path: str, default: Any = None) -> Any:
        try:
            return self.ev.blob(self._read_text(file_path, "read_file"))
        except FileNotFoundError:
            if default is None:
                raise
            return self.ev.blob(str(default))

    @builtin()
    def read_json(self, path: str, default: Any = None) -> Any:
        return self._read_structured(path, default, json.loads, "read_json")

    @builtin()
    def read_yaml(self, path: str, default: Any = None) -> Any:
        return self._read_structured(path, default, yamlload.load, "read_yaml")

    @builtin()
    def decode_json(self, json_text: Any) -> Any:
        return json.loads(str(json_text))

    @builtin()
    def encode_json(self, obj: Any) -> str:
        return self.ev.blob(json.dumps(obj, indent=2))

    @builtin()
    def decode_yaml(self, yaml_text: Any) -> Any:
        return yamlload.load(str(yaml_text))

    @builtin()
    def encode_yaml(self, obj: Any) -> str:
        return self.ev.blob(yaml.safe_dump(obj, sort_keys=False))

    @builtin()
    def decode_yaml_stream(self, yaml_text: str) -> list[Any]:
        return [d for d in yamlload.load_all(str(yaml_text)) if d is not None]

    @builtin()
    def encode_yaml_stream(self, objs: Any) -> str:
        return self.ev.blob(manifests.dump_yaml_stream(list(objs)))

    @builtin()
    def blob(self, contents: Any) -> str:
        return self.ev.blob(str(contents))

    @builtin()
    def listdir(self, directory: str, recursive: bool = False) -> list[str]:
        root = self.ev.path(directory)
        self.ev.watch(directory)
        if not os.path.isdir(root):
            raise UsageError(f"listdir: {root} is not a directory")
        if not recursive:
            return sorted(
                os.path.join(root, n)
                for n in os.listdir(root)
                if os.path.isfile(os.path.join(root, n))
            )
        return sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)

    # --- ext://namespace -------------------------------------------------------------------
    @builtin("_namespace_yaml")
    def namespace_yaml(self, name: str, annotations: Any = None, labels: Any = None) -> str:
        meta: dict[str, Any] = {"name": name}
        if annotations:
            meta["annotations"] = _key_values(strs(annotations, "annotations"), "annotations")
        if labels:
            meta["labels"] = _key_values(strs(labels, "labels"), "labels")
        return self.ev.blob(
            yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}, sort_keys=False
            )
        )


def _key_values(items: tuple[str, ...] | list[str], what: str) -> dict[str, str]:
    """tilt-extensions' namespace writes each item as a YAML line under the key: ``'k: v'``.

    Anything else (``'k=v'``) makes Tilt fail to decode the Namespace; say so on its line.
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            raise UsageError(f"namespace_yaml: {what} entry {item!r} is not 'key: value'")
        out[key.strip()] = value.strip().strip("'\"")
    return out
