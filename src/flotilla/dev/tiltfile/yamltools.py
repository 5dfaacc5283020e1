"""Tilt built-ins that read, filter and classify Kubernetes YAML, plus git and dynamic loads.

``filter_yaml`` splits YAML as Tilt does (case-insensitive regexps, labels all required);
``k8s_kind``/``k8s_image_json_path`` make a kind a workload with images at given JSON paths;
``workload_to_resource_function`` names resources (the Starlark part lives in the prelude, since a
Starlark function cannot cross into Python: the prelude calls it for each workload id and
hands back the names).
"""

from __future__ import annotations

import os
import re
from typing import Any

from flotilla.core import yamlload
from flotilla.dev.plan import manifests
from flotilla.dev.tiltfile.arguments import strs
from flotilla.dev.tiltfile.errors import UsageError
from flotilla.dev.tiltfile.probes import ProbeBuiltins
from flotilla.dev.tiltfile.registry import builtin


def _regexp(value: Any, what: str) -> re.Pattern[str] | None:
    if value is None or value == "":
        return None
    try:
        return re.compile(str(value), re.IGNORECASE)
    except re.error as exc:
        raise UsageError(f"filter_yaml: bad {what} regexp {value!r}: {exc}") from None


class YamlBuiltins(ProbeBuiltins):
    """YAML streams, filters, custom workload kinds, resource naming, git repos, dynamic loads."""

    @builtin()
    def read_yaml_stream(self, path: str, default: Any = None) -> list[Any]:
        """Objects of a YAML file; given a multi-line Blob, the Blob's own objects.

        A Blob is a string here, so tilt-extensions' ``namespace_inject``, which asks
        ``type(x) == 'blob'`` and otherwise calls ``read_yaml_stream(x)``, hands us the YAML
        itself (``encode_yaml_stream``'s result): read it rather than fail on a path that is YAML.
        """
        if isinstance(path, str) and "\n" in path and path in self.ev.blobs:
            try:
                return [d for d in yamlload.load_all(path) if d is not None]
            except ValueError as exc:
                raise UsageError(f"read_yaml_stream: {exc}") from None
        try:
            text = self._read_text(path, "read_yaml_stream")
        except FileNotFoundError:
            if default is None:
                raise
            return list(default)
        try:
            return [d for d in yamlload.load_all(text) if d is not None]
        except ValueError as exc:
            raise UsageError(f"read_yaml_stream: {self.ev.path(path)}: {exc}") from None

    @builtin()
    def filter_yaml(
        self,
        yaml: Any,
        labels: Any = None,
        name: Any = None,
        namespace: Any = None,
        kind: Any = None,
        api_version: Any = None,
    ) -> tuple[str, str]:
        patterns = {
            "name": _regexp(name, "name"),
            "namespace": _regexp(namespace, "namespace"),
            "kind": _regexp(kind, "kind"),
            "apiVersion": _regexp(api_version, "api_version"),
        }
        want = {str(k): str(v) for k, v in (labels or {}).items()}
        match: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        for source, text in self._yaml_texts(yaml):
            for obj in manifests.parse_yaml_stream(text, source=source):
                meta = obj.get("metadata") or {}
                fields = {
                    "name": str(meta.get("name", "")),
                    "namespace": str(meta.get("namespace") or ""),
                    "kind": str(obj.get("kind", "")),
                    "apiVersion": str(obj.get("apiVersion", "")),
                }
                have = meta.get("labels") or {}
                ok = all(p is None or p.search(fields[k]) for k, p in patterns.items())
                ok = ok and all(str(have.get(k)) == v for k, v in want.items())
                (match if ok else rest).append(obj)
        return (
            self.ev.blob(manifests.dump_yaml_stream(match)) if match else "",
            self.ev.blob(manifests.dump_yaml_stream(rest)) if rest else "",
        )

    @builtin()
    def k8s_kind(
        self,
        kind: str,
        api_version: Any = None,
        *,
        image_json_path: Any = None,
        image_object_json_path: Any = None,
        pod_readiness: str = "",
    ) -> None:
        if not kind:
            raise UsageError("k8s_kind needs a kind")
        self.res.kind_rules.append(
            (str(kind), str(api_version or ""), strs(image_json_path, "image_json_path"))
        )

    @builtin()
    def k8s_image_json_path(
        self, paths: Any, api_version: str = "", kind: str = "", name: str = "", namespace: str = ""
    ) -> None:
        if not kind:
            raise UsageError("k8s_image_json_path needs kind= (names and namespaces are not kept)")
        self.res.kind_rules.append((str(kind), str(api_version), strs(paths, "paths")))

    @builtin("_workload_ids")
    def workload_ids(self) -> list[dict[str, str]]:
        """The workloads declared so far, as ``K8sObjectID`` fields (for the prelude)."""
        kinds = {k for k, _, _ in self.res.kind_rules}
        out = []
        for o in self.res.k8s_objects:
            if manifests.is_workload(o) or o.get("kind") in kinds:
                meta = o.get("metadata") or {}
                api = str(o.get("apiVersion", ""))
                out.append(
                    {
                        "id": manifests.object_id(o),
                        "name": str(meta.get("name", "")),
                        "kind": str(o.get("kind", "")),
                        "namespace": str(meta.get("namespace") or ""),
                        "group": api.split("/")[0] if "/" in api else "",
                    }
                )
        return out

    @builtin("_set_workload_name")
    def set_workload_name(self, object_id: str, name: Any) -> None:
        if not isinstance(name, str) or not name:
            raise UsageError("workload_to_resource_function: the function must return a name")
        self.res.workload_names[object_id] = name

    @builtin("_local_git_repo")
    def local_git_repo_root(self, path: str) -> str:
        root = self.ev.path(path)
        if not os.path.exists(os.path.join(root, ".git")):
            raise UsageError(f"local_git_repo: {root} is not a git repository (no .git)")
        return root

    @builtin()
    def load_dynamic(self, path: str) -> dict[str, Any]:
        return self.ev.load_dynamic(str(path))
