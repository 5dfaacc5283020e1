"""Finding the external programs the dev loop drives (kubectl, helm)."""

from __future__ import annotations

import glob
import os
import shutil


class ToolNotFoundError(RuntimeError):
    """A program the Tiltfile needs is not installed."""


def find_tool(name: str) -> str:
    """``$FLOTILLA_<NAME>``, then ``$PATH``, then the binaries ``flotilla testenv build`` made."""
    override = os.environ.get(f"FLOTILLA_{name.upper()}")
    if override:
        return override
    found = shutil.which(name)
    if found:
        return found
    cache = os.path.expanduser("~/.cache/flotilla")
    for pattern in (f"{cache}/tools/*/{name}", f"{cache}/k8s/*/bin/{name}"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    raise ToolNotFoundError(f"{name} not found: install it or set FLOTILLA_{name.upper()}")


def tool_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the directories of kubectl and helm appended to ``PATH`` when missing there.

    Tiltfiles and extensions (``helm_resource``, ``helm_remote``) run ``helm``/``kubectl`` by name.
    """
    path = env.get("PATH", os.defpath)
    dirs = path.split(os.pathsep)
    for name in ("kubectl", "helm"):
        try:
            found = os.path.dirname(find_tool(name))
        except ToolNotFoundError:
            continue
        if found not in dirs:
            dirs.append(found)
    return {**env, "PATH": os.pathsep.join(dirs)}
