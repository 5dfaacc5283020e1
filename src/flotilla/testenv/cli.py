"""``flotilla testenv``: build and run a real Kubernetes control plane on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from flotilla.core.cli import system_app
from flotilla.testenv.build import KUBERNETES_VERSION, BuildSpec, default_cache_root, run_build
from flotilla.testenv.cluster import ControlPlane
from flotilla.testenv.components import default_state_dir
from flotilla.testenv.errors import TestEnvError
from flotilla.testenv.images import build_images

app = system_app(
    "A real Kubernetes control plane (etcd, API server, controllers, scheduler, kwok)."
)
console = Console(stderr=True)

CacheOption = typer.Option(
    None, "--cache-dir", help="Where built binaries live [default: ~/.cache/flotilla/k8s]."
)
StateOption = typer.Option(
    None, "--state-dir", help="Where this environment keeps its state, logs and kubeconfig."
)
VersionOption = typer.Option(KUBERNETES_VERSION, "--kubernetes-version", help="k8s.io/kubernetes")


def _spec(cache_dir: Path | None, version: str) -> BuildSpec:
    return BuildSpec(kubernetes_version=version, cache_root=cache_dir or default_cache_root())


@app.command()
def build(
    cache_dir: Path | None = CacheOption,
    kubernetes_version: str = VersionOption,
    images: bool = typer.Option(
        True, "--images/--no-images",
        help="Also build the local images (pause, flotilla.local/busybox, flotilla.local/python).",
    ),
) -> None:
    """Build etcd, kube-apiserver, controller-manager, scheduler, kubelet, kubectl and kwok once.

    The images the real node runs are built too (debootstrap, about a minute each, once).
    """
    spec = _spec(cache_dir, kubernetes_version)
    started = time.monotonic()
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(step: str, line: str) -> None:
            if step not in tasks:
                for task_id in tasks.values():
                    progress.update(task_id, completed=1, total=1, line="")
                tasks[step] = progress.add_task(step, total=None, line="")
            progress.update(tasks[step], line=line[-70:])

        timings = run_build(spec, report)  # TestEnvError: flotilla.cli shows it, exit 1
        for task_id in tasks.values():
            progress.update(task_id, completed=1, total=1, line="")
    if not timings:
        console.print(f"already built: {spec.bin_dir}")
    else:
        console.print(f"built in {time.monotonic() - started:.0f}s: {spec.bin_dir}")
    if images:
        images_started = time.monotonic()
        with console.status("building images (debootstrap; once)"):
            built = build_images()
        console.print(f"images ready in {time.monotonic() - images_started:.0f}s: "
                      + ", ".join(built))


@app.command()
def up(
    nodes: int = typer.Option(1, "--nodes", min=0, help="How many kwok nodes to create."),
    real_node: bool = typer.Option(
        False, "--real-node", help="Also run a real node: kubelet + containerd, pods really run."
    ),
    real_node_name: str = typer.Option("real-node", "--real-node-name", help="Its node name."),
    docker: bool = typer.Option(
        False, "--docker", help="Also run a private dockerd (for image builds) with base images."
    ),
    state_dir: Path | None = StateOption,
    cache_dir: Path | None = CacheOption,
    kubernetes_version: str = VersionOption,
) -> None:
    """Start the control plane and print the kubeconfig path (no-op when already running)."""
    plane = ControlPlane(state_dir or default_state_dir(), _spec(cache_dir, kubernetes_version))
    was_running = plane.running()
    try:
        with console.status("starting etcd, kube-apiserver, controllers, scheduler, kwok"
                            + (", a real node" if real_node else "")
                            + (", dockerd" if docker else "")):
            state = plane.up(nodes=nodes, real_node=real_node_name if real_node else None,
                             docker=docker)
    except TimeoutError as exc:  # flotilla.cli shows TestEnvError, exit 1
        raise TestEnvError(str(exc)) from exc
    if was_running:
        console.print("already running")
    else:
        console.print(f"ready in {state.ready_seconds:.1f}s with nodes: {', '.join(state.nodes)}")
    for name, seconds in state.real_node_ready_seconds.items():
        console.print(f"real node {name} Ready in {seconds:.1f}s")
    if state.docker_host:
        console.print(f"dockerd: DOCKER_HOST={state.docker_host}")
    typer.echo(plane.layout.kubeconfig)


@app.command()
def down(state_dir: Path | None = StateOption) -> None:
    """Stop only the processes that `up` started in this state directory."""
    plane = ControlPlane(state_dir or default_state_dir())
    stopped = plane.down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(
    state_dir: Path | None = StateOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Report whether the environment runs, its API address, nodes and processes."""
    plane = ControlPlane(state_dir or default_state_dir())
    info = plane.status()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    elif not info["running"] and "processes" not in info:
        typer.echo(f"not running (state dir {info['state_dir']})")
    else:
        table = Table("component", "pid", "running", "log")
        for proc in info["processes"]:
            table.add_row(proc["name"], str(proc["pid"]), "yes" if proc["running"] else "NO",
                          proc["log"])
        Console().print(table)
        typer.echo(f"api: {info['api']}  kubeconfig: {info['kubeconfig']}")
    if not info["running"]:
        raise typer.Exit(1)


@app.command()
def kubeconfig(state_dir: Path | None = StateOption) -> None:
    """Print the path of the admin kubeconfig of a running environment."""
    plane = ControlPlane(state_dir or default_state_dir())
    if plane.state() is None:
        raise TestEnvError("no environment is running here; run `flotilla testenv up`")
    typer.echo(plane.layout.kubeconfig)
