"""``flotilla updates reboot-coordinator``: the coordinator, or with ``--node-agent`` its agent.

Only Typer and the standard library load at import time; the Kubernetes client loads when the
command runs.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from flotilla.core.cli import KUBECONFIG_OPTION, duration_option
from flotilla.updates.options import BOOT_ID


def reboot_coordinator(
    node_agent: Annotated[
        bool, typer.Option("--node-agent", help="Run the node side (one per node).")
    ] = False,
    node: Annotated[
        str | None, typer.Option("--node", envvar="NODE_NAME", help="This node (agent mode).")
    ] = None,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    max_rebooting: Annotated[int, typer.Option("--max-rebooting", min=1)] = 1,
    window: Annotated[
        list[str] | None,
        typer.Option("--window", help='Reboot window, e.g. "Sat 02:00-06:00" (repeatable).'),
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone")] = "UTC",
    delay: float = duration_option("0s", "--delay", help="Pause after each reboot, e.g. 10m."),
    before: Annotated[
        list[str] | None,
        typer.Option("--before-reboot-annotation", help='Must be "true" before a reboot.'),
    ] = None,
    after: Annotated[
        list[str] | None,
        typer.Option("--after-reboot-annotation", help='Must be "true" after a reboot.'),
    ] = None,
    selector: Annotated[
        list[str] | None, typer.Option("--selector", help="Only nodes with label k=v.")
    ] = None,
    reboot_command: Annotated[
        str, typer.Option("--reboot-command", help="Agent mode: how to reboot.")
    ] = "systemctl reboot",
    reboot_needed_file: Annotated[
        Path | None,
        typer.Option(
            "--reboot-needed-file",
            help="Agent mode: the update agent's marker, e.g. "
            "/var/lib/flotilla-agent/reboot-needed.",
        ),
    ] = None,
    boot_id_file: Annotated[Path, typer.Option("--boot-id-file")] = BOOT_ID,
    drain_timeout: float = duration_option("10m", "--drain-timeout"),
    interval: float = duration_option("10s", "--interval"),
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Coordinate node reboots in Kubernetes (FLUO-class), or run the node agent."""
    import shlex
    import threading
    from datetime import timedelta

    from flotilla.core.kube import client_for
    from flotilla.updates.policies import parse_window
    from flotilla.updates.reboots.coordinator import Coordinator, NodeAgent, NodeAgentSettings
    from flotilla.updates.reboots.planning import CoordinatorConfig

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
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
    client = client_for(kubeconfig)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if node_agent:
        assert node is not None
        NodeAgent(
            client,
            NodeAgentSettings(
                node=node,
                reboot_command=shlex.split(reboot_command),
                reboot_needed_file=reboot_needed_file,
                boot_id_file=boot_id_file,
                drain_timeout=drain_timeout,
                interval=interval,
            ),
        ).run(stop)
        return
    cfg = CoordinatorConfig(
        max_rebooting=max_rebooting,
        windows=windows,
        timezone=timezone,
        delay=timedelta(seconds=delay),
        before_annotations=tuple(before or ()),
        after_annotations=tuple(after or ()),
    )
    Coordinator(client, cfg, interval=interval, selector=labels or None).run(stop)
