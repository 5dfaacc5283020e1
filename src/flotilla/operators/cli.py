"""``flotilla operators``: audit what an operator grants, and install/upgrade it with review.

Only the small models module is imported up front (typer needs the option types); each command
imports the audit, catalog, loading and report code it runs, so ``--help`` starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flotilla.core.cli import KUBECONFIG_HELP, emit, output_option, system_app

if TYPE_CHECKING:
    from lightkube import Client

    from flotilla.operators.catalog import Catalog

# Only the light, pure models at module level: the audit, its loaders (YAML, helm) and reports
# are imported by the commands that use them, so `--help` starts fast.
from flotilla.operators.models import Approval, AuditReport, Manifest, OperatorsError, Severity

app = system_app(
    "Audit operators before they are installed; install and upgrade them with that review built in."
)

EXIT_FINDINGS = 1
EXIT_USAGE = OperatorsError.exit_code  # 2: input or cluster trouble
EXIT_HELD = 3
INSTALL_MODES = ("OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces")


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    sarif = "sarif"


def _severity(text: str | None) -> Severity | None:
    if not text or text == "none":
        return None
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _client(path: Path | None) -> Client:
    """The shared kubeconfig order (docs/cli.md); a missing or broken one exits 2 like any
    cluster trouble here (1 is taken by "the audit found problems")."""
    from flotilla.core.kube import KubeconfigError, client_for

    try:
        return client_for(path)
    except KubeconfigError as exc:
        raise OperatorsError(str(exc)) from None


KUBECONFIG_OPT = typer.Option(None, "--kubeconfig", help=KUBECONFIG_HELP)
NAMESPACE_FLAGS = ("-n", "--namespace")


PATHS_ARG = typer.Argument(None, help="Bundles, charts, manifest files or directories.")
OUTPUT_OPT = typer.Option(Output.table, "-o", "--output", help="table, json, yaml or sarif.")
APPROVE_OPT = typer.Option(
    Approval.MANUAL,
    "--approve",
    help="manual: every change waits for "
    "`approve`; auto: only changes adding findings >= --hold-on wait.",
)


TARGET_NS_OPT = typer.Option(
    None,
    "--target-namespace",
    help="A namespace the operator watches (repeat for several), as an OperatorGroup's "
    "targetNamespaces; the CSV must support the install mode this makes.",
)


@app.command("audit")
def audit_cmd(
    paths: list[Path] = PATHS_ARG,
    live: bool = typer.Option(
        False, "--cluster", help="Audit the live cluster's RBAC, CRDs and webhooks."
    ),
    diff: bool = typer.Option(False, "--diff", help="Two paths, OLD NEW: show what NEW adds."),
    output: Output = OUTPUT_OPT,
    fail_on: str = typer.Option(
        "none",
        "--fail-on",
        help="Exit 1 if a finding (or, with --diff, an added one) is at least this severe.",
    ),
    namespace: str = typer.Option(
        "operators",
        *NAMESPACE_FLAGS,
        help="Namespace the operator would be installed in (names its service accounts).",
    ),
    install_mode: str = typer.Option(
        None,
        "--install-mode",
        help="OwnNamespace, "
        "SingleNamespace, MultiNamespace or AllNamespaces; default: "
        "the one --target-namespace/--all-namespaces make, else the widest the CSV supports.",
    ),
    target_namespaces: list[str] = TARGET_NS_OPT,
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", help="Audit an install for all namespaces (AllNamespaces)."
    ),
    why: bool = typer.Option(False, "--why", help="Add the why column to the table."),
    grants: bool = typer.Option(True, "--grants/--no-grants", help="List every permission."),
    check_crds: bool = typer.Option(
        False,
        "--check-crds",
        help="Look up CRD name conflicts in the cluster (needs a kubeconfig).",
    ),
    include_system: bool = typer.Option(
        False, "--include-system", help="With --cluster: also audit system: roles and kube-system."
    ),
    kubeconfig: Path = KUBECONFIG_OPT,
) -> None:
    """Report what installing these manifests grants: CRDs, permissions, webhooks, risks."""
    from flotilla.operators.audit import audit, diff_audits, exceeds
    from flotilla.operators.loading import load_inputs
    from flotilla.operators.report import diff_json, diff_text, report_sarif

    threshold = _severity(fail_on)
    if install_mode and install_mode not in INSTALL_MODES:
        raise typer.BadParameter(f"--install-mode must be one of {', '.join(INSTALL_MODES)}")
    targets = list(target_namespaces or [])
    mode = _audit_mode(namespace, targets, all_namespaces, install_mode)
    paths = paths or []
    if diff and len(paths) != 2:
        raise typer.BadParameter("--diff takes exactly two paths: OLD NEW")
    if not paths and not live:
        raise typer.BadParameter("give PATH... or --cluster")
    existing: dict[str, str] | None = None
    manifests, errors = load_inputs(paths, namespace=namespace)
    if live or check_crds:
        from flotilla.core.kube import KubeError
        from flotilla.operators import cluster

        try:
            with _client(kubeconfig) as client:
                if check_crds:
                    existing = cluster.existing_crds(client)
                if live:
                    manifests.extend(
                        cluster.cluster_manifests(client, include_system=include_system)
                    )
        except (KubeError, OSError, ValueError) as exc:  # flotilla.cli shows it, exit 2
            raise OperatorsError(str(exc)) from exc
    if diff:
        old_m, old_err = load_inputs(paths[:1], namespace=namespace)
        new_m, new_err = load_inputs(paths[1:], namespace=namespace)
        bad = [p for p in old_err + new_err if p.rule == "load-error"]
        for err in bad:
            typer.echo(f"Error: {err}", err=True)
        if bad:
            raise typer.Exit(EXIT_USAGE)
        result = diff_audits(
            audit(
                old_m,
                namespace=namespace,
                install_mode=mode,
                target_namespaces=targets,
                existing_crds=existing,
            ),
            audit(
                new_m,
                namespace=namespace,
                install_mode=mode,
                target_namespaces=targets,
                existing_crds=existing,
            ),
            old_manifests=old_m,
            new_manifests=new_m,
        )
        if output is Output.sarif:  # code scanning wants the new problems only
            typer.echo(report_sarif(AuditReport(findings=result.added)))
        elif output is Output.yaml:
            _echo_yaml(diff_json(result))
        else:
            typer.echo(diff_json(result) if output is Output.json else diff_text(result), nl=False)
        if exceeds(result, threshold):
            raise typer.Exit(EXIT_FINDINGS)
        return
    _warn_unsupported(manifests, mode)
    report = audit(
        manifests,
        namespace=namespace,
        install_mode=mode,
        target_namespaces=targets,
        existing_crds=existing,
        errors=errors,
    )
    _emit(report, output, grants=grants, why=why)
    if report.errors:
        for message in report.errors:
            typer.echo(f"Error: {message}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if exceeds(report, threshold):
        raise typer.Exit(EXIT_FINDINGS)


def _emit(report: AuditReport, output: Output, *, grants: bool, why: bool) -> None:
    from flotilla.operators.report import report_json, report_sarif, report_text

    if output is Output.json:
        typer.echo(report_json(report))
    elif output is Output.yaml:
        _echo_yaml(report_json(report))
    elif output is Output.sarif:
        typer.echo(report_sarif(report))
    else:
        typer.echo(report_text(report, grants=grants, why=why), nl=False)


def _echo_yaml(json_text: str) -> None:
    """The JSON report, as YAML (the same fields, for people who read YAML)."""
    import yaml

    typer.echo(yaml.safe_dump(json.loads(json_text), sort_keys=False), nl=False)


CATALOG_OPT = typer.Option(
    ...,
    "--catalog",
    envvar="FLOTILLA_OPERATORS_CATALOG",
    help="File-based catalog directory (olm.package/channel/bundle).",
)
STATE_NS_OPT = typer.Option(
    "flotilla-operators",
    "--state-namespace",
    help="Where the per-operator state and pending approvals are kept.",
)
HOLD_OPT = typer.Option(
    "high",
    "--hold-on",
    help="With --approve auto, hold changes that add findings at least this severe (none: never).",
)


def _audit_mode(
    namespace: str, targets: list[str], all_namespaces: bool, install_mode: str | None
) -> str | None:
    """The install mode the audit reasons about: the one the OperatorGroup flags make (they
    must agree with --install-mode when both are given), else --install-mode, else None."""
    from flotilla.operators.rbac import mode_for_targets

    if all_namespaces and targets:
        raise typer.BadParameter("give either --all-namespaces or --target-namespace, not both")
    derived = mode_for_targets(namespace, targets, all_namespaces)
    if derived and install_mode and derived != install_mode:
        raise typer.BadParameter(
            f"--install-mode {install_mode} disagrees with the namespaces given, which make "
            f"{derived}"
        )
    return derived or install_mode


def _warn_unsupported(manifests: list[Manifest], install_mode: str | None) -> None:
    """OLM refuses a CSV in a mode it does not support: say so, and audit it all the same."""
    from flotilla.operators.plan import supported_install_modes

    if not install_mode:
        return
    for m in manifests:
        if m.kind == "ClusterServiceVersion":
            supported = supported_install_modes(m)
            if install_mode not in supported:
                typer.echo(
                    f"warning: {m.name} does not support the {install_mode} install mode "
                    f"(it supports: {', '.join(supported) or 'none'}); OLM would refuse it",
                    err=True,
                )


BUNDLE_DIR_ARG = typer.Argument(..., help="Bundle directory: manifests/ and metadata/.")


def _catalog(path: Path) -> Catalog:
    """Load the catalog; entries OLM would refuse are left out with a warning, not fatal."""
    from flotilla.operators.catalog import load_catalog

    catalog = load_catalog(path)
    for problem in catalog.problems:
        typer.echo(f"warning: catalog {path}: {problem}", err=True)
    return catalog


@contextmanager
def _lifecycle_client(kubeconfig: Path | None) -> Iterator[Client]:
    """A client for one lifecycle command; any lifecycle failure ends it with the usage code.

    Our own errors (``OperatorsError``) pass through to ``flotilla.cli``; the cluster's and the
    file system's become one, so they read and exit the same way.
    """
    from flotilla.core.kube import KubeError

    try:
        with _client(kubeconfig) as client:
            yield client
    except (KubeError, OSError, ValueError, TimeoutError) as exc:
        raise OperatorsError(str(exc)) from exc


def _report_outcome(outcome: object) -> None:
    from flotilla.operators.lifecycle import Outcome
    from flotilla.operators.report import diff_text, report_text

    assert isinstance(outcome, Outcome)
    total = len(outcome.steps)
    for i, step in enumerate(outcome.steps, 1):
        typer.echo(f"Step {i}/{total}: {step.ref.name} ({step.ref.version})")
        typer.echo(report_text(step.report, grants=False), nl=False)
        typer.echo("Diff against what runs now:" if i == 1 else "Diff against the step before:")
        typer.echo(diff_text(step.diff), nl=False)
    state = outcome.state
    for note in state.deprecations:
        typer.echo(f"DEPRECATED: {note}")
    if outcome.action == "held":
        typer.echo(
            f"HELD for approval: {outcome.reason}\n"
            f"Review the diff above, then run: flotilla operators approve {state.package}"
        )
        raise typer.Exit(EXIT_HELD)
    if outcome.action == "up-to-date":
        typer.echo(f"{state.package} is at the head of channel {state.channel}: {state.installed}")
        return
    for ref in outcome.pruned:
        typer.echo(f"removed {ref} (not in the new version)")
    for dep in outcome.dependencies:
        typer.echo(f"dependency: {dep}")
    typer.echo(
        f"{outcome.action} {state.package} {state.installed} in namespace "
        f"{state.namespace} ({state.install_mode}, {len(state.objects)} objects)"
    )


@app.command()
def install(
    name: str = typer.Argument(..., help="Package name in the catalog."),
    channel: str = typer.Option(None, "--channel", help="Channel (default: the package's)."),
    approve_mode: Approval = APPROVE_OPT,
    catalog: Path = CATALOG_OPT,
    namespace: str = typer.Option(
        None, *NAMESPACE_FLAGS, help="Install namespace (default: NAME-system)."
    ),
    all_namespaces: bool = typer.Option(
        False,
        "--all-namespaces",
        help="Install for all namespaces (permissions become cluster-wide).",
    ),
    target_namespaces: list[str] = TARGET_NS_OPT,
    state_namespace: str = STATE_NS_OPT,
    hold_on: str = HOLD_OPT,
    kubeconfig: Path = KUBECONFIG_OPT,
) -> None:
    """Install the channel head after showing its audit; held unless approval allows it."""
    from flotilla.operators import lifecycle

    with _lifecycle_client(kubeconfig) as client:
        outcome = lifecycle.install(
            client,
            _catalog(catalog),
            name,
            channel=channel,
            approval=approve_mode,
            namespace=namespace or f"{name}-system",
            state_ns=state_namespace,
            hold_on=_severity(hold_on),
            all_namespaces=all_namespaces,
            target_namespaces=list(target_namespaces or []),
        )
    _report_outcome(outcome)


@app.command()
def upgrade(
    name: str = typer.Argument(...),
    channel: str = typer.Option(None, "--channel", help="Switch channel."),
    catalog: Path = CATALOG_OPT,
    state_namespace: str = STATE_NS_OPT,
    hold_on: str = HOLD_OPT,
    kubeconfig: Path = KUBECONFIG_OPT,
) -> None:
    """Resolve the upgrade graph to the channel head; show each step's audit and diff."""
    from flotilla.operators import lifecycle

    with _lifecycle_client(kubeconfig) as client:
        outcome = lifecycle.upgrade(
            client,
            _catalog(catalog),
            name,
            state_ns=state_namespace,
            channel=channel,
            hold_on=_severity(hold_on),
        )
    _report_outcome(outcome)


@app.command()
def approve(
    name: str = typer.Argument(...),
    catalog: Path = CATALOG_OPT,
    state_namespace: str = STATE_NS_OPT,
    kubeconfig: Path = KUBECONFIG_OPT,
) -> None:
    """Apply this operator's pending install or upgrade (and only this operator's)."""
    from flotilla.operators import lifecycle

    with _lifecycle_client(kubeconfig) as client:
        outcome = lifecycle.approve(client, _catalog(catalog), name, state_ns=state_namespace)
    outcome.steps = []  # already reviewed; keep the output short
    _report_outcome(outcome)


@app.command()
def uninstall(
    name: str = typer.Argument(...),
    remove_crds: bool = typer.Option(
        False, "--remove-crds", help="Also delete the CRDs and every object of them."
    ),
    state_namespace: str = STATE_NS_OPT,
    kubeconfig: Path = KUBECONFIG_OPT,
) -> None:
    """Remove the operator; say which CRDs (and how many objects) stay behind."""
    from flotilla.operators import lifecycle

    with _lifecycle_client(kubeconfig) as client:
        result = lifecycle.uninstall(
            client, name, state_ns=state_namespace, remove_crds=remove_crds
        )
    for ref in result.deleted:
        typer.echo(f"deleted {ref}")
    for crd, count in result.removed_crds.items():
        typer.echo(f"deleted CRD {crd} and its {count} objects")
    for crd, count in result.kept_crds.items():
        typer.echo(f"kept CRD {crd} ({count} objects still exist); remove with --remove-crds")
    typer.echo(f"uninstalled {name}")


@app.command()
def status(
    name: str = typer.Argument(None, help="One operator (default: all)."),
    state_namespace: str = STATE_NS_OPT,
    kubeconfig: Path = KUBECONFIG_OPT,
    output: str = output_option(),
) -> None:
    """Installed version, channel, approval mode, pending approval and Deployment readiness."""
    from flotilla.operators import cluster
    from flotilla.operators.catalog import GraphError

    with _lifecycle_client(kubeconfig) as client:
        states = cluster.list_states(client, state_namespace)
        if name:
            states = [s for s in states if s.package == name]
            if not states:
                raise GraphError(f"{name} is not installed")
        readiness = {
            (s.package, r.name): cluster.deployment_ready(client, r.namespace, r.name)
            for s in states
            for r in s.objects
            if r.kind == "Deployment"
        }
    rows = [
        {
            "package": s.package,
            "installed": s.installed,
            "channel": s.channel,
            "approval": s.approval,
            "namespace": s.namespace,
            "install_mode": s.install_mode,
            "deployments": {d: ready for (p, d), ready in readiness.items() if p == s.package},
            "pending": None
            if s.pending is None
            else {"steps": list(s.pending.steps), "reason": s.pending.reason},
            "crds": list(s.crds),
            "deprecations": list(s.deprecations),
        }
        for s in states
    ]

    def table() -> None:
        for s in states:
            ready = (
                ", ".join(f"{d} {r}" for (p, d), r in readiness.items() if p == s.package) or "-"
            )
            typer.echo(
                f"{s.package}: {s.installed or '(not installed)'} channel={s.channel} "
                f"approval={s.approval} namespace={s.namespace} mode={s.install_mode} "
                f"deployments: {ready}"
            )
            for note in s.deprecations:
                typer.echo(f"  DEPRECATED: {note}")
            if s.pending:
                typer.echo(
                    f"  pending approval: {' -> '.join(s.pending.steps)} ({s.pending.reason})"
                )
                typer.echo(s.pending.diff, nl=False)
            for crd in s.crds:
                typer.echo(f"  CRD {crd}")

    emit(rows, output, table)


bundle_app = system_app("Bundle images: build one from a bundle directory and push it.")
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("build")
def bundle_build(
    directory: Path = BUNDLE_DIR_ARG,
    push: str = typer.Option(
        ..., "--push", help="Image to push to, HOST/REPOSITORY:TAG (loopback registries: HTTP)."
    ),
) -> None:
    """Build the bundle image as opm does (one layer, the bundle labels) and push it."""
    from flotilla.operators.bundle_image import push_bundle

    digest = push_bundle(directory, push)
    typer.echo(f"pushed {push}@{digest}")
