"""The node-side commands of ``flotilla updates``: ``agent`` and ``simulate``.

Only Typer and the standard library load at import time, so ``--help`` stays fast; each command
imports the agent (httpx) or the simulator when it runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from flotilla.core.cli import duration_option
from flotilla.core.errors import FlotillaError
from flotilla.updates.options import BOOT_ID, read_text

CONF_FILES = (Path("/etc/flatcar/update.conf"), Path("/usr/share/flatcar/update.conf"))
RELEASE_FILE = Path("/usr/share/flatcar/release")
STATE_DIR = Path("/var/lib/flotilla-agent")


class SimulationTimeoutError(FlotillaError):
    """``simulate --until-done`` ran out of time before every machine was on the target."""


def agent(
    slot_a: Annotated[Path, typer.Option("--slot-a", help="Slot A: file, dir or block device.")],
    slot_b: Annotated[Path, typer.Option("--slot-b", help="Slot B: file, dir or block device.")],
    config: Annotated[
        list[Path] | None,
        typer.Option(
            "--config",
            help="update.conf files, most important first "
            "(default /etc/flatcar/update.conf, /usr/share/flatcar/update.conf).",
        ),
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
    interval: float = duration_option("45m", "--interval", help="Between checks."),
    fuzz: float = duration_option("10m", "--fuzz", help="45m and 10m: 45 ± 5 min."),
    initial_delay: float = duration_option("7m", "--initial-delay"),
    reboot_strategy: Annotated[
        str | None,
        typer.Option(
            "--reboot-strategy",
            help="off (default; a coordinator reboots), reboot, or fleetlock. "
            "Default: REBOOT_STRATEGY from update.conf.",
        ),
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
    import asyncio
    import shlex
    import signal

    from flotilla.updates.node.agent import Agent, AgentSettings, Schedule, merge_confs, status
    from flotilla.updates.node.omaha_client import Identity

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    conf = merge_confs(*(read_text(p) for p in config or CONF_FILES), read_text(release_file))
    url = server or conf.get("SERVER", "")
    mid = machine_id or read_text(Path("/etc/machine-id")).strip()
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
            machine_alias=machine_alias
            if machine_alias is not None
            else conf.get("MACHINE_ALIAS", ""),
            board=board,
        ),
        boot_id_file=boot_id_file,
        reboot_strategy=strategy,
        reboot_command=tuple(shlex.split(reboot_command)),
        fleetlock_url=lock_url,
        fleetlock_group=fleetlock_group or conf.get("FLEETLOCK_GROUP", "default"),
        schedule=Schedule(interval=interval, fuzz=fuzz, initial_delay=initial_delay),
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


def simulate(
    server: Annotated[
        str, typer.Option("--server", help="Omaha URL, e.g. http://h:8000/v1/update/")
    ],
    instances: Annotated[int, typer.Option("--instances", min=1)] = 100,
    track: Annotated[str, typer.Option("--track")] = "stable",
    version: Annotated[str, typer.Option("--version", help="Where the machines start.")] = "0.0.1",
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="Virtual seconds per real second.")
    ] = 60.0,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit 0 once all run the channel's version.")
    ] = False,
    timeout: float = duration_option("0s", "--timeout", help="Real time to wait (0: forever)."),
    target: Annotated[
        str | None, typer.Option("--target", help="The version to wait for (else from the API).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLOTILLA_UPDATES_READ_TOKENS",
            help="Read token, to look up the channel's version.",
        ),
    ] = None,
    failure_rate: Annotated[float, typer.Option("--failure-rate", min=0.0, max=1.0)] = 0.0,
    reboot_delay: float = duration_option("10m", "--reboot-delay"),
    download: float = duration_option("2m", "--download", help="Download+install time."),
    interval: float = duration_option("45m", "--interval"),
    fuzz: float = duration_option("10m", "--fuzz"),
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 1,
) -> None:
    """Run N simulated update_engine machines against a server, with a live rollout view."""
    import asyncio

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flotilla.core.progress import activity, on_terminal
    from flotilla.updates.models import FLATCAR_APP_ID
    from flotilla.updates.node.agent import Schedule
    from flotilla.updates.node.simulator import Fleet, SimSettings, target_from_api
    from flotilla.updates.node.simulator import simulate as run_sim

    if until_done and target is None:
        if not token:
            raise typer.BadParameter(
                "--until-done needs --target or --token", param_hint="--target"
            )
        try:
            target = target_from_api(server, token.split(",")[0], FLATCAR_APP_ID, track)
        except Exception as e:
            raise typer.BadParameter(f"cannot read the channel from the API: {e}") from None
        if target is None:
            raise typer.BadParameter(f"no group with track {track} or no channel version")
    settings = SimSettings(
        server=server,
        instances=instances,
        track=track,
        version=version,
        time_scale=time_scale,
        schedule=Schedule(interval=interval, fuzz=fuzz, initial_delay=0),
        download=download,
        reboot_delay=reboot_delay,
        failure_rate=failure_rate,
        concurrency=concurrency,
        seed=seed,
    )

    def describe(fleet: Fleet, elapsed: float) -> str:
        t = fleet.tally
        vs = "  ".join(f"{v}: {n}" for v, n in sorted(fleet.versions().items()))
        st = "  ".join(f"{k}: {n}" for k, n in sorted(fleet.states().items()))
        rate = t.checkins / elapsed if elapsed else 0.0
        return (
            f"{vs} | {st} | {t.checkins} check-ins ({rate:.0f}/s), "
            f"{t.failures} failed, {t.errors} errors"
        )

    wait_for = target if until_done else None
    limit = timeout or None
    if not on_terminal():  # a log or a pipe: a plain line every few seconds (core.progress)
        with activity(f"simulating {instances} machines") as update:
            ok = asyncio.run(
                run_sim(
                    settings,
                    target=wait_for,
                    timeout=limit,
                    on_tick=lambda fleet, elapsed: update(describe(fleet, elapsed)),
                )
            )
    else:
        console = Console(stderr=True)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            on_target = progress.add_task(f"on {target or 'target'}", total=instances)
            states = progress.add_task("", total=None)

            def tick(fleet: Fleet, elapsed: float) -> None:
                if target is not None:
                    progress.update(on_target, completed=fleet.versions().get(target, 0))
                progress.update(states, description=describe(fleet, elapsed))

            ok = asyncio.run(run_sim(settings, target=wait_for, timeout=limit, on_tick=tick))
    if until_done and not ok:
        raise SimulationTimeoutError(f"timed out: not every machine reached {target}")
