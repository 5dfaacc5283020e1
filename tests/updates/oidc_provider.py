"""A real OpenID Connect provider for the login tests: ORY Hydra, built once from its Go module.

Hydra is a certified OpenID Connect provider that leaves the login and consent pages to the
operator. :class:`LoginApp` is ours: a form that asks for a user name, accepts the login at
Hydra's admin API, and grants consent with a ``groups`` claim from :data:`USERS`. The binary is
cached in ``$XDG_CACHE_HOME/flotilla/tools/hydra-<version>/hydra`` (``make tools`` builds it), the
way helm is; a second call is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

HYDRA_VERSION = "v2.3.0"
HYDRA_MODULE = "github.com/ory/hydra/v2"

USERS: dict[str, list[str]] = {
    "alice": ["fleet-admins", "staff"],
    "bob": ["fleet-viewers"],
    "mallory": ["staff"],
}
"""Who may log in at the test provider, and the ``groups`` claim each one gets."""


class HydraBuildError(RuntimeError):
    """The Hydra build failed; the message says which step and why."""


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flotilla" / "tools"


def hydra_path(version: str = HYDRA_VERSION) -> Path:
    return cache_root() / f"hydra-{version}" / "hydra"


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HydraBuildError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}); is the Go module proxy "
            f"reachable?\n{proc.stderr[-4000:]}"
        )


def ensure_hydra(version: str = HYDRA_VERSION) -> Path:
    """Return the Hydra binary, building it from its module source only when it is not cached.

    ``go install pkg@version`` refuses modules with ``replace`` directives, and Hydra's go.mod
    has two, so the module is downloaded from the Go proxy, copied to a temporary directory and
    built there with its own go.mod (the ``ory/pop`` fork it needs included).
    """
    target = hydra_path(version)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise HydraBuildError("cannot build hydra: no `go` on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    with tempfile.TemporaryDirectory(prefix="hydra-build-", dir=target.parent) as tmp:
        work = Path(tmp)
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{HYDRA_MODULE}@{version}"],
            cwd=work, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise HydraBuildError(
                f"go mod download {HYDRA_MODULE}@{version} failed:\n{proc.stdout}{proc.stderr}"
            )
        source = work / "src"
        shutil.copytree(json.loads(proc.stdout)["Dir"], source)
        for path in [source, *source.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        # The proxy's zip leaves out internal/httpclient (a module of its own), which one replace
        # points at; its published version, hydra-client-go, is the same code.
        _run([go, "mod", "edit", "-dropreplace", "github.com/ory/hydra-client-go/v2"], source, env)
        _run(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(work / "hydra"), "."],
            source,
            env,
        )
        os.replace(work / "hydra", target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Hydra:
    """A running Hydra: its issuer (public URL) and admin URL."""

    issuer: str
    admin: str

    def register_client(self, redirect_url: str, secret: str) -> str:
        """A confidential client for the code flow; returns its client id."""
        import httpx

        r = httpx.post(
            f"{self.admin}/admin/clients",
            json={
                "client_secret": secret,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [redirect_url],
                "scope": "openid profile email groups",
                "token_endpoint_auth_method": "client_secret_basic",
            },
            timeout=10,
        )
        r.raise_for_status()
        return str(r.json()["client_id"])


def login_app(admin_url: Callable[[], str]) -> Any:
    """The login and consent pages Hydra sends people to (ours, as every Hydra operator's are).

    ``admin_url`` is read per request: the pages start before Hydra, which needs their URL.
    """
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, RedirectResponse, Response
    from starlette.routing import Route

    async def login(request: Request) -> Response:
        challenge = request.query_params.get("login_challenge", "")
        if request.method == "GET":
            return HTMLResponse(
                "<html><body><h1>Test provider</h1><form method='post'>"
                f"<input type='hidden' name='challenge' value='{challenge}'>"
                "<label>User <input name='user' id='user'></label>"
                "<button type='submit' id='sign-in'>Sign in</button></form></body></html>"
            )
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        user = form.get("user", [""])[0]
        challenge = form.get("challenge", [""])[0]
        if user not in USERS:
            return HTMLResponse("unknown user", 401)
        async with httpx.AsyncClient() as client:
            r = await client.put(
                f"{admin_url()}/admin/oauth2/auth/requests/login/accept",
                params={"login_challenge": challenge},
                json={"subject": user, "remember": False},
            )
        r.raise_for_status()
        return RedirectResponse(r.json()["redirect_to"], 302)

    async def consent(request: Request) -> Response:
        challenge = request.query_params.get("consent_challenge", "")
        async with httpx.AsyncClient() as client:
            got = await client.get(
                f"{admin_url()}/admin/oauth2/auth/requests/consent",
                params={"consent_challenge": challenge},
            )
            got.raise_for_status()
            asked = got.json()
            user = asked["subject"]
            r = await client.put(
                f"{admin_url()}/admin/oauth2/auth/requests/consent/accept",
                params={"consent_challenge": challenge},
                json={
                    "grant_scope": asked["requested_scope"],
                    "grant_access_token_audience": asked["requested_access_token_audience"],
                    "session": {
                        "id_token": {
                            "preferred_username": user,
                            "email": f"{user}@example.test",
                            "groups": USERS[user],
                        }
                    },
                },
            )
        r.raise_for_status()
        return RedirectResponse(r.json()["redirect_to"], 302)

    return Starlette(
        routes=[
            Route("/login", login, methods=["GET", "POST"]),
            Route("/consent", consent, methods=["GET"]),
        ]
    )


@contextmanager
def running_hydra(login_url: str, consent_url: str, workdir: Path, dsn: str) -> Iterator[Hydra]:
    """``hydra serve all`` on loopback over PostgreSQL (``dsn``, migrated here); stopped on exit.

    Hydra's in-memory store is SQLite, which needs a cgo build; PostgreSQL needs none.
    """
    binary = ensure_hydra()
    public, admin = free_port(), free_port()
    issuer = f"http://127.0.0.1:{public}"
    env = dict(
        os.environ,
        DSN=dsn,
        URLS_SELF_ISSUER=issuer,
        URLS_LOGIN=login_url,
        URLS_CONSENT=consent_url,
        SERVE_PUBLIC_HOST="127.0.0.1",
        SERVE_PUBLIC_PORT=str(public),
        SERVE_ADMIN_HOST="127.0.0.1",
        SERVE_ADMIN_PORT=str(admin),
        SECRETS_SYSTEM="flotilla-test-system-secret-0123456789",
        LOG_LEVEL="warn",
    )
    migrate = subprocess.run(
        [str(binary), "migrate", "sql", "up", "-e", "--yes"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if migrate.returncode != 0:
        raise RuntimeError(f"hydra migrate failed: {migrate.stderr[-2000:]}")
    log = (workdir / "hydra.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "all", "--dev"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hydra exited: {(workdir / 'hydra.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hydra did not answer within 60 s")
            time.sleep(0.2)
        yield Hydra(issuer, f"http://127.0.0.1:{admin}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    print(ensure_hydra(sys.argv[1] if len(sys.argv) > 1 else HYDRA_VERSION))
