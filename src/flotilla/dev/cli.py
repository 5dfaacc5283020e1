"""``flotilla dev``: run a Tiltfile — ``up`` (loop + UI), ``ci`` (once, exit code), ``render``,
``down``. Extra arguments after ``--`` go to the Tiltfile's ``config.parse()``, as with Tilt.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flotilla.core.cli import (
    KUBECONFIG_OPTION,
    MANIFEST_FORMATS,
    duration_option,
    namespace_option,
    output_option,
    system_app,
)
from flotilla.core.errors import cli_message
from flotilla.dev.apicommands import register as register_api_commands
from flotilla.dev.tiltfile.errors import TiltfileError

if TYPE_CHECKING:  # the engine pulls in docker and starlark: imported when a command runs
    from flotilla.dev.runtime.engine import Engine

app = system_app("Inner dev loop: run Tiltfiles (build, deploy, live update, web UI).")
EXTRA = {"allow_extra_args": True}
"""Tiltfile arguments follow ``--``; an unknown flag before it is a usage error, not an argument."""

FileOpt = typer.Option(Path("Tiltfile"), "--file", "-f", help="The Tiltfile to run.")
KubeOpt = KUBECONFIG_OPTION
NsOpt = namespace_option(
    "", help="Namespace for objects that name none (default: the kubeconfig's)."
)
RegOpt = typer.Option(
    "",
    "--registry",
    envvar="FLOTILLA_DEV_REGISTRY",
    help="Registry host:port to push to when the Tiltfile has no default_registry().",
)
DockerOpt = typer.Option(
    None,
    "--docker-host",
    envvar="DOCKER_HOST",
    help="dockerd to build with (unix:///... or tcp://...).",
)


def _kubeconfig(path: Path | None) -> Path | None:
    """The shared order (flag, $KUBECONFIG, ~/.kube/config); None when none: the dev loop
    needs a kubeconfig file only once a Tiltfile deploys to Kubernetes."""
    from flotilla.core.kube import kubeconfig_path

    return kubeconfig_path(path)


def _echo(name: str, line: str) -> None:
    typer.echo(f"{name[:18]:>18} │ {line}", err=False)


def _engine(
    ctx: typer.Context,
    tiltfile: Path,
    kubeconfig: Path | None,
    namespace: str,
    registry: str,
    docker_host: str | None,
    *,
    ci: bool,
    quiet: bool,
) -> Engine:
    from flotilla.dev.runtime.engine import Engine, EngineConfig

    cfg = EngineConfig(
        tiltfile=tiltfile,
        kubeconfig=_kubeconfig(kubeconfig),
        namespace=namespace,
        args=list(ctx.args),
        registry=registry,
        docker_host=docker_host,
        ci=ci,
        watch=not ci,
        echo=None if quiet else _echo,
    )
    engine = Engine(cfg)
    try:
        engine.load()
    except (TiltfileError, ValueError) as exc:
        typer.echo(cli_message(exc), err=True)
        if ci:
            engine.stop()
            raise typer.Exit(1) from None
        typer.echo("flotilla dev: waiting for the Tiltfile to be fixed", err=True)
    return engine


@app.command(context_settings=EXTRA)
def render(
    ctx: typer.Context,
    tiltfile: Path = FileOpt,
    registry: str = RegOpt,
    output: str = output_option(*MANIFEST_FORMATS),
) -> None:
    """Evaluate the Tiltfile and print its resources and manifests; touches nothing."""
    from flotilla.dev.plan.context import Matcher, read_ignore_file
    from flotilla.dev.plan.render import planned_refs
    from flotilla.dev.plan.render import render as render_yaml
    from flotilla.dev.plan.resources import assemble
    from flotilla.dev.tiltfile.evaluator import evaluate

    try:
        result, _ = evaluate(tiltfile, args=list(ctx.args))
        resources = assemble(result)
        ignore = read_ignore_file(str(tiltfile.resolve().parent / ".tiltignore"))
        tiltignore = ((str(tiltfile.resolve().parent), Matcher.of(ignore)),)
        refs = planned_refs(result, tiltignore, registry)
    except (ValueError, OSError) as exc:  # flotilla.cli shows TiltfileError and its exit code
        raise TiltfileError(str(exc)) from exc
    for line in result.logs:
        typer.echo(line.rstrip("\n"), err=True)
    text = render_yaml(result, resources, refs)
    if output == "json":
        import json

        import yaml

        typer.echo(json.dumps(list(yaml.safe_load_all(text)), indent=2, default=str))
        return
    typer.echo(text, nl=False)


@app.command(context_settings=EXTRA)
def up(
    ctx: typer.Context,
    tiltfile: Path = FileOpt,
    kubeconfig: Path | None = KubeOpt,
    namespace: str = NsOpt,
    registry: str = RegOpt,
    docker_host: str | None = DockerOpt,
    host: str = typer.Option("127.0.0.1", help="Address the web UI listens on."),
    port: int = typer.Option(10350, help="Port of the web UI (0: no UI)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not stream logs here."),
) -> None:
    """Build, deploy and watch until interrupted; the web UI shows every resource."""
    engine = _engine(
        ctx, tiltfile, kubeconfig, namespace, registry, docker_host, ci=False, quiet=quiet
    )
    ui = None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if port:
            from flotilla.dev.ui import UIServer

            ui = UIServer(engine, host, port)
            ui.start()
            typer.echo(f"flotilla dev: UI on {ui.url}", err=True)
        engine.start()
        stop.wait()
    finally:
        typer.echo(
            "flotilla dev: stopping (deployed objects stay; `flotilla dev down` removes them)",
            err=True,
        )
        if ui is not None:
            ui.stop()
        engine.stop()


@app.command(context_settings=EXTRA)
def ci(
    ctx: typer.Context,
    tiltfile: Path = FileOpt,
    kubeconfig: Path | None = KubeOpt,
    namespace: str = NsOpt,
    registry: str = RegOpt,
    docker_host: str | None = DockerOpt,
    timeout: float = duration_option(
        "0s", "--timeout", help="Time to give up after (0: ci_settings or 30m)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not stream logs here."),
) -> None:
    """Bring everything up once; exit 0 when all resources are healthy, 1 with the failing
    resource's log on error or timeout."""
    engine = _engine(
        ctx, tiltfile, kubeconfig, namespace, registry, docker_host, ci=True, quiet=quiet
    )
    assert engine.result is not None  # ci exits on a Tiltfile that does not load
    limit = timeout or engine.result.settings.ci_timeout_secs
    deadline = time.monotonic() + limit
    code, failing = 1, ""
    try:
        engine.start()
        while True:
            done, failing = engine.ci_result()
            if done:
                code = 1 if failing else 0
                break
            if time.monotonic() > deadline:
                waiting = [
                    s.resource.name
                    for s in engine.states.values()
                    if s.status not in ("ready", "disabled")
                ]
                failing = waiting[0] if waiting else ""
                typer.echo(
                    f"Error: timed out after {limit:.0f}s waiting for {', '.join(waiting)}",
                    err=True,
                )
                break
            time.sleep(0.2)
    finally:
        engine.stop()
    if code == 0:
        typer.echo("flotilla dev ci: all resources ready", err=True)
        return
    st = engine.state(failing) if failing else None
    if st is not None:
        typer.echo(f"Error: resource {st.resource.name} failed: {st.error}", err=True)
        typer.echo(f"--- last log lines of {st.resource.name} ---", err=True)
        for line in list(st.log)[-40:]:
            typer.echo(line, err=True)
    else:
        typer.echo(f"Error: {failing}", err=True)
    raise typer.Exit(1)


@app.command(context_settings=EXTRA)
def down(
    ctx: typer.Context,
    tiltfile: Path = FileOpt,
    kubeconfig: Path | None = KubeOpt,
    namespace: str = NsOpt,
    docker_host: str | None = DockerOpt,
    delete_namespaces: bool = typer.Option(False, help="Also delete Namespace objects."),
) -> None:
    """Stop a running ``up`` for this Tiltfile and delete what it applied and started."""
    from flotilla.dev.teardown import teardown

    try:
        summary = teardown(
            tiltfile,
            _kubeconfig(kubeconfig),
            namespace,
            list(ctx.args),
            docker_host,
            delete_namespaces=delete_namespaces,
        )
    except ValueError as exc:  # flotilla.cli shows TiltfileError and its exit code
        raise TiltfileError(str(exc)) from exc
    typer.echo(summary)


register_api_commands(app)
