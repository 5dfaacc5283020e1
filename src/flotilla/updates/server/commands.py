"""The server-side commands of ``flotilla updates``: serve, apply, instances, activity, fleetlock.

Only Typer and the standard library load at import time, so ``--help`` stays fast; rich,
SQLAlchemy, FastAPI and uvicorn load inside the command that needs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flotilla.core.cli import duration, duration_option, emit, output_option, system_app
from flotilla.core.errors import FlotillaError
from flotilla.updates.server.settings import DEFAULT_DB

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console
    from rich.table import Table


def _err() -> Console:
    """Messages on stderr (rich loads when a command prints, not for ``--help``)."""
    from rich.console import Console

    return Console(stderr=True)


def _table(*columns: str) -> Table:
    """An empty table with these columns, none wrapped."""
    from rich.table import Table

    table = Table()
    for name in columns:
        table.add_column(name, no_wrap=True)
    return table


DbOption = typer.Option(
    DEFAULT_DB, "--db", envvar="FLOTILLA_UPDATES_DB", help="Database URL or SQLite file path."
)
AdminTokenOption = typer.Option(
    None,
    "--admin-token",
    envvar="FLOTILLA_UPDATES_ADMIN_TOKENS",
    help="May change things (visible in ps: prefer --admin-token-file or the variable).",
)
ReadTokenOption = typer.Option(
    None,
    "--read-token",
    envvar="FLOTILLA_UPDATES_READ_TOKENS",
    help="May only read (visible in ps: prefer --read-token-file or the variable).",
)
AdminTokenFileOption = typer.Option(
    None,
    "--admin-token-file",
    envvar="FLOTILLA_UPDATES_ADMIN_TOKEN_FILE",
    help="File with admin tokens, one per line.",
)
ReadTokenFileOption = typer.Option(
    None,
    "--read-token-file",
    envvar="FLOTILLA_UPDATES_READ_TOKEN_FILE",
    help="File with read tokens, one per line.",
)
FileOption = typer.Option(..., "-f", "--file", exists=True, dir_okay=False, help="fleet.yaml")


class NoDatabaseError(FlotillaError):
    """A command that only reads was pointed at a database that does not exist."""


@contextlib.contextmanager
def _database(db: str, *, create: bool = False) -> Iterator[Any]:
    """A small engine on ``db``, migrated to the newest schema, disposed at the end.

    Only ``serve`` and ``apply`` may ``create`` a SQLite file: a command that reads would
    otherwise answer a typo in ``--db`` with a new empty database and an empty table. Disposing
    closes the pooled connections at once instead of whenever the garbage collector gets to them
    (a command run in-process, as tests and embedding code do, would leave them open).
    """
    from sqlalchemy.engine import make_url

    from flotilla.updates.server.schema import make_engine, migrate, normalize_url

    url = make_url(normalize_url(db))
    if not create and url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            raise NoDatabaseError(
                f"no database at {path or db!r}: pass --db (or $FLOTILLA_UPDATES_DB); "
                "`flotilla updates apply` or `serve` creates one"
            )
    engine = make_engine(db, pool_size=2)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


def _status(value: str | None) -> str | None:
    """``--status``: one of the instance states, else a usage error naming them."""
    from flotilla.updates.models import InstanceStatus

    known = [s.value for s in InstanceStatus]
    if value is not None and value not in known:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)}")
    return value


def _out() -> Console:
    """Tables on stdout: the terminal's width, or wide enough for machine ids when piped."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=200)


def _wide() -> Console:
    """FleetLock tables: always wide enough for holder ids."""
    from rich.console import Console

    return Console(width=200)


def _tokens(values: list[str] | None) -> tuple[str, ...]:
    return tuple(t for v in values or [] for t in v.split(",") if t)


HostPackagesOption: Any = typer.Option(
    None,
    "--host-packages",
    envvar="FLOTILLA_UPDATES_HOST_PACKAGES",
    help="With --sync-from: download and verify payloads here and serve them at /packages/.",
)


def serve(
    db: str = DbOption,
    host: str = typer.Option("127.0.0.1", "--host", envvar="FLOTILLA_UPDATES_HOST"),
    port: int = typer.Option(8000, "--port", envvar="FLOTILLA_UPDATES_PORT"),
    admin_token: list[str] | None = AdminTokenOption,
    read_token: list[str] | None = ReadTokenOption,
    admin_token_file: str | None = AdminTokenFileOption,
    read_token_file: str | None = ReadTokenFileOption,
    omaha_secret_file: str | None = typer.Option(
        None,
        "--omaha-secret-file",
        envvar="FLOTILLA_UPDATES_OMAHA_SECRET_FILE",
        help="Omaha clients must use /v1/update/<secret> (or send it in a header); else 404.",
    ),
    new_machine_grants: int = typer.Option(
        5,
        "--new-machine-grants",
        envvar="FLOTILLA_UPDATES_NEW_MACHINE_GRANTS",
        help="Grants per source network and hour to machines first seen in the last day (0: off).",
    ),
    trust_forwarded_for: bool = typer.Option(
        False,
        "--trust-forwarded-for",
        envvar="FLOTILLA_UPDATES_TRUST_FORWARDED_FOR",
        help="Take client addresses from X-Forwarded-For (only behind a proxy you run).",
    ),
    fleetlock_create_groups: bool = typer.Option(
        False,
        "--fleetlock-create-groups",
        envvar="FLOTILLA_UPDATES_FLEETLOCK_CREATE_GROUPS",
        help="Let FleetLock clients create groups the fleet file does not define.",
    ),
    retention: str = typer.Option(
        "90d",
        "--retention",
        envvar="FLOTILLA_UPDATES_RETENTION",
        help="Prune instances not seen for this long (e.g. 30d); 0 keeps them forever.",
    ),
    workers: int = typer.Option(1, "--workers", help="Server processes sharing the port."),
    sample_interval: float = duration_option(
        "30s",
        "--sample-interval",
        envvar="FLOTILLA_UPDATES_SAMPLE_INTERVAL",
        help="Between the dashboard's rollout-chart samples (0: none).",
    ),
    sync_from: str = typer.Option(
        "",
        "--sync-from",
        envvar="FLOTILLA_UPDATES_SYNC_FROM",
        help="Import releases from this upstream Omaha URL "
        "(e.g. https://public.update.flatcar-linux.net/v1/update/).",
    ),
    sync_channels: str = typer.Option(
        "alpha,beta,stable", "--sync-channels", envvar="FLOTILLA_UPDATES_SYNC_CHANNELS"
    ),
    sync_arches: str = typer.Option(
        "amd64,arm64", "--sync-arches", envvar="FLOTILLA_UPDATES_SYNC_ARCHES"
    ),
    sync_interval: str = typer.Option(
        "1h", "--sync-interval", envvar="FLOTILLA_UPDATES_SYNC_INTERVAL"
    ),
    host_packages: Path | None = HostPackagesOption,
    public_url: str = typer.Option(
        "",
        "--public-url",
        envvar="FLOTILLA_UPDATES_PUBLIC_URL",
        help="The URL machines reach this server at (hosted payload URLs start with it).",
    ),
    oidc_issuer: str = typer.Option(
        "",
        "--oidc-issuer",
        envvar="FLOTILLA_UPDATES_OIDC_ISSUER",
        help="Offer 'Log in with OpenID Connect' on the dashboard with this provider.",
    ),
    oidc_client_id: str = typer.Option(
        "",
        "--oidc-client-id",
        envvar="FLOTILLA_UPDATES_OIDC_CLIENT_ID",
        help="The client registered at the provider.",
    ),
    oidc_client_secret_file: str = typer.Option(
        "",
        "--oidc-client-secret-file",
        envvar="FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE",
        help="File holding the client secret (or set FLOTILLA_UPDATES_OIDC_CLIENT_SECRET); "
        "none: a public client with PKCE alone.",
    ),
    oidc_redirect_url: str = typer.Option(
        "",
        "--oidc-redirect-url",
        envvar="FLOTILLA_UPDATES_OIDC_REDIRECT_URL",
        help="This server's /ui/oidc/callback as browsers reach it.",
    ),
    oidc_role_claim: str = typer.Option(
        "groups",
        "--oidc-role-claim",
        envvar="FLOTILLA_UPDATES_OIDC_ROLE_CLAIM",
        help="The ID token claim holding the groups that --oidc-*-values map to roles.",
    ),
    oidc_admin_values: str = typer.Option(
        "",
        "--oidc-admin-values",
        envvar="FLOTILLA_UPDATES_OIDC_ADMIN_VALUES",
        help="Comma-separated values of the role claim that make an admin.",
    ),
    oidc_read_values: str = typer.Option(
        "",
        "--oidc-read-values",
        envvar="FLOTILLA_UPDATES_OIDC_READ_VALUES",
        help="Comma-separated values of the role claim that make a reader.",
    ),
    oidc_scopes: str = typer.Option(
        "openid,profile,email,groups",
        "--oidc-scopes",
        envvar="FLOTILLA_UPDATES_OIDC_SCOPES",
        help="Comma-separated scopes to ask the provider for.",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Run the Omaha endpoint (/v1/update/), the REST API (/api/v1), the dashboard (/), /metrics
    and /healthz."""
    import uvicorn

    from flotilla.updates.policies import parse_duration
    from flotilla.updates.server.api import create_app
    from flotilla.updates.server.schema import make_engine, migrate
    from flotilla.updates.server.settings import (
        ServerSettings,
        SettingsError,
        check_settings,
        oidc_settings_from_env,
        read_secret_file,
        sync_settings_from_env,
    )

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        keep = None if retention in ("0", "never") else parse_duration(retention)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--retention") from None
    sync_env = {
        "FLOTILLA_UPDATES_SYNC_FROM": sync_from,
        "FLOTILLA_UPDATES_SYNC_CHANNELS": sync_channels,
        "FLOTILLA_UPDATES_SYNC_ARCHES": sync_arches,
        "FLOTILLA_UPDATES_SYNC_INTERVAL": sync_interval,
        "FLOTILLA_UPDATES_HOST_PACKAGES": str(host_packages or ""),
        "FLOTILLA_UPDATES_PUBLIC_URL": public_url,
    }
    try:
        sync = sync_settings_from_env(sync_env)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--sync-interval") from None
    oidc_env = {
        "FLOTILLA_UPDATES_OIDC_ISSUER": oidc_issuer,
        "FLOTILLA_UPDATES_OIDC_CLIENT_ID": oidc_client_id,
        "FLOTILLA_UPDATES_OIDC_CLIENT_SECRET_FILE": oidc_client_secret_file,
        "FLOTILLA_UPDATES_OIDC_REDIRECT_URL": oidc_redirect_url,
        "FLOTILLA_UPDATES_OIDC_ROLE_CLAIM": oidc_role_claim,
        "FLOTILLA_UPDATES_OIDC_ADMIN_VALUES": oidc_admin_values,
        "FLOTILLA_UPDATES_OIDC_READ_VALUES": oidc_read_values,
        "FLOTILLA_UPDATES_OIDC_SCOPES": oidc_scopes,
    }
    try:
        oidc = oidc_settings_from_env(
            {
                **oidc_env,
                "FLOTILLA_UPDATES_OIDC_CLIENT_SECRET": os.environ.get(
                    "FLOTILLA_UPDATES_OIDC_CLIENT_SECRET", ""
                ),
            }
        )
        if oidc is not None and workers > 1:
            raise SettingsError(
                "OIDC login keeps logins in flight in one process: use --workers 1 with it"
            )
        admins = _tokens(admin_token)
        if admin_token_file:
            admins += read_secret_file(admin_token_file)
        readers = _tokens(read_token)
        if read_token_file:
            readers += read_secret_file(read_token_file)
        secret = os.environ.get("FLOTILLA_UPDATES_OMAHA_SECRET", "")
        if omaha_secret_file:
            secret = next(iter(read_secret_file(omaha_secret_file)), "")
        settings = ServerSettings(
            db_url=db,
            host=host,
            port=port,
            admin_tokens=admins,
            read_tokens=readers,
            retention=keep,
            sample_interval=sample_interval,
            omaha_secret=secret,
            new_machine_grants=new_machine_grants,
            trust_forwarded_for=trust_forwarded_for,
            fleetlock_create_groups=fleetlock_create_groups,
            sync=sync,
            oidc=oidc,
        )
        check_settings(settings)
    except SettingsError as e:
        _err().print(f"[red]Error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    if workers > 1:
        # Each worker builds its own app from the environment (the only way uvicorn forks).
        os.environ.update(
            {
                "FLOTILLA_UPDATES_DB": db,
                "FLOTILLA_UPDATES_ADMIN_TOKENS": ",".join(settings.admin_tokens),
                "FLOTILLA_UPDATES_READ_TOKENS": ",".join(settings.read_tokens),
                "FLOTILLA_UPDATES_RETENTION": retention,
                "FLOTILLA_UPDATES_SAMPLE_INTERVAL": str(sample_interval),
                "FLOTILLA_UPDATES_OMAHA_SECRET": secret,
                "FLOTILLA_UPDATES_NEW_MACHINE_GRANTS": str(new_machine_grants),
                "FLOTILLA_UPDATES_TRUST_FORWARDED_FOR": "1" if trust_forwarded_for else "",
                "FLOTILLA_UPDATES_FLEETLOCK_CREATE_GROUPS": "1" if fleetlock_create_groups else "",
                **sync_env,
            }
        )
        engine = make_engine(db, pool_size=1)
        migrate(engine)
        engine.dispose()
        uvicorn.run(
            "flotilla.updates.server.api:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


def _cli_actor(command: str) -> str:
    """Who the feed names for a change made on this machine: the login user and the command
    (no token or provider login here, only access to the database)."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        user = "uid " + str(os.getuid())
    return f"{user} (flotilla updates {command})"


def apply(
    file: Path = FileOption,
    db: str = DbOption,
) -> None:
    """Make the database match a fleet file; running it again changes nothing."""
    from flotilla.updates.server import catalog
    from flotilla.updates.server.fleetspec import FleetFileError, parse_fleet

    try:
        spec = parse_fleet(file.read_text(encoding="utf-8"))
    except FleetFileError as e:
        for p in e.problems:
            _err().print(f"[red]Error:[/red] {file}: {p}", highlight=False)
        raise typer.Exit(1) from None
    except UnicodeDecodeError:
        _err().print(f"[red]Error:[/red] {file}: not UTF-8 text")
        raise typer.Exit(1) from None
    from sqlalchemy.exc import SQLAlchemyError

    try:  # one transaction: on any error nothing is applied
        # CatalogError: flotilla.core.cli shows it
        with _database(db, create=True) as engine:
            changes = catalog.apply_fleet(engine, spec, _cli_actor("apply"))
    except SQLAlchemyError as e:
        first = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
        _err().print(
            f"[red]Error:[/red] {file}: database refused the change: {first}", highlight=False
        )
        raise typer.Exit(1) from None
    except (OverflowError, RecursionError) as e:
        _err().print(f"[red]Error:[/red] {file}: a value is out of range: {e}", highlight=False)
        raise typer.Exit(1) from None
    for c in changes:
        typer.echo(c)
    typer.echo(f"{len(changes)} change(s)" if changes else "no changes")


def instances(
    db: str = DbOption,
    group: str | None = typer.Option(None, "--group", help="Group name or id."),
    status: str | None = typer.Option(
        None, "--status", parser=_status, help="Only this state (Complete, OnHold, Error, ...)."
    ),
    limit: int = typer.Option(1000, "--limit"),
    output: str = output_option(),
) -> None:
    """List instances, most recently seen first."""
    from flotilla.updates.server import catalog

    with _database(db) as engine:
        rows = catalog.list_instances(engine, group=group, status=status, limit=limit)
    emit(rows, output, lambda: _instances_table(rows))


def _instances_table(rows: list[dict[str, Any]]) -> None:
    table = _table()
    table.add_column("MACHINE", no_wrap=True, min_width=32)
    for name in ("GROUP", "VERSION", "STATUS", "TARGET"):
        table.add_column(name, no_wrap=True)
    table.add_column("LAST SEEN", no_wrap=True, min_width=19)
    table.add_column("ALIAS")
    table.add_column("REASON")
    for r in rows:
        table.add_row(
            r["machine_id"],
            r["group"],
            r["version"],
            r["status"],
            r["last_update_version"] or "",
            (r["last_seen"] or "")[:19],
            r["alias"],
            r["reason"] or "",
        )
    _out().print(table)


def activity(
    db: str = DbOption,
    limit: int = typer.Option(50, "--limit"),
    output: str = output_option(),
) -> None:
    """Show the activity feed: rollouts started/finished/failed, failed instances, channel moves."""
    from flotilla.updates.server import catalog

    with _database(db) as engine:
        rows = catalog.list_activity(engine, limit=limit)
    emit(rows, output, lambda: _activity_table(rows))


def _activity_table(rows: list[dict[str, Any]]) -> None:
    table = _table()
    table.add_column("AT", no_wrap=True, min_width=19)
    table.add_column("SEVERITY", no_wrap=True)
    table.add_column("KIND", no_wrap=True)
    table.add_column("VERSION", no_wrap=True)
    table.add_column("MESSAGE")
    for r in rows:
        table.add_row(
            (r["at"] or "")[:19], r["severity"], r["kind"], r["version"] or "", r["message"]
        )
    _out().print(table)


fleetlock_app = system_app("FleetLock reboot slots: groups, holders, stale locks.")
LockDbOption = typer.Option(
    "--db", envvar="FLOTILLA_UPDATES_DB", help="Database URL or SQLite path."
)


@fleetlock_app.command("holders")
def fleetlock_holders(
    db: Annotated[str, LockDbOption] = DEFAULT_DB,
    group: Annotated[str | None, typer.Option("--group")] = None,
    output: str = output_option(),
) -> None:
    """Who holds a reboot slot now, oldest first."""
    from flotilla.updates.server import fleetlock_store

    with _database(db) as engine:
        rows = fleetlock_store.list_holders(engine, group)

    def table() -> None:
        out = _table("GROUP", "ID", "ACQUIRED")
        for r in rows:
            out.add_row(r["group"], r["id"], (r["acquired_at"] or "")[:19])
        _wide().print(out)

    emit(rows, output, table)


@fleetlock_app.command("groups")
def fleetlock_groups(
    db: Annotated[str, LockDbOption] = DEFAULT_DB,
    output: str = output_option(),
) -> None:
    """Groups with their maximum, windows and number of holders."""
    from flotilla.updates.server import fleetlock_store

    with _database(db) as engine:
        rows = fleetlock_store.list_groups(engine)

    def table() -> None:
        out = _table("GROUP", "HELD", "MAX", "WINDOWS", "TIMEZONE")
        for r in rows:
            out.add_row(
                r["name"],
                str(r["held"]),
                str(r["max_holders"]),
                ", ".join(r["windows"]) or "any time",
                r["timezone"],
            )
        _wide().print(out)

    emit(rows, output, table)


@fleetlock_app.command("release")
def fleetlock_release(
    db: Annotated[str, LockDbOption] = DEFAULT_DB,
    group: Annotated[str | None, typer.Option("--group")] = None,
    node_id: Annotated[str | None, typer.Option("--id", help="The holder's id.")] = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than", parser=duration, metavar="DURATION", help="Holders older than, e.g. 2h."
        ),
    ] = None,
) -> None:
    """Release stale locks (a node that died holding its slot); name a group, id or age."""
    from datetime import UTC, datetime, timedelta

    from flotilla.updates.server import fleetlock_store
    from flotilla.updates.server.dashboard import actions

    age = timedelta(seconds=older_than) if older_than is not None else None
    with _database(db) as engine:
        try:
            dropped = fleetlock_store.release_stale(
                engine, group=group, node_id=node_id, older_than=age, now=datetime.now(UTC)
            )
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        who = _cli_actor("fleetlock release")
        for r in dropped:
            actions.log_lock_release(engine, "", r["group"], r["id"], who)
            typer.echo(f"released {r['group']}/{r['id']} (held since {r['acquired_at']})")
    typer.echo(f"{len(dropped)} lock(s) released")
