"""``flotilla fn``: init, run, test, build, deploy, invoke and pipeline for one function project."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from flotilla.core.cli import (
    KUBECONFIG_HELP,
    MANIFEST_FORMATS,
    duration_option,
    emit,
    emit_documents,
    namespace_option,
    output_option,
    system_app,
)

from .model import (
    FnError,
    FunctionSpec,
    FunctionSpecError,
    Runtime,
    Target,
    load_spec,
)

app = system_app("Functions with health, metrics and tracing built in.")

PathOpt = typer.Option(Path("."), "--path", "-C", help="The function's project directory.")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help=KUBECONFIG_HELP)
RUNTIME_OPT = typer.Option(Runtime.PYTHON, "--runtime", "-r")
DIR_OPT = typer.Option(None, "--dir", help="Where to create it (default NAME).")
CONTEXT_DIR_OPT = typer.Option(
    None, "--context-dir", help="Only write the build context here (for kaniko)."
)
TARGET_OPT = typer.Option(None, "--target", help="knative or kubernetes.")
HEADER_OPT = typer.Option([], "--header", "-H", help="NAME:VALUE, repeatable.")
WRITE_OPT = typer.Option(None, "--write", help="Write to this file (default: stdout).")
BUILD_FLAG_OPT = typer.Option(
    [], "--build-flag", help="--run: a kaniko flag, repeatable (e.g. --registry-map=A=B)."
)
POD_TEMPLATE_OPT = typer.Option(
    None, "--pod-template", help="--run: a Tekton pod template (YAML) for every task."
)


def _spec(project: Path) -> FunctionSpec:
    path = project / "function.yaml"
    if not path.is_file() and (project / "func.yaml").is_file():
        return _func_yaml_spec(project / "func.yaml")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FnError(f"{path} not found: run `flotilla fn init` first") from None
    return load_spec(text)


def _func_yaml_spec(path: Path) -> FunctionSpec:
    """A Knative func project: its func.yaml read as function.yaml, ignored keys named."""
    import yaml

    from .funcyaml import FuncYamlError, from_func_yaml
    from .model import parse_spec

    try:
        doc, ignored = from_func_yaml(yaml.safe_load(path.read_text()))
    except (FuncYamlError, yaml.YAMLError) as exc:
        raise FnError(f"{path}: {str(exc).splitlines()[0]}") from None
    if ignored:
        typer.echo(f"{path}: ignoring {', '.join(ignored)}", err=True)
    return parse_spec(doc)


def _client(kubeconfig: Path | None, in_cluster: bool) -> Any:
    """The shared kubeconfig order (docs/cli.md); ``--in-cluster`` skips straight to the pod's."""
    from flotilla.core.kube import client_for

    return client_for(kubeconfig, in_cluster=in_cluster)


@app.command()
def init(
    name: str = typer.Argument(..., help="Function name (a DNS label); also the directory."),
    runtime: Runtime = RUNTIME_OPT,
    template: str = typer.Option("http", "--template", "-t", help="http or cloudevents."),
    directory: Path | None = DIR_OPT,
) -> None:
    """Create a project: function.yaml, a minimal function and its test."""
    from .model import parse_spec
    from .templates import TEMPLATES, project_files, signature_for

    if template not in TEMPLATES:
        raise FnError(f"unknown template {template!r}: use one of {', '.join(TEMPLATES)}")
    try:
        spec = parse_spec(
            {"name": name, "runtime": runtime.value, "signature": signature_for(template).value}
        )
    except FunctionSpecError:
        raise FnError(
            f"{name!r} is not a valid function name: use a DNS label (lower-case letters, digits "
            "and '-', starting with a letter, at most 63 characters)"
        ) from None
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        raise FnError(f"{target} exists and is not empty")
    for rel, text in project_files(spec, template).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    typer.echo(f"created {runtime.value} function {name} ({template}) in {target}")


@app.command()
def run(
    project: Path = PathOpt,
    port: int = typer.Option(8080, "--port", "-p"),
    reload: bool = typer.Option(True, "--reload/--no-reload", help="Restart on file changes."),
) -> None:
    """Serve the function locally, restarting it when a file changes."""
    import tempfile

    from .devloop import run_supervised, serve_command

    spec = _spec(project)
    with tempfile.TemporaryDirectory(prefix=f"fn-run-{spec.name}-") as scratch:
        command = serve_command(spec, project.resolve(), port, scratch=Path(scratch))
        typer.echo(f"serving {spec.name} on http://127.0.0.1:{port} (Ctrl-C to stop)", err=True)
        code = run_supervised(
            command,
            watch=project.resolve() if reload else None,
            on_restart=lambda c: typer.echo(f"changed: {', '.join(c[:5])}; restarting", err=True),
        )
    raise typer.Exit(code)


@app.command("test")
def run_tests(project: Path = PathOpt) -> None:
    """Run the function's own tests (pytest, or node --test)."""
    from .devloop import test_command

    spec = _spec(project)
    command = test_command(spec, project.resolve())
    raise typer.Exit(subprocess.run(command.argv, env=command.env, cwd=command.cwd).returncode)


@app.command()
def build(
    project: Path = PathOpt,
    tag: str | None = typer.Option(None, "--tag", help="Image name (default: function.yaml)."),
    push: str | None = typer.Option(None, "--push", help="Registry host[:port] to push to."),
    docker_host: str | None = typer.Option(None, "--docker-host", envvar="DOCKER_HOST"),
    context_dir: Path | None = CONTEXT_DIR_OPT,
    output: str = output_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as -o json."),
) -> None:
    """Build an OCI image through dockerd from the local base images."""
    from .image import (
        build_context,
        build_image,
        function_files,
        push_image,
        push_reference,
        tag_image,
    )

    spec = _spec(project)
    from .deps import function_dependencies

    dependencies = function_dependencies(spec.runtime.value, project.resolve())
    context = build_context(
        spec, function_files(project.resolve()), dependencies, project=project.resolve()
    )
    if context_dir is not None:
        context.write(context_dir)
        typer.echo(f"wrote the build context to {context_dir}")
        return
    image = tag or spec.image_ref
    from flotilla.core.progress import activity

    with activity(f"building {image}") as update:
        result = build_image(context, image, docker_host=docker_host)
        pushed = ""
        if push:
            remote = push_reference(image, push)
            update(f"pushing {remote}")
            tag_image(result.image_id, remote, docker_host=docker_host)
            result.digest = push_image(remote, docker_host=docker_host)
            pushed = f"{remote.rsplit(':', 1)[0]}@{result.digest}"
    data = {
        "image": image,
        "id": result.image_id,
        "steps": result.steps,
        "cached_steps": result.cached_steps,
        "pushed": pushed,
    }
    if as_json or output != "table":
        emit(data, "json" if as_json else output)
    else:
        typer.echo(
            f"built {image} ({result.image_id[:19]}), {result.cached_steps} of "
            f"{result.steps} steps from cache"
        )
        if pushed:
            typer.echo(f"pushed {pushed}")


@app.command()
def deploy(
    project: Path = PathOpt,
    target: Target | None = TARGET_OPT,
    image: str | None = typer.Option(None, "--image", help="Image to run (default: built one)."),
    namespace: str | None = namespace_option(),
    kubeconfig: Path | None = KubeconfigOpt,
    in_cluster: bool = typer.Option(False, "--in-cluster", help="Use the pod's service account."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it is ready."),
    timeout: float = duration_option("2m", "--timeout", help="How long --wait waits."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the manifests, apply nothing."),
) -> None:
    """Apply a Knative Service, or a Deployment + Service, with server-side apply."""
    from .manifests import manifests_for

    spec = _spec(project)
    chosen = (target or spec.deploy.target).value
    ns = namespace or spec.deploy.namespace
    objects = manifests_for(spec, image or spec.image_ref, ns, chosen)
    if dry_run:
        import yaml

        typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
        return
    from flotilla.core.kube import KubeError

    from .deploy import apply_objects, wait_ready, wait_revision_serving

    started = time.monotonic()
    with _client(kubeconfig, in_cluster) as client:
        try:
            for applied in apply_objects(client, objects):
                typer.echo(f"applied {applied} in {ns}")
            if wait and chosen == Target.KUBERNETES.value:
                seconds = wait_ready(client, ns, spec.name, timeout=timeout)
                typer.echo(f"{spec.name} ready in {seconds:.1f}s")
            elif wait:
                from .knative import wait_knative_ready

                ready = wait_knative_ready(client, ns, spec.name, timeout=timeout)
                wait_revision_serving(
                    client, ns, spec.name, ready.revision, timeout=max(10, timeout - ready.seconds)
                )
                typer.echo(
                    f"{spec.name} ready in {time.monotonic() - started:.1f}s at {ready.url} "
                    f"(revision {ready.revision})"
                )
        except (KubeError, TimeoutError) as exc:
            raise FnError(str(exc)) from None


def _headers(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key.strip():
            raise FnError(f"--header wants NAME:VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


@app.command()
def invoke(
    path: str = typer.Argument("/", help="Path to call."),
    project: Path = PathOpt,
    data: str | None = typer.Option(None, "--data", "-d", help="Request body (@file reads one)."),
    method: str | None = typer.Option(None, "--method", "-X"),
    header: list[str] = HEADER_OPT,
    event_type: str | None = typer.Option(None, "--event-type", help="Send a CloudEvent."),
    event_source: str = typer.Option("/flotilla/invoke", "--event-source"),
    url: str | None = typer.Option(None, "--url", help="Call this base URL directly."),
    port: int = typer.Option(8080, "--port", help="Local port of `fn run`."),
    cluster: bool = typer.Option(False, "--cluster", help="Call the deployed function."),
    namespace: str | None = namespace_option(),
    kubeconfig: Path | None = KubeconfigOpt,
    show_headers: bool = typer.Option(False, "--include", "-i"),
) -> None:
    """Call the function: locally (fn run), at --url, or deployed (--cluster, via the API)."""
    import uuid

    import httpx

    body = b""
    if data is not None:
        body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
    headers = _headers(header)
    if event_type:
        headers.update(
            {
                "ce-id": str(uuid.uuid4()),
                "ce-type": event_type,
                "ce-source": event_source,
                "ce-specversion": "1.0",
            }
        )
        headers.setdefault("content-type", "application/json")
    verb = method or ("POST" if body or event_type else "GET")
    if cluster:
        from flotilla.core.kube import KubeError

        from .deploy import invoke_service

        spec = _spec(project)
        with _client(kubeconfig, False) as client:
            try:
                status, out_headers, out = invoke_service(
                    client,
                    namespace or spec.deploy.namespace,
                    spec.name,
                    path,
                    method=verb,
                    body=body,
                    headers=headers,
                )
            except KubeError as exc:
                raise FnError(str(exc)) from None
    else:
        base = (url or f"http://127.0.0.1:{port}").rstrip("/")
        try:
            with httpx.Client(timeout=30) as http:
                response = http.request(
                    verb, base + "/" + path.lstrip("/"), content=body, headers=headers
                )
        except httpx.HTTPError as exc:
            raise FnError(f"{base}: {exc}") from None
        status, out_headers, out = response.status_code, dict(response.headers), response.content
    if show_headers:
        typer.echo(f"HTTP {status}")
        for key, value in out_headers.items():
            typer.echo(f"{key}: {value}")
        typer.echo("")
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    if status >= 400:
        raise typer.Exit(1)


@app.command()
def pipeline(
    project: Path = PathOpt,
    write: Path | None = WRITE_OPT,
    output: str = output_option(*MANIFEST_FORMATS),
    namespace: str | None = namespace_option(),
    git_url: str = typer.Option("", "--git-url", help="Default repository to build from."),
    context_dir: str = typer.Option(".", "--context-dir", help="Function dir in the repo."),
    flotilla_image: str | None = typer.Option(None, "--flotilla-image"),
    git_image: str | None = typer.Option(None, "--git-image", help="Image of the clone step."),
    kaniko_image: str | None = typer.Option(None, "--kaniko-image", help="kaniko's executor."),
    run: bool = typer.Option(False, "--run", help="Apply it and start a PipelineRun."),
    trigger: bool = typer.Option(
        False, "--trigger", help="Add an EventListener that starts a run on each git push."
    ),
    revision: str = typer.Option("main", "--revision", help="--run: branch, tag or commit."),
    image: str | None = typer.Option(None, "--image", help="--run: image to push."),
    build_flags: list[str] = BUILD_FLAG_OPT,
    workspace_claim: str = typer.Option(
        "", "--workspace-claim", help="--run: an existing PVC for the source (default: a new one)."
    ),
    storage_class: str | None = typer.Option(
        None, "--storage-class", help="--run: class of the new source claim."
    ),
    pod_template: Path | None = POD_TEMPLATE_OPT,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="--run: follow it to the end."),
    timeout: float = duration_option("15m", "--timeout", help="How long --wait waits."),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Write a Tekton Pipeline and Tasks that build and deploy this function on a cluster, or
    with --run apply them and start (and follow) a PipelineRun."""
    from .pipeline import (
        DEFAULT_FLOTILLA_IMAGE,
        DEFAULT_GIT_IMAGE,
        DEFAULT_KANIKO_IMAGE,
        pipeline_objects,
    )

    spec = _spec(project)
    ns = namespace or spec.deploy.namespace
    objects = pipeline_objects(
        spec,
        ns,
        git_url=git_url,
        context_dir=context_dir,
        flotilla_image=flotilla_image or DEFAULT_FLOTILLA_IMAGE,
        git_image=git_image or DEFAULT_GIT_IMAGE,
        kaniko_image=kaniko_image or DEFAULT_KANIKO_IMAGE,
    )
    template = _pod_template(pod_template)
    params: dict[str, str | list[str]] = {"git-revision": revision, "build-flags": build_flags}
    if image:
        params["image"] = image
    from .pipeline import pipeline_run

    run_object = pipeline_run(spec, ns, params=params, workspace_claim=workspace_claim,
                              storage_class=storage_class, pod_template=template)  # fmt: skip
    secret_name = ""
    if trigger:
        from .triggers import listener_url, trigger_objects, webhook_secret_name

        secret_name = webhook_secret_name(spec)
        objects += trigger_objects(spec, ns, run_object, pod_template=template)
        typer.echo(f"git pushes go to {listener_url(spec, ns)}", err=True)
    if run:
        if not git_url:
            raise typer.BadParameter("--run needs --git-url", param_hint="--git-url")
        _run_pipeline(ns, objects, run_object, wait, timeout, kubeconfig,
                      webhook_secret=secret_name)  # fmt: skip
        return
    if write is None:
        emit_documents(objects, output)
        return
    import json

    import yaml

    if output == "json":
        text = json.dumps(objects, indent=2) + "\n"
    else:
        text = yaml.safe_dump_all(objects, sort_keys=False)
    write.write_text(text)
    typer.echo(f"wrote {len(objects)} objects to {write}")


def _pod_template(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import yaml

    try:
        template = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FnError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(template, dict):
        raise FnError(f"{path}: a pod template is a mapping")
    return template


def _run_pipeline(
    namespace: str,
    objects: list[dict[str, Any]],
    run: dict[str, Any],
    wait: bool,
    timeout: float,
    kubeconfig: Path | None,
    webhook_secret: str = "",
) -> None:
    from flotilla.core.kube import KubeError

    from .pipeline_run import RunOutcome, ensure_webhook_secret, start_run, wait_for_run
    from .triggers import WEBHOOK_SECRET_KEY

    def show(outcome: RunOutcome) -> None:
        tasks = ", ".join(f"{task} {reason}" for task, reason in sorted(outcome.tasks.items()))
        typer.echo(f"{outcome.name}: {outcome.reason}" + (f" ({tasks})" if tasks else ""), err=True)

    with _client(kubeconfig, False) as client:
        try:
            if webhook_secret and ensure_webhook_secret(
                client, webhook_secret, namespace, WEBHOOK_SECRET_KEY
            ):
                typer.echo(f"made Secret {webhook_secret} (key {WEBHOOK_SECRET_KEY}): pushes "
                           "are signed with it (X-Hub-Signature-256)", err=True)  # fmt: skip
            name = start_run(client, objects, run)
            typer.echo(f"started PipelineRun {name} in {namespace}")
            if not wait:
                return
            outcome = wait_for_run(client, name, namespace, timeout=timeout, on_change=show)
        except KubeError as exc:
            raise FnError(str(exc)) from None
    if outcome.succeeded is None:
        raise FnError(f"PipelineRun {name} still running after {timeout:.0f}s")
    if not outcome.succeeded:
        detail = "; ".join(outcome.failures) or outcome.message
        raise FnError(f"PipelineRun {name} {outcome.reason}: {detail}")
    typer.echo(f"PipelineRun {name} succeeded")


@app.command()
def delete(
    project: Path = PathOpt,
    name: str | None = typer.Option(None, "--name", help="Function name (default: function.yaml)."),
    namespace: str | None = namespace_option(),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """Delete the deployed function (Deployment + Service, or Knative Service)."""
    from flotilla.core.kube import KubeError

    from .deploy import delete_function

    spec = None if name and namespace else _spec(project)
    fn_name = name or (spec.name if spec else "")
    ns = namespace or (spec.deploy.namespace if spec else "default")
    with _client(kubeconfig, False) as client:
        try:
            gone = delete_function(client, fn_name, ns)
        except KubeError as exc:
            raise FnError(str(exc)) from None
    if not gone:
        raise FnError(f"no function {fn_name} in {ns}")
    typer.echo(f"deleted {', '.join(gone)} in {ns}")


@app.command("list")
def list_(
    namespace: str | None = namespace_option(help="Default: all."),
    kubeconfig: Path | None = KubeconfigOpt,
    output: str = output_option(),
) -> None:
    """Functions deployed with flotilla, on either target."""
    from flotilla.core.kube import KubeError

    from .deploy import list_functions

    with _client(kubeconfig, False) as client:
        try:
            rows = list_functions(client, namespace)
        except KubeError as exc:
            raise FnError(str(exc)) from None

    def table() -> None:
        typer.echo(f"{'NAMESPACE':<16} {'NAME':<24} {'TARGET':<11} {'READY':<6} IMAGE")
        for r in rows:
            ready = "yes" if r.ready else "no"
            typer.echo(f"{r.namespace:<16} {r.name:<24} {r.target:<11} {ready:<6} {r.image}")

    emit([asdict(r) for r in rows], output, table)


@app.command()
def logs(
    project: Path = PathOpt,
    name: str | None = typer.Option(None, "--name", help="Function name (default: function.yaml)."),
    namespace: str | None = namespace_option(),
    tail: int = typer.Option(100, "--tail", help="Lines per pod."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep streaming, pods that start later included."
    ),
    kubeconfig: Path | None = KubeconfigOpt,
) -> None:
    """The last lines of every pod of the deployed function; with -f, follow them until Ctrl-C."""
    from flotilla.core.kube import KubeError

    from .deploy import function_logs

    spec = None if name and namespace else _spec(project)
    fn_name = name or (spec.name if spec else "")
    ns = namespace or (spec.deploy.namespace if spec else "default")
    with _client(kubeconfig, False) as client:
        if follow:
            from .logs import follow_until_stopped

            follow_until_stopped(client, fn_name, ns, tail, typer.echo)
            return
        try:
            lines = function_logs(client, fn_name, ns, tail)
        except KubeError as exc:
            raise FnError(str(exc)) from None
    if not lines:
        raise FnError(f"no pods of function {fn_name} in {ns}")
    for pod, line in lines:
        typer.echo(f"{pod} {line}")
