"""``flotilla testenv``: build and run a real Kubernetes control plane on loopback.

The control plane, its certificates (cryptography) and rich's progress are imported by the
commands that use them, so ``--help`` and ``kubeconfig`` start fast.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flotilla.core.cli import emit, output_option, system_app
from flotilla.testenv.build import KUBERNETES_VERSION, BuildSpec, default_cache_root
from flotilla.testenv.errors import TestEnvError

if TYPE_CHECKING:
    from rich.console import Console

    from flotilla.testenv.cluster import ControlPlane

app = system_app(
    "A real Kubernetes control plane (etcd, API server, controllers, scheduler, kwok)."
)


@functools.cache
def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _plane(state_dir: Path | None, spec: BuildSpec | None = None) -> ControlPlane:
    from flotilla.testenv.cluster import ControlPlane
    from flotilla.testenv.components import default_state_dir

    if spec is None:
        return ControlPlane(state_dir or default_state_dir())
    return ControlPlane(state_dir or default_state_dir(), spec)


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
        True,
        "--images/--no-images",
        help="Also build the local images (pause, flotilla.local/busybox, flotilla.local/python, "
        "flotilla.local/node, flotilla.local/flotilla).",
    ),
    java_image: bool = typer.Option(
        False, "--java-image", help="Also build flotilla.local/java:17 (fn's Java base, ~200 MB)."
    ),
    tekton: bool = typer.Option(
        False,
        "--tekton",
        help="Also build Tekton Pipelines' commands and images from its Go module (~4 min once).",
    ),
    knative: bool = typer.Option(
        False,
        "--knative",
        help="Also build Knative Serving and Traefik (its ingress) from their Go modules.",
    ),
) -> None:
    """Build etcd, kube-apiserver, controller-manager, scheduler, kubelet, kubectl and kwok once.

    The images the real node runs are built too (debootstrap, about a minute each, once).
    """
    from flotilla.core.progress import activity, on_terminal
    from flotilla.testenv.build import run_build
    from flotilla.testenv.flotilla_image import build_flotilla_image, flotilla_image_reference
    from flotilla.testenv.images import JAVA_SPEC, build_image, build_images

    console = _console()
    spec = _spec(cache_dir, kubernetes_version)
    started = time.monotonic()
    if not on_terminal():  # a log: a line every few seconds instead of a live view
        with activity("building Kubernetes binaries") as update:
            timings = run_build(spec, lambda step, line: update(f"{step}: {line[-70:]}"))
    else:
        timings = _build_with_progress(spec, console)
    if not timings:
        console.print(f"already built: {spec.bin_dir}")
    else:
        console.print(f"built in {time.monotonic() - started:.0f}s: {spec.bin_dir}")
    if images:
        images_started = time.monotonic()
        with activity("building images (debootstrap; once)"):
            built = build_images()
            if java_image:
                built[JAVA_SPEC.reference] = build_image(JAVA_SPEC)
        with activity("building Flotilla's image (its wheel and dependencies)"):
            built[flotilla_image_reference()] = build_flotilla_image()
        console.print(
            f"images ready in {time.monotonic() - images_started:.0f}s: " + ", ".join(built)
        )
    if tekton:
        from flotilla.testenv.tekton import TEKTON_VERSION, build_tekton

        tekton_started = time.monotonic()
        with activity(f"building Tekton Pipelines {TEKTON_VERSION} (once)") as update:
            archives = build_tekton(report=update)
        console.print(
            f"Tekton ready in {time.monotonic() - tekton_started:.0f}s: " + ", ".join(archives)
        )
    if knative:
        from flotilla.testenv.knative import KNATIVE_VERSION, build_knative

        knative_started = time.monotonic()
        with activity(f"building Knative Serving {KNATIVE_VERSION} and Traefik (once)") as update:
            archives = build_knative(report=update)
        console.print(
            f"Knative ready in {time.monotonic() - knative_started:.0f}s: " + ", ".join(archives)
        )


def _build_with_progress(spec: BuildSpec, console: Console) -> dict[str, float]:
    """The terminal's view of :func:`run_build`: a spinner and the latest line per step."""
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from flotilla.testenv.build import run_build

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
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
    return timings


@app.command()
def up(
    nodes: int = typer.Option(1, "--nodes", min=0, help="How many kwok nodes to create."),
    real_node: bool = typer.Option(
        False, "--real-node", help="Also run a real node: kubelet + containerd, pods really run."
    ),
    real_node_name: str = typer.Option("real-node", "--real-node-name", help="Its node name."),
    real_nodes: int = typer.Option(
        0,
        "--real-nodes",
        min=0,
        max=16,
        help="Run N real nodes (NAME, NAME-2, ... NAME-N); implies --real-node when N > 0.",
    ),
    docker: bool = typer.Option(
        False, "--docker", help="Also run a private dockerd (for image builds) with base images."
    ),
    tekton: bool = typer.Option(
        False, "--tekton", help="Also install Tekton Pipelines (needs a real node; build first)."
    ),
    knative: bool = typer.Option(
        False,
        "--knative",
        help="Also install Knative Serving with Traefik as its ingress (needs a real node).",
    ),
    state_dir: Path | None = StateOption,
    cache_dir: Path | None = CacheOption,
    kubernetes_version: str = VersionOption,
) -> None:
    """Start the control plane and print the kubeconfig path (no-op when already running)."""
    from flotilla.core.progress import activity

    console = _console()
    plane = _plane(state_dir, _spec(cache_dir, kubernetes_version))
    count = real_nodes or (1 if real_node else 0)
    names = real_node_names(real_node_name, count)
    was_running = plane.running()
    try:
        with activity(
            "starting etcd, kube-apiserver, controllers, scheduler, kwok"
            + (f", {count} real node(s), kube-proxy, CoreDNS" if count else "")
            + (", dockerd" if docker else "")
            + (", Tekton Pipelines" if tekton else "")
            + (", Knative Serving" if knative else "")
        ):
            state = plane.up(
                nodes=nodes, real_nodes=names, docker=docker, tekton=tekton, knative=knative
            )
    except TimeoutError as exc:  # flotilla.cli shows TestEnvError, exit 1
        raise TestEnvError(str(exc)) from exc
    if was_running:
        console.print("already running")
    else:
        console.print(f"ready in {state.ready_seconds:.1f}s with nodes: {', '.join(state.nodes)}")
    for name, seconds in state.real_node_ready_seconds.items():
        console.print(f"real node {name} Ready in {seconds:.1f}s")
    if state.services_note:
        console.print(f"[yellow]warning:[/yellow] {state.services_note}")
    if state.docker_host:
        console.print(f"dockerd: DOCKER_HOST={state.docker_host}")
    typer.echo(plane.layout.kubeconfig)


def real_node_names(first: str, count: int) -> tuple[str, ...]:
    """``real-node``, ``real-node-2``, ...: the first keeps the plain name tests rely on."""
    return tuple(first if i == 1 else f"{first}-{i}" for i in range(1, count + 1))


@app.command()
def down(state_dir: Path | None = StateOption) -> None:
    """Stop only the processes that `up` started in this state directory."""
    plane = _plane(state_dir)
    stopped = plane.down()
    _console().print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status(
    state_dir: Path | None = StateOption,
    output: str = output_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as -o json."),
) -> None:
    """Report whether the environment runs, its API address, nodes and processes."""
    plane = _plane(state_dir)
    info = plane.status()
    if as_json or output != "table":
        emit(info, "json" if as_json else output)
    elif not info["running"] and "processes" not in info:
        typer.echo(f"not running (state dir {info['state_dir']})")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("component", "pid", "running", "log")
        for proc in info["processes"]:
            table.add_row(
                proc["name"], str(proc["pid"]), "yes" if proc["running"] else "NO", proc["log"]
            )
        Console().print(table)
        typer.echo(f"api: {info['api']}  kubeconfig: {info['kubeconfig']}")
    if not info["running"]:
        raise typer.Exit(1)


@app.command()
def kubeconfig(state_dir: Path | None = StateOption) -> None:
    """Print the path of the admin kubeconfig of a running environment."""
    plane = _plane(state_dir)
    if plane.state() is None:
        raise TestEnvError("no environment is running here; run `flotilla testenv up`")
    typer.echo(plane.layout.kubeconfig)
