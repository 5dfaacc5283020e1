"""The node-side commands of ``flotilla updates``: agent (and, registered from their own
modules, simulate, reboot-coordinator and fleetlock). Kept out of :mod:`cli` so the server's
command file stays small; :func:`register` adds them to its Typer app."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from flotilla.updates.agent import Agent, AgentSettings, Schedule, merge_confs, status
from flotilla.updates.omaha_client import Identity
from flotilla.updates.policies import parse_duration
from flotilla.updates.settings import DEFAULT_DB

CONF_FILES = (Path("/etc/flatcar/update.conf"), Path("/usr/share/flatcar/update.conf"))
RELEASE_FILE = Path("/usr/share/flatcar/release")
STATE_DIR = Path("/var/lib/flotilla-agent")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _seconds(text: str, flag: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=flag) from None


def agent(
    slot_a: Annotated[Path, typer.Option("--slot-a", help="Slot A: file, dir or block device.")],
    slot_b: Annotated[Path, typer.Option("--slot-b", help="Slot B: file, dir or block device.")],
    config: Annotated[
        list[Path] | None,
        typer.Option("--config", help="update.conf files, most important first "
                     "(default /etc/flatcar/update.conf, /usr/share/flatcar/update.conf)."),
    ] = None,
    release_file: Annotated[
        Path, typer.Option("--release-file", help="FLATCAR_RELEASE_VERSION/_BOARD (first run).")
    ] = RELEASE_FILE,
    server: Annotated[str | None, typer.Option("--server", help="Overrides SERVER.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Overrides GROUP (track).")] = None,
    machine_alias: Annotated[str | None, typer.Option("--machine-alias")] = None,
    machine_id: Annotated[
        str | None, typer.Option("--machine-id", help="Default: /etc/machine-id.")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Running version on the first run.")
    ] = None,
    state_dir: Annotated[Path, typer.Option("--state-dir")] = STATE_DIR,
    boot_id_file: Annotated[Path, typer.Option("--boot-id-file")] = BOOT_ID,
    interval: Annotated[str, typer.Option("--interval", help="Between checks.")] = "45m",
    fuzz: Annotated[str, typer.Option("--fuzz", help="45m and 10m: 45 ± 5 min.")] = "10m",
    initial_delay: Annotated[str, typer.Option("--initial-delay")] = "7m",
    reboot_strategy: Annotated[
        str | None,
        typer.Option("--reboot-strategy",
                     help="off (default; a coordinator reboots), reboot, or fleetlock. "
                          "Default: REBOOT_STRATEGY from update.conf."),
    ] = None,
    reboot_command: Annotated[str, typer.Option("--reboot-command")] = "systemctl reboot",
    fleetlock_url: Annotated[
        str | None, typer.Option("--fleetlock-url", help="Default: FLEETLOCK_URL.")
    ] = None,
    fleetlock_group: Annotated[
        str | None, typer.Option("--fleetlock-group", help="Default: FLEETLOCK_GROUP or default.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One check now, then exit.")] = False,
    show_status: Annotated[
        bool, typer.Option("--status", help="Print the state as JSON and exit.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Check for updates like update_engine; stage them in the inactive A/B slot."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    conf = merge_confs(*(_read(p) for p in config or CONF_FILES), _read(release_file))
    url = server or conf.get("SERVER", "")
    mid = machine_id or _read(Path("/etc/machine-id")).strip()
    ver = version or conf.get("FLATCAR_RELEASE_VERSION", "")
    board = conf.get("FLATCAR_RELEASE_BOARD", "amd64-usr")
    strategy = (reboot_strategy or conf.get("REBOOT_STRATEGY", "off")).lower()
    if strategy not in ("off", "reboot", "fleetlock"):
        raise typer.BadParameter("use off, reboot or fleetlock", param_hint="--reboot-strategy")
    lock_url = fleetlock_url or conf.get("FLEETLOCK_URL", "")
    if strategy == "fleetlock" and not lock_url.startswith(("http://", "https://")):
        raise typer.BadParameter("fleetlock needs --fleetlock-url", param_hint="--fleetlock-url")
    settings = AgentSettings(
        server=url,
        state_dir=state_dir,
        slot_a=slot_a,
        slot_b=slot_b,
        identity=Identity(
            machine_id=mid,
            version=ver or "0.0.0",
            track=group or conf.get("GROUP", "stable"),
            machine_alias=machine_alias if machine_alias is not None
            else conf.get("MACHINE_ALIAS", ""),
            board=board,
        ),
        boot_id_file=boot_id_file,
        reboot_strategy=strategy,
        reboot_command=tuple(shlex.split(reboot_command)),
        fleetlock_url=lock_url,
        fleetlock_group=fleetlock_group or conf.get("FLEETLOCK_GROUP", "default"),
        schedule=Schedule(
            interval=_seconds(interval, "--interval"),
            fuzz=_seconds(fuzz, "--fuzz"),
            initial_delay=_seconds(initial_delay, "--initial-delay"),
        ),
    )
    if show_status:
        typer.echo(json.dumps(status(settings), indent=2))
        return
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter("set SERVER in update.conf or use --server", param_hint="--server")
    if not mid:
        raise typer.BadParameter("no /etc/machine-id: pass --machine-id", param_hint="--machine-id")
    if not ver and not (state_dir / "state.json").exists():
        raise typer.BadParameter("no release file: pass --version", param_hint="--version")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        a = Agent(settings)
        await a.run(stop, once=once)
        return 1 if once and a.failures else 0

    raise typer.Exit(asyncio.run(main()))


def reboot_coordinator(
    node_agent: Annotated[
        bool, typer.Option("--node-agent", help="Run the node side (one per node).")
    ] = False,
    node: Annotated[
        str | None, typer.Option("--node", envvar="NODE_NAME", help="This node (agent mode).")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Default: in-cluster, else $KUBECONFIG.")
    ] = None,
    max_rebooting: Annotated[int, typer.Option("--max-rebooting", min=1)] = 1,
    window: Annotated[
        list[str] | None,
        typer.Option("--window", help='Reboot window, e.g. "Sat 02:00-06:00" (repeatable).'),
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone")] = "UTC",
    delay: Annotated[str, typer.Option("--delay", help="Pause after each reboot, e.g. 10m.")] = "0",
    before: Annotated[
        list[str] | None,
        typer.Option("--before-reboot-annotation", help="Must be \"true\" before a reboot."),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option("--after-reboot-annotation", help="Must be \"true\" after a reboot."),
    ] = None,
    selector: Annotated[
        list[str] | None, typer.Option("--selector", help="Only nodes with label k=v.")
    ] = None,
    reboot_command: Annotated[
        str, typer.Option("--reboot-command", help="Agent mode: how to reboot.")
    ] = "systemctl reboot",
    reboot_needed_file: Annotated[
        Path | None,
        typer.Option("--reboot-needed-file",
                     help="Agent mode: the update agent's marker, e.g. "
                          "/var/lib/flotilla-agent/reboot-needed."),
    ] = None,
    boot_id_file: Annotated[Path, typer.Option("--boot-id-file")] = BOOT_ID,
    drain_timeout: Annotated[str, typer.Option("--drain-timeout")] = "10m",
    interval: Annotated[str, typer.Option("--interval")] = "10s",
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Coordinate node reboots in Kubernetes (FLUO-class), or run the node agent."""
    import shlex
    import threading
    from datetime import timedelta

    from flotilla.core.kube import client_from_environment, client_from_kubeconfig
    from flotilla.updates.policies import parse_window
    from flotilla.updates.reboot_coordinator import Coordinator, NodeAgent, NodeAgentSettings
    from flotilla.updates.reboots import CoordinatorConfig

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        windows = tuple(parse_window(w) for w in window or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--window") from None
    labels = {}
    for sel in selector or []:
        k, sep, v = sel.partition("=")
        if not sep:
            raise typer.BadParameter("use key=value", param_hint="--selector")
        labels[k] = v
    if node_agent and not node:
        raise typer.BadParameter("agent mode needs --node (or NODE_NAME)", param_hint="--node")
    client = client_from_kubeconfig(kubeconfig) if kubeconfig else client_from_environment()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if node_agent:
        assert node is not None
        NodeAgent(client, NodeAgentSettings(
            node=node, reboot_command=shlex.split(reboot_command),
            reboot_needed_file=reboot_needed_file, boot_id_file=boot_id_file,
            drain_timeout=_seconds(drain_timeout, "--drain-timeout"),
            interval=_seconds(interval, "--interval"),
        )).run(stop)
        return
    cfg = CoordinatorConfig(
        max_rebooting=max_rebooting, windows=windows, timezone=timezone,
        delay=timedelta(seconds=_seconds(delay, "--delay")),
        before_annotations=tuple(before or ()), after_annotations=tuple(after or ()),
    )
    Coordinator(client, cfg, interval=_seconds(interval, "--interval"),
                selector=labels or None).run(stop)


def simulate(
    server: Annotated[str, typer.Option("--server", help="Omaha URL, e.g. http://h:8000/v1/update/")],
    instances: Annotated[int, typer.Option("--instances", "-n", min=1)] = 100,
    track: Annotated[str, typer.Option("--track")] = "stable",
    version: Annotated[str, typer.Option("--version", help="Where the machines start.")] = "0.0.1",
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="Virtual seconds per real second.")
    ] = 60.0,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit 0 once all run the channel's version.")
    ] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Real seconds.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="The version to wait for (else from the API).")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="FLOTILLA_UPDATES_READ_TOKENS",
                                 help="Read token, to look up the channel's version.")
    ] = None,
    failure_rate: Annotated[float, typer.Option("--failure-rate", min=0.0, max=1.0)] = 0.0,
    reboot_delay: Annotated[str, typer.Option("--reboot-delay")] = "10m",
    download: Annotated[str, typer.Option("--download", help="Download+install time.")] = "2m",
    interval: Annotated[str, typer.Option("--interval")] = "45m",
    fuzz: Annotated[str, typer.Option("--fuzz")] = "10m",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 1,
) -> None:
    """Run N simulated update_engine machines against a server, with a live rollout view."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flotilla.updates.models import FLATCAR_APP_ID
    from flotilla.updates.simulator import Fleet, SimSettings, target_from_api
    from flotilla.updates.simulator import simulate as run_sim

    if until_done and target is None:
        if not token:
            raise typer.BadParameter("--until-done needs --target or --token",
                                     param_hint="--target")
        try:
            target = target_from_api(server, token.split(",")[0], FLATCAR_APP_ID, track)
        except Exception as e:
            raise typer.BadParameter(f"cannot read the channel from the API: {e}") from None
        if target is None:
            raise typer.BadParameter(f"no group with track {track} or no channel version")
    settings = SimSettings(
        server=server, instances=instances, track=track, version=version, time_scale=time_scale,
        schedule=Schedule(interval=_seconds(interval, "--interval"), fuzz=_seconds(fuzz, "--fuzz"),
                          initial_delay=0),
        download=_seconds(download, "--download"),
        reboot_delay=_seconds(reboot_delay, "--reboot-delay"),
        failure_rate=failure_rate, concurrency=concurrency, seed=seed,
    )
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        on_target = progress.add_task(f"on {target or 'target'}", total=instances)
        states = progress.add_task("", total=None)

        def tick(fleet: Fleet, elapsed: float) -> None:
            versions = fleet.versions()
            if target is not None:
                progress.update(on_target, completed=versions.get(target, 0))
            t = fleet.tally
            vs = "  ".join(f"{v}: {n}" for v, n in sorted(versions.items()))
            st = "  ".join(f"{k}: {n}" for k, n in sorted(fleet.states().items()))
            rate = t.checkins / elapsed if elapsed else 0.0
            progress.update(states, description=f"{vs} | {st} | {t.checkins} check-ins "
                            f"({rate:.0f}/s), {t.failures} failed, {t.errors} errors")

        ok = asyncio.run(run_sim(settings, target=target if until_done else None,
                                 timeout=timeout, on_tick=tick))
    if until_done and not ok:
        console.print(f"[red]timed out[/red]: not every machine reached {target}")
        raise typer.Exit(1)


fleetlock_app = typer.Typer(help="FleetLock reboot slots: groups, holders, stale locks.",
                            no_args_is_help=True)
DbOption = typer.Option("--db", envvar="FLOTILLA_UPDATES_DB", help="Database URL or SQLite path.")


def _db(db: str) -> Any:
    from flotilla.updates.schema import make_engine, migrate

    engine = make_engine(db, pool_size=2)
    migrate(engine)
    return engine


@fleetlock_app.command("holders")
def fleetlock_holders(
    db: Annotated[str, DbOption] = DEFAULT_DB,
    group: Annotated[str | None, typer.Option("--group")] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
) -> None:
    """Who holds a reboot slot now, oldest first."""
    from rich.console import Console
    from rich.table import Table

    from flotilla.updates import fleetlock

    rows = fleetlock.list_holders(_db(db), group)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("GROUP", "ID", "ACQUIRED"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["group"], r["id"], (r["acquired_at"] or "")[:19])
    Console(width=200).print(table)


@fleetlock_app.command("groups")
def fleetlock_groups(
    db: Annotated[str, DbOption] = DEFAULT_DB,
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
) -> None:
    """Groups with their maximum, windows and number of holders."""
    from rich.console import Console
    from rich.table import Table

    from flotilla.updates import fleetlock

    rows = fleetlock.list_groups(_db(db))
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for col in ("GROUP", "HELD", "MAX", "WINDOWS", "TIMEZONE"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(r["name"], str(r["held"]), str(r["max_holders"]),
                      ", ".join(r["windows"]) or "any time", r["timezone"])
    Console(width=200).print(table)


@fleetlock_app.command("release")
def fleetlock_release(
    db: Annotated[str, DbOption] = DEFAULT_DB,
    group: Annotated[str | None, typer.Option("--group")] = None,
    node_id: Annotated[str | None, typer.Option("--id", help="The holder's id.")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Holders older than this, e.g. 2h.")
    ] = None,
) -> None:
    """Release stale locks (a node that died holding its slot); name a group, id or age."""
    from datetime import UTC, datetime, timedelta

    from flotilla.updates import fleetlock

    age = timedelta(seconds=_seconds(older_than, "--older-than")) if older_than else None
    try:
        dropped = fleetlock.release_stale(_db(db), group=group, node_id=node_id,
                                          older_than=age, now=datetime.now(UTC))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    for r in dropped:
        typer.echo(f"released {r['group']}/{r['id']} (held since {r['acquired_at']})")
    typer.echo(f"{len(dropped)} lock(s) released")


def register(app: typer.Typer) -> None:
    """Add the node-side commands to ``flotilla updates``."""
    app.command("agent")(agent)
    app.command("reboot-coordinator")(reboot_coordinator)
    app.command("simulate")(simulate)
    app.add_typer(fleetlock_app, name="fleetlock")
