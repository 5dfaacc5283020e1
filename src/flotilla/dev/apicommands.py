"""``flotilla dev get|describe|wait|logs|trigger|enable|disable|args``: Tilt's CLI verbs, spoken to
a running ``flotilla dev up`` through its JSON API on 127.0.0.1:10350 (the data the UI shows).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import typer

from flotilla.core.cli import duration_option, emit, output_option
from flotilla.core.errors import FlotillaError

PortOpt = typer.Option(10350, "--port", envvar="FLOTILLA_DEV_PORT", help="Port of the dev UI/API.")
HostOpt = typer.Option("127.0.0.1", "--host", help="Host of the dev UI/API.")
NamesArg = typer.Argument(None, help="Resources (default: all enabled).")


class ApiError(FlotillaError):
    """The running ``flotilla dev up`` could not be reached or refused the request."""


def call(host: str, port: int, method: str, path: str, body: Any = None) -> Any:
    url = f"http://{host}:{port}{path}"
    try:
        resp = httpx.request(method, url, json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise ApiError(f"no `flotilla dev up` answering on {host}:{port} ({exc})") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise ApiError(f"{method} {path}: {detail}")
    return resp.json()


def _row(item: dict[str, Any]) -> str:
    last = item.get("last_build") or {}
    return (
        f"{item['name']:<28} {item.get('kind', ''):<14} {item.get('status', ''):<10} "
        f"{last.get('action', '') or '-':<12} {item.get('error', '')}".rstrip()
    )


def register(app: typer.Typer) -> None:
    """Add the API verbs to ``flotilla dev``."""

    @app.command()
    def get(
        output: str = output_option(),
        host: str = HostOpt,
        port: int = PortOpt,
    ) -> None:
        """List the resources of the running ``up`` (name, kind, status, last update, error)."""
        items = call(host, port, "GET", "/api/resources")["resources"]

        def table() -> None:
            typer.echo(f"{'NAME':<28} {'KIND':<14} {'STATUS':<10} {'LAST':<12} ERROR")
            for item in items:
                typer.echo(_row(item))

        emit(items, output, table)

    @app.command()
    def describe(
        name: str,
        output: str = output_option("json", "yaml"),
        host: str = HostOpt,
        port: int = PortOpt,
    ) -> None:
        """Everything the UI knows about one resource."""
        emit(call(host, port, "GET", f"/api/resources/{name}"), output)

    @app.command()
    def wait(
        names: list[str] = NamesArg,
        timeout: float = duration_option("5m", "--timeout", help="Time to give up after (exit 1)."),
        host: str = HostOpt,
        port: int = PortOpt,
    ) -> None:
        """Wait until the resources are ready, as ``tilt wait --for=condition=Ready``."""
        deadline = time.monotonic() + timeout
        while True:
            items = call(host, port, "GET", "/api/resources")["resources"]
            chosen = [
                i for i in items
                if (i["name"] in names if names else i["status"] != "disabled")
                and i["name"] != "(Tiltfile)"
            ]  # fmt: skip
            missing = set(names or []) - {i["name"] for i in items}
            if missing:
                raise ApiError(f"no resource {sorted(missing)[0]}")
            if all(i["status"] == "ready" for i in chosen):
                typer.echo(f"ready: {', '.join(i['name'] for i in chosen)}")
                return
            if time.monotonic() > deadline:
                waiting = [f"{i['name']} ({i['status']})" for i in chosen if i["status"] != "ready"]
                raise ApiError(f"timed out waiting for {', '.join(waiting)}")
            time.sleep(0.5)

    @app.command()
    def logs(
        name: str,
        follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
        host: str = HostOpt,
        port: int = PortOpt,
    ) -> None:
        """A resource's log (``(Tiltfile)`` for the Tiltfile's)."""
        since = 0
        while True:
            got = call(host, port, "GET", f"/api/logs/{name}?since={since}")
            for line in got["lines"]:
                typer.echo(line)
            since = got["next"]
            if not follow:
                return
            time.sleep(0.5)

    @app.command()
    def trigger(name: str, host: str = HostOpt, port: int = PortOpt) -> None:
        """Update a resource now (pending changes, else a full update)."""
        call(host, port, "POST", f"/api/trigger/{name}")
        typer.echo(f"triggered {name}")

    @app.command()
    def enable(name: str, host: str = HostOpt, port: int = PortOpt) -> None:
        """Enable a resource (and update it)."""
        call(host, port, "POST", f"/api/enable/{name}")
        typer.echo(f"enabled {name}")

    @app.command()
    def disable(name: str, host: str = HostOpt, port: int = PortOpt) -> None:
        """Disable a resource: file changes no longer update it."""
        call(host, port, "POST", f"/api/disable/{name}")
        typer.echo(f"disabled {name}")

    @app.command(context_settings={"allow_extra_args": True})
    def args(
        ctx: typer.Context,
        clear: bool = typer.Option(False, "--clear", help="Set no arguments."),
        host: str = HostOpt,
        port: int = PortOpt,
    ) -> None:
        """Show, or with ``-- ARGS`` replace, the Tiltfile arguments; the Tiltfile reloads."""
        new = list(ctx.args)
        if not new and not clear:
            typer.echo(" ".join(call(host, port, "GET", "/api/args")["args"]))
            return
        call(host, port, "POST", "/api/args", {"args": new})
        typer.echo(f"args: {' '.join(new)}")
