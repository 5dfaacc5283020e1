"""Git adapter for the pages branch: fetch it (or start an orphan), commit, push.

Nothing here decides what to publish; :mod:`flotilla.charts.publishing` does. A push rejected
because someone else pushed first is reported as ``False`` so the caller can fetch, re-merge and
retry; any other git failure raises :class:`GitError` with git's message.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from flotilla.charts.errors import GitError

logger = logging.getLogger(__name__)

_REMOTE_REF = "refs/flotilla/pages"
_REJECTED = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "failed to update ref",
    "cannot lock ref",
    "stale info",
    "[remote rejected]",
)


_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def redact(text: str) -> str:
    """Hide ``user:token@`` in URLs, so a failing push never prints a secret to CI logs."""
    return _CREDENTIALS.sub(r"\1***@", text)


def normalize_remote(remote: str) -> str:
    """Local paths become absolute (git runs in a temporary directory); URLs are left alone."""
    if "://" in remote or remote.startswith("git@"):
        return remote
    path = Path(remote).expanduser()
    if not path.exists():
        raise GitError(f"repository {remote} does not exist")
    return str(path.resolve())


class PagesCheckout:
    """A private working tree of ``branch`` from ``remote``, in ``workdir``."""

    def __init__(self, remote: str, branch: str, workdir: Path) -> None:
        self.remote = normalize_remote(remote)
        self.branch = branch
        self.workdir = workdir
        self._git = shutil.which("git") or "git"
        workdir.mkdir(parents=True, exist_ok=True)
        self._env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        self._run("init", "-q")
        for kind in ("NAME", "EMAIL"):
            if self._configured(kind.lower()):
                continue
            default = "flotilla-charts" if kind == "NAME" else "flotilla-charts@localhost"
            for role in ("AUTHOR", "COMMITTER"):
                self._env.setdefault(f"GIT_{role}_{kind}", default)
        self.exists = False
        self.base = ""

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self._git, "-C", str(self.workdir), *args],
            env=self._env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(
                redact(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
            )
        return proc

    def _configured(self, key: str) -> bool:
        proc = subprocess.run(
            [self._git, "-C", str(self.workdir), "config", f"user.{key}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.returncode == 0 and bool(proc.stdout.strip())

    def remote_head(self) -> str:
        """The commit the remote branch points at, or "" when it does not exist."""
        heads = self._run("ls-remote", "--heads", self.remote, f"refs/heads/{self.branch}")
        return heads.stdout.split("\t", 1)[0].strip()

    def sync(self) -> bool:
        """Make the working tree equal the remote branch (or empty); True if the branch exists."""
        self.base = self.remote_head()
        self.exists = bool(self.base)
        if self.exists:
            self._run(
                "fetch", "-q", "--no-tags", self.remote, f"+refs/heads/{self.branch}:{_REMOTE_REF}"
            )
            self._run("checkout", "-q", "-f", "-B", self.branch, _REMOTE_REF)
        else:
            self._run("checkout", "-q", "-f", "--orphan", self.branch)
            self._run("rm", "-r", "-q", "-f", "--cached", "--ignore-unmatch", ".")
        self._run("clean", "-q", "-f", "-d", "-x")
        return self.exists

    def commit(self, message: str) -> bool:
        """Stage everything and commit; False when there is nothing to commit."""
        self._run("add", "-A")
        status = self._run("status", "--porcelain")
        if not status.stdout.strip():
            return False
        self._run("commit", "-q", "-m", message)
        return True

    def push(self) -> bool:
        """Push to the branch; False when a concurrent publisher won the race."""
        proc = self._run(
            "push", "-q", "--porcelain", self.remote, f"HEAD:refs/heads/{self.branch}", check=False
        )
        if proc.returncode == 0:
            return True
        output = proc.stderr + proc.stdout
        # A rejection is a lost race only if the branch moved; a hook or a protected branch
        # rejects with the branch where it was, and then the server's own words are the error.
        if any(marker in output for marker in _REJECTED) and self.remote_head() != self.base:
            logger.info(
                "push to %s rejected, will fetch and retry: %s", self.branch, redact(output.strip())
            )
            return False
        raise GitError(redact(f"git push to {self.remote} {self.branch} failed: {output.strip()}"))
