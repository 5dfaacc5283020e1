"""Registry credentials for bundle image pulls and pushes, found where podman, skopeo and opm look.

Files, first match wins (containers/image's order, then docker's):

1. ``$REGISTRY_AUTH_FILE`` if set, else ``$XDG_RUNTIME_DIR/containers/auth.json``;
2. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``);
3. ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``).

In each file a ``credHelpers`` entry for the host comes first (``docker-credential-NAME get``,
the server on stdin, so no secret is ever on a command line), then an ``auths`` entry (base64
``auth`` of ``user:password``, or ``username``/``password``, or an ``identitytoken``), then
``credsStore``. ``auths`` keys are matched as containers/image matches them: a key may carry a
scheme and ``/v1/`` (docker's ``https://index.docker.io/v1/``), and a key naming a repository
(``host/org/repo``) beats the host alone. Secrets stay out of reprs and messages: an error names
the file and the registry, never a value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.operators.models import OperatorsError

__all__ = ["Credentials", "CredentialsError", "auth_files", "find_credentials"]

_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_AUTH_FILE_BYTES = 4 * 2**20


class CredentialsError(OperatorsError):
    """An auth file cannot be used; the message names the file and the registry, no secret."""


@dataclass(frozen=True)
class Credentials:
    """A user and password (Basic auth, and the token server's login), or an identity token
    (an OAuth2 refresh token, exchanged at the token server). ``origin`` says where they came
    from, for messages."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    origin: str = ""


def auth_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The auth files looked at, in order (whether they exist or not)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    files: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    elif env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files.append(config_home / "containers" / "auth.json")
    docker = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker / "config.json")
    return files


def _normalise_key(key: str) -> str:
    """``https://index.docker.io/v1/`` -> ``index.docker.io``; ``host/org/repo`` stays."""
    key = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    return re.sub(r"/v[12]$", "", key)


def _candidates(host: str, repository: str) -> list[str]:
    """Keys that apply to ``host/repository``, most specific first."""
    hosts = _DOCKER_HUB if host in _DOCKER_HUB else (host,)
    parts = repository.split("/")
    keys: list[str] = []
    for n in range(len(parts), 0, -1):
        keys.extend(f"{h}/{'/'.join(parts[:n])}" for h in hosts)
    keys.extend(hosts)
    return keys


def _load(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_AUTH_FILE_BYTES:
            raise CredentialsError(f"{path}: auth file over {MAX_AUTH_FILE_BYTES} bytes")
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"{path}: cannot read the auth file: {exc.__class__.__name__}"
        ) from None
    except json.JSONDecodeError as exc:
        # the message of a JSON error quotes no input, only the position
        raise CredentialsError(f"{path}: not a JSON auth file (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: not a JSON object")
    return data


def _from_entry(entry: Any, path: Path, key: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise CredentialsError(f"{path}: auths entry {key!r} is not an object")
    origin = f"{path} ({key})"
    token = str(entry.get("identitytoken") or "")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CredentialsError(
                f"{path}: auths entry {key!r}: 'auth' is not base64 of user:password"
            ) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsError(f"{path}: auths entry {key!r}: 'auth' has no ':'")
        return Credentials(user, password, token, origin)
    if entry.get("username") or token:
        user = str(entry.get("username") or "")
        return Credentials(user, str(entry.get("password") or ""), token, origin)
    return None  # an empty entry: docker writes {} when a credsStore keeps the secret


def _helper(name: str, server: str, path: Path) -> Credentials | None:
    """``docker-credential-NAME get`` with the server on stdin; none when the helper is missing
    or knows no credentials (it then exits non-zero, as docker treats it)."""
    if not _HELPER_NAME.fullmatch(name):
        raise CredentialsError(f"{path}: credential helper name {name!r} is not valid")
    binary = shutil.which(f"docker-credential-{name}")
    if binary is None:
        return None
    try:
        proc = subprocess.run(
            [binary, "get"], input=server, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CredentialsError(
            f"{path}: credential helper {name} gave no JSON for {server}"
        ) from None
    if not isinstance(out, dict):
        return None
    user, secret = str(out.get("Username") or ""), str(out.get("Secret") or "")
    origin = f"docker-credential-{name}"
    if user == "<token>":  # docker's convention for an identity token
        return Credentials("", "", secret, origin)
    return Credentials(user, secret, "", origin) if user or secret else None


def find_credentials(
    host: str, repository: str, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """Credentials for ``host/repository`` from the first auth file that has some, else none."""
    candidates = _candidates(host, repository)
    for path in auth_files(env):
        data = _load(path)
        if data is None:
            continue
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key in candidates:
                if isinstance(helpers.get(key), str):
                    found = _helper(helpers[key], key, path)
                    if found is not None:
                        return found
        auths = data.get("auths")
        if isinstance(auths, dict):
            by_key = {_normalise_key(str(k)): (str(k), v) for k, v in auths.items()}
            for key in candidates:
                if key in by_key:
                    raw_key, entry = by_key[key]
                    found = _from_entry(entry, path, raw_key)
                    if found is not None:
                        return found
        store = data.get("credsStore")
        if isinstance(store, str) and store:
            server = "https://index.docker.io/v1/" if host in _DOCKER_HUB else host
            found = _helper(store, server, path)
            if found is not None:
                return found
    return None
