"""Server settings: read from flags or the environment at the entry point, then passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flotilla.updates.server.oidc import OidcSettings
    from flotilla.updates.server.releases.syncer import SyncSettings

DEFAULT_DB = "sqlite:///flotilla-updates.db"


@dataclass(frozen=True)
class ServerSettings:
    """How ``flotilla updates serve`` runs."""

    db_url: str = DEFAULT_DB
    """SQLAlchemy URL or plain path; ``postgresql://`` uses psycopg 3."""
    host: str = "127.0.0.1"
    port: int = 8000
    admin_tokens: tuple[str, ...] = ()
    """Bearer tokens allowed to change things through /api/v1 (none: the API refuses writes)."""
    read_tokens: tuple[str, ...] = ()
    """Bearer tokens allowed to read /api/v1 (admin tokens can read too)."""
    retention: timedelta | None = timedelta(days=90)
    """Instances not seen for this long are pruned; None keeps them forever."""
    prune_interval: timedelta = timedelta(hours=1)
    """How often the pruning task runs."""
    pool_size: int = 10
    """Database connections per process, held open, never more (no overflow); check-ins run at
    most ``pool_size - 2`` at a time, leaving two for the API, dashboard and background tasks."""
    config_ttl: float = 1.0
    """Seconds a process caches a group's channel and policy for check-ins (0: no cache)."""
    trust_forwarded_for: bool = False
    """Take the client IP from X-Forwarded-For (only behind a proxy you run)."""
    sample_interval: float = 30.0
    """Seconds between the dashboard's samples of each group's status counts (0: none)."""
    quiet_within: timedelta = timedelta(hours=1)
    """A check-in that changes nothing writes nothing if the machine was seen within this (the
    check interval: update_engine checks every 45 min +- 5); its last-seen is batched."""
    omaha_secret: str = ""
    """When set, Omaha clients must send it as ``/v1/update/<secret>`` or an
    ``X-Flotilla-Omaha-Secret`` header; anything else gets 404."""
    new_machine_grants: int = 5
    """Grants per source network per hour to machines first seen in the last day (0: no limit)."""
    fleetlock_create_groups: bool = False
    """Let FleetLock clients create groups the fleet file does not define."""
    session_idle: timedelta = timedelta(hours=1)
    """A dashboard session unused this long is over."""
    session_max: timedelta = timedelta(hours=12)
    """A dashboard session is over this long after login, used or not."""
    login_attempts_per_minute: int = 10
    """Dashboard login attempts per client address and minute (per process)."""
    sync: SyncSettings | None = None
    """Import releases from an upstream Omaha server (``--sync-from``); None: no syncer."""
    oidc: OidcSettings | None = None
    """Dashboard login with OpenID Connect (``--oidc-issuer``); None: tokens only."""


MIN_TOKEN_LENGTH = 16
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def split_token(entry: str, kind: str) -> tuple[str, str]:
    """(name, secret) of a configured token entry.

    ``NAME:SECRET`` names the token in the activity feed (``ci:…``, ``terraform:…``); a bare
    secret is named after its role (``admin token``), as before names existed.
    """
    name, sep, secret = entry.partition(":")
    if sep and secret and _TOKEN_NAME.fullmatch(name):
        return name, secret
    return f"{kind} token", entry


class SettingsError(ValueError):
    """A setting the server refuses to start with (shown as one line, exit code 1)."""


def _tokens(raw: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (raw or "").split(",") if t.strip())


def read_secret_file(path: str) -> tuple[str, ...]:
    """Tokens from a file: one per line (commas also separate); blank and ``#`` lines skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot read token file {path}: {e}") from None
    lines = (ln.strip() for ln in text.splitlines())
    return tuple(t for ln in lines if ln and not ln.startswith("#") for t in _tokens(ln))


def check_settings(settings: ServerSettings) -> None:
    """Refuse weak tokens and nonsense limits before anything listens."""
    for kind, tokens in (("admin", settings.admin_tokens), ("read", settings.read_tokens)):
        for entry in tokens:
            t = split_token(entry, kind)[1]
            if len(t) < MIN_TOKEN_LENGTH:
                raise SettingsError(
                    f"a {kind} token is {len(t)} characters long; tokens need at least "
                    f"{MIN_TOKEN_LENGTH} (try: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
    if settings.omaha_secret and (
        len(settings.omaha_secret) < MIN_TOKEN_LENGTH
        or not all(c.isalnum() or c in "-_." for c in settings.omaha_secret)
    ):
        raise SettingsError(
            f"the Omaha secret needs at least {MIN_TOKEN_LENGTH} characters from A-Z a-z 0-9 - _ ."
        )
    if settings.new_machine_grants < 0 or settings.login_attempts_per_minute < 1:
        raise SettingsError("new-machine grants must be >= 0 and login attempts >= 1")
    if settings.session_idle <= timedelta(0) or settings.session_max < settings.session_idle:
        raise SettingsError("session idle time must be > 0 and at most the maximum session age")


def settings_from_env(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Settings from ``FLOTILLA_UPDATES_*`` variables (used by worker processes and containers)."""
    from flotilla.updates.policies import parse_duration  # loaded here: the CLI's --help needs none

    env = os.environ if env is None else env
    admin = _tokens(env.get("FLOTILLA_UPDATES_ADMIN_TOKENS"))
    read = _tokens(env.get("FLOTILLA_UPDATES_READ_TOKENS"))
    if env.get("FLOTILLA_UPDATES_ADMIN_TOKEN_FILE"):
        admin += read_secret_file(env["FLOTILLA_UPDATES_ADMIN_TOKEN_FILE"])
    if env.get("FLOTILLA_UPDATES_READ_TOKEN_FILE"):
        read += read_secret_file(env["FLOTILLA_UPDATES_READ_TOKEN_FILE"])
    secret = env.get("FLOTILLA_UPDATES_OMAHA_SECRET", "")
    if not secret and env.get("FLOTILLA_UPDATES_OMAHA_SECRET_FILE"):
        secret = next(iter(read_secret_file(env["FLOTILLA_UPDATES_OMAHA_SECRET_FILE"])), "")
    retention_raw = env.get("FLOTILLA_UPDATES_RETENTION", "90d")
    retention = None if retention_raw in ("", "0", "never") else parse_duration(retention_raw)
    return ServerSettings(
        db_url=env.get("FLOTILLA_UPDATES_DB", DEFAULT_DB),
        host=env.get("FLOTILLA_UPDATES_HOST", "127.0.0.1"),
        port=int(env.get("FLOTILLA_UPDATES_PORT", "8000")),
        admin_tokens=admin,
        read_tokens=read,
        retention=retention,
        prune_interval=parse_duration(env.get("FLOTILLA_UPDATES_PRUNE_INTERVAL", "1h")),
        pool_size=int(env.get("FLOTILLA_UPDATES_POOL_SIZE", "10")),
        config_ttl=float(env.get("FLOTILLA_UPDATES_CONFIG_TTL", "1.0")),
        trust_forwarded_for=env.get("FLOTILLA_UPDATES_TRUST_FORWARDED_FOR", "") in ("1", "true"),
        sample_interval=float(env.get("FLOTILLA_UPDATES_SAMPLE_INTERVAL", "30")),
        quiet_within=parse_duration(env.get("FLOTILLA_UPDATES_CHECK_INTERVAL", "1h")),
        omaha_secret=secret,
        new_machine_grants=int(env.get("FLOTILLA_UPDATES_NEW_MACHINE_GRANTS", "5")),
        fleetlock_create_groups=env.get("FLOTILLA_UPDATES_FLEETLOCK_CREATE_GROUPS", "")
        in ("1", "true"),
        session_idle=parse_duration(env.get("FLOTILLA_UPDATES_SESSION_IDLE", "1h")),
        session_max=parse_duration(env.get("FLOTILLA_UPDATES_SESSION_MAX", "12h")),
        sync=sync_settings_from_env(env),
        oidc=oidc_settings_from_env(env),
    )


def oidc_settings_from_env(env: Mapping[str, str]) -> OidcSettings | None:
    """``FLOTILLA_UPDATES_OIDC_*``: the dashboard's OIDC login, None when no issuer is named.

    The client secret comes from ``FLOTILLA_UPDATES_OIDC_CLIENT_SECRET`` or the file named by
    ``FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE``, never from a command line.
    """
    issuer = env.get("FLOTILLA_UPDATES_OIDC_ISSUER", "")
    if not issuer:
        return None
    from flotilla.updates.server.oidc import OidcError, OidcSettings

    secret = env.get("FLOTILLA_UPDATES_OIDC_CLIENT_SECRET", "")
    secret_file = env.get("FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE", "")
    if not secret and secret_file:
        try:  # the whole first line: a client secret may hold commas, unlike token lists
            text = Path(secret_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(
                f"cannot read --oidc-client-secret-file {secret_file}: {e}"
            ) from None
        secret = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        if not secret:
            raise SettingsError(f"--oidc-client-secret-file {secret_file} is empty")
    scopes = _tokens(env.get("FLOTILLA_UPDATES_OIDC_SCOPES", "openid,profile,email,groups"))
    try:
        return OidcSettings(
            issuer=issuer,
            client_id=env.get("FLOTILLA_UPDATES_OIDC_CLIENT_ID", ""),
            client_secret=secret,
            redirect_url=env.get("FLOTILLA_UPDATES_OIDC_REDIRECT_URL", ""),
            scopes=scopes,
            role_claim=env.get("FLOTILLA_UPDATES_OIDC_ROLE_CLAIM", "groups"),
            admin_values=_tokens(env.get("FLOTILLA_UPDATES_OIDC_ADMIN_VALUES")),
            read_values=_tokens(env.get("FLOTILLA_UPDATES_OIDC_READ_VALUES")),
        )
    except OidcError as e:
        raise SettingsError(str(e)) from None


def sync_settings_from_env(env: Mapping[str, str]) -> SyncSettings | None:
    """``FLOTILLA_UPDATES_SYNC_*``: the syncer's settings, None when no upstream is named."""
    upstream = env.get("FLOTILLA_UPDATES_SYNC_FROM", "")
    if not upstream:
        return None
    from flotilla.updates.policies import parse_duration
    from flotilla.updates.server.releases.syncer import SyncSettings

    host_dir = env.get("FLOTILLA_UPDATES_HOST_PACKAGES", "")
    return SyncSettings(
        upstream=upstream,
        channels=_tokens(env.get("FLOTILLA_UPDATES_SYNC_CHANNELS", "alpha,beta,stable")),
        arches=_tokens(env.get("FLOTILLA_UPDATES_SYNC_ARCHES", "amd64,arm64")),
        interval=parse_duration(env.get("FLOTILLA_UPDATES_SYNC_INTERVAL", "1h")),
        host_dir=Path(host_dir) if host_dir else None,
        public_url=env.get("FLOTILLA_UPDATES_PUBLIC_URL", ""),
    )
