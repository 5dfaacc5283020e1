"""``load('ext://NAME', ...)``: find an extension's Tiltfile in an extension repository.

As in Tilt, an extension is ``<repo>/<NAME>/Tiltfile``; the repository is the one a
``v1alpha1.extension(name, repo_name, repo_path)`` names, else the default one,
tilt-dev/tilt-extensions. A ``file://`` URL is a local directory, used in place; any other URL
is cloned with git into ``~/.cache/flotilla/dev/extensions`` once (``ref`` checked out when given).
``$FLOTILLA_DEV_EXTENSIONS`` names a local directory that replaces the default repository, so
extensions load offline.

``restart_process`` and ``namespace`` are also built in (no network, no helper image from Docker
Hub): those two are served built in unless the default repository was replaced (the variable, or
``v1alpha1.extension_repo(name='default', ...)``) or ``v1alpha1.extension`` names them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_REPO = "default"
DEFAULT_URL = "https://github.com/tilt-dev/tilt-extensions"
ENV_DIR = "FLOTILLA_DEV_EXTENSIONS"
CACHE_ENV = "FLOTILLA_DEV_EXTENSIONS_CACHE"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_CLONE_TIMEOUT_S = 180

# Thin aliases of built-ins that stand in for two extensions when nothing replaces them.
BUILTIN_EXTENSIONS: dict[str, str] = {
    "restart_process": (
        "docker_build_with_restart = _docker_build_with_restart\n"
        "custom_build_with_restart = _custom_build_with_restart\n"
    ),
    "namespace": (
        "namespace_yaml = _namespace_yaml\nnamespace_create = _namespace_create\n"
        "namespace_inject = _namespace_inject\n"
    ),
}


@dataclass
class ExtensionResolver:
    """The extension repositories and extensions one evaluation knows."""

    base_dir: Path
    repos: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (url, ref)
    extensions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (repo, path)
    _dirs: dict[str, Path] = field(default_factory=dict)

    def add_repo(self, name: str, url: str, ref: str = "") -> None:
        if not name or not url:
            raise ValueError("extension_repo needs a name and a url")
        self.repos[name] = (url, ref)
        self._dirs.pop(name, None)

    def add_extension(self, name: str, repo_name: str, repo_path: str = "") -> None:
        if not name or not repo_name:
            raise ValueError("extension needs a name and a repo_name")
        self.extensions[name] = (repo_name, repo_path or name)

    def _default_replaced(self) -> bool:
        return bool(os.environ.get(ENV_DIR)) or DEFAULT_REPO in self.repos

    def builtin_source(self, module_id: str) -> str:
        return BUILTIN_EXTENSIONS[module_id.removeprefix("ext://")]

    def resolve(self, module_id: str) -> Path | None:
        """The extension's Tiltfile, or None when it is served built in; ValueError if absent."""
        name = module_id.removeprefix("ext://")
        if not _NAME.match(name) or ".." in name.split("/"):
            raise ValueError(f"invalid extension name {module_id!r}")
        if name in self.extensions:
            repo, sub = self.extensions[name]
        elif name in BUILTIN_EXTENSIONS and not self._default_replaced():
            return None
        else:
            repo, sub = DEFAULT_REPO, name
        root = self.repo_dir(repo)
        tiltfile = (root / sub / "Tiltfile").resolve()
        if not tiltfile.is_relative_to(root.resolve()):
            raise ValueError(f"extension {module_id} lies outside its repository")
        if not tiltfile.is_file():
            raise ValueError(f"extension {module_id}: no {sub}/Tiltfile in repository {repo!r}")
        return tiltfile

    def repo_dir(self, repo: str) -> Path:
        """The local directory of extension repository ``repo``, cloned on first use."""
        if repo in self._dirs:
            return self._dirs[repo]
        if repo == DEFAULT_REPO and repo not in self.repos and os.environ.get(ENV_DIR):
            path = Path(os.path.expanduser(os.environ[ENV_DIR]))
            if not path.is_dir():
                raise ValueError(f"${ENV_DIR}={path} is not a directory")
            self._dirs[repo] = path
            return path
        if repo not in self.repos and repo != DEFAULT_REPO:
            raise ValueError(
                f"unknown extension repository {repo!r} (declare it with v1alpha1.extension_repo)"
            )
        url, ref = self.repos.get(repo, (DEFAULT_URL, ""))
        path = local_repo(url, ref, self.base_dir)
        self._dirs[repo] = path
        return path


def cache_dir() -> Path:
    return Path(
        os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flotilla" / "dev" / "extensions"
    )


def local_repo(url: str, ref: str, base_dir: Path) -> Path:
    """A ``file://`` URL's directory, or the cached git clone of ``url`` at ``ref``.

    A ``file://`` URL with a ``ref`` names a git repository: it is cloned and checked out too.
    """
    if url.startswith("file://"):
        path = Path(url.removeprefix("file://"))
        path = path if path.is_absolute() else base_dir / path
        if not path.is_dir():
            raise ValueError(f"extension repository {url}: no such directory")
        if not ref:
            return path
        url = str(path)
    elif not re.match(r"^(https?|git|ssh)://|^git@", url):
        raise ValueError(f"extension repository URL {url!r}: use https://, git:// or file://")
    key = hashlib.sha256(f"{url}@{ref}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", url.rstrip("/").split("/")[-1])
    # under a `tilt_modules` directory, as Tilt keeps its clones: extensions such as helm_remote
    # and git_resource walk up from their own directory to the one holding `tilt_modules`
    dest = cache_dir() / "tilt_modules" / f"{slug}-{key}"
    if (dest / ".git").is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    argv = ["git", "clone", "--quiet", *([] if ref else ["--depth", "1"]), url, str(tmp)]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        _git(argv, env)
        if ref:
            _git(["git", "-C", str(tmp), "checkout", "--quiet", ref], env)
        tmp.rename(dest)
    except ValueError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(
            f"cannot fetch extension repository {url}: {exc} (offline? set ${ENV_DIR} to a "
            "local copy of the extensions)"
        ) from None
    return dest


def _git(argv: list[str], env: dict[str, str]) -> None:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=_CLONE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(str(exc)) from None
    if proc.returncode != 0:
        raise ValueError((proc.stderr or proc.stdout).strip()[-400:] or f"exit {proc.returncode}")
