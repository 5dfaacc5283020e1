"""Install, upgrade, approve and uninstall: the catalog, the audit and the cluster put together.

Each change is planned first (bundles on the upgrade path, the audit of each, its diff against
what runs now), then either applied or stored as the operator's pending plan for ``approve``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from lightkube import Client

from flotilla.operators import cluster
from flotilla.operators.audit import AuditDiff, audit, diff_audits
from flotilla.operators.catalog import (
    BundleRef,
    Catalog,
    bundle_from_objects,
    channel_head,
    upgrade_path,
)
from flotilla.operators.dependencies import Dependency, resolve_dependencies
from flotilla.operators.loading import Bundle, load_bundle
from flotilla.operators.models import AuditReport, OperatorsError, Severity
from flotilla.operators.plan import (
    Approval,
    ObjectRef,
    OperatorState,
    PendingPlan,
    decide,
    install_mode_for,
    materialize,
    objects_to_prune,
)
from flotilla.operators.report import diff_text
from flotilla.operators.semver import Version

__all__ = [
    "InstallPlan",
    "LifecycleError",
    "Outcome",
    "Step",
    "approve",
    "install",
    "open_bundle",
    "plan_install",
    "uninstall",
    "upgrade",
]

logger = logging.getLogger(__name__)


class LifecycleError(OperatorsError):
    """The request cannot be carried out as asked; the message says what to do instead."""


@dataclass
class Step:
    """One bundle on the path, its audit and its diff against the step before."""

    ref: BundleRef
    bundle: Bundle
    report: AuditReport
    diff: AuditDiff


@dataclass
class Outcome:
    action: str
    """``installed``, ``upgraded``, ``held``, ``up-to-date``."""
    state: OperatorState
    steps: list[Step] = field(default_factory=list)
    reason: str = ""
    pruned: list[ObjectRef] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)


def open_bundle(ref: BundleRef) -> Bundle:
    """The bundle's manifests, from where OLM takes them: the catalog's ``olm.bundle.object``
    entries when it has them, else the bundle image (pulled), else the directory on disk."""
    if ref.objects:
        return bundle_from_objects(ref)
    if ref.image:
        from flotilla.operators.oci import pull_bundle

        return pull_bundle(ref.image)
    if ref.path is None:
        raise LifecycleError(f"bundle {ref.name} has neither objects, an image nor a path")
    if not ref.path.is_dir():
        where = f" ({ref.source})" if ref.source else ""
        raise LifecycleError(f"bundle {ref.name}{where}: no bundle directory at {ref.path}")
    return load_bundle(ref.path)


@dataclass
class InstallPlan:
    """What ``install`` would do, decided without touching the cluster."""

    state: OperatorState
    steps: list[Step]
    dependencies: list[Dependency]
    """Every requirement of the bundle, and whether an installed operator or a bundle meets it."""

    @property
    def missing(self) -> list[Dependency]:
        return [d for d in self.dependencies if d.bundle is not None]


def _notes(catalog: Catalog, state: OperatorState, bundles: list[str]) -> list[str]:
    pkg = catalog.package(state.package)
    return pkg.deprecations.notes(state.package, state.channel, bundles)


def plan_install(
    catalog: Catalog,
    package: str,
    *,
    channel: str | None,
    namespace: str,
    approval: Approval = Approval.MANUAL,
    all_namespaces: bool = False,
    target_namespaces: list[str] | None = None,
    installed: dict[str, tuple[str, Version]] | None = None,
    crds: dict[str, str] | None = None,
) -> InstallPlan:
    """The channel head, its install mode (refused when the CSV does not support it), its audit,
    its dependencies resolved against ``installed`` and the catalog, and its deprecations."""
    pkg = catalog.package(package)
    chosen = pkg.channel(channel).name
    head = pkg.bundle(channel_head(pkg.channel(chosen)).name)
    bundle = open_bundle(head)
    if bundle.csv is None:
        raise LifecycleError(f"bundle {head.name} ({head.location}) has no ClusterServiceVersion")
    mode, targets = install_mode_for(
        bundle.csv, namespace, list(target_namespaces or []), all_namespaces
    )
    state = OperatorState(
        package=package,
        channel=chosen,
        namespace=namespace,
        approval=approval.value,
        install_mode=mode,
        target_namespaces=targets,
    )
    dependencies = resolve_dependencies(catalog, head, installed)
    steps = _plan(catalog, state, crds or {}, first=bundle)
    state.deprecations = _notes(catalog, state, [s.ref.name for s in steps])
    return InstallPlan(state, steps, dependencies)


def _audit(bundle: Bundle, state: OperatorState, crds: dict[str, str]) -> AuditReport:
    return audit(
        bundle.manifests,
        namespace=state.namespace,
        install_mode=state.install_mode,
        target_namespaces=state.target_namespaces,
        existing_crds=crds,
        owner=state.package,
    )


def _plan(
    catalog: Catalog, state: OperatorState, crds: dict[str, str], first: Bundle | None = None
) -> list[Step]:
    pkg = catalog.package(state.package)
    channel = pkg.channel(state.channel)
    if state.installed:
        versions = {b.name: b.version for b in pkg.bundles.values()}
        entries = upgrade_path(channel, state.installed, Version.parse(state.version), versions)
        previous = pkg.bundles.get(state.installed)
        prev_bundle = open_bundle(previous) if previous else None
        prev_report = _audit(prev_bundle, state, crds) if prev_bundle else AuditReport()
    else:
        entries = [channel_head(channel)]
        prev_bundle, prev_report = None, AuditReport()
    steps: list[Step] = []
    for entry in entries:
        ref = pkg.bundle(entry.name)
        bundle = first if first is not None and not steps else open_bundle(ref)
        report = _audit(bundle, state, crds)
        diff = diff_audits(
            prev_report,
            report,
            old_manifests=prev_bundle.manifests if prev_bundle else [],
            new_manifests=bundle.manifests,
        )
        steps.append(Step(ref, bundle, report, diff))
        prev_bundle, prev_report = bundle, report
    return steps


def _hold_reason(state: OperatorState, steps: list[Step], hold_on: Severity | None) -> str | None:
    for step in steps:
        reason = decide(Approval(state.approval), step.diff, hold_on)
        if reason:
            return f"{step.ref.name}: {reason}"
    return None


def _execute(
    client: Client, state: OperatorState, state_ns: str, steps: list[Step]
) -> list[ObjectRef]:
    pruned: list[ObjectRef] = []
    cluster.ensure_namespace(client, state.namespace)
    for step in steps:
        objects: list[dict[str, Any]] = materialize(
            step.bundle,
            package=state.package,
            namespace=state.namespace,
            install_mode=state.install_mode,
            target_namespaces=state.target_namespaces or [state.namespace],
        )
        for ns in state.target_namespaces:
            cluster.ensure_namespace(client, ns)
        applied = cluster.apply_objects(client, objects)
        gone = objects_to_prune(state.objects, objects)
        pruned.extend(cluster.delete_objects(client, gone))
        kept_crds = [
            r for r in state.objects if r.kind == "CustomResourceDefinition" and r not in applied
        ]
        state.objects = applied + kept_crds
        state.history.append(f"{state.installed or '-'} -> {step.ref.name}")
        state.installed, state.version = step.ref.name, str(step.ref.version)
        state.pending = None
        cluster.write_state(client, state_ns, state)
        logger.info("applied %s (%d objects)", step.ref.name, len(applied))
    return pruned


def _proceed(
    client: Client,
    state: OperatorState,
    state_ns: str,
    steps: list[Step],
    hold_on: Severity | None,
    action: str,
) -> Outcome:
    reason = _hold_reason(state, steps, hold_on)
    if reason:
        shown = "".join(f"== {s.ref.name} ==\n{diff_text(s.diff)}" for s in steps)
        state.pending = PendingPlan(
            steps=[s.ref.name for s in steps], reason=reason, diff=shown, channel=state.channel
        )
        cluster.write_state(client, state_ns, state)
        return Outcome("held", state, steps, reason)
    pruned = _execute(client, state, state_ns, steps)
    return Outcome(action, state, steps, pruned=pruned)


def install(
    client: Client,
    catalog: Catalog,
    package: str,
    *,
    channel: str | None,
    approval: Approval,
    namespace: str,
    state_ns: str,
    hold_on: Severity | None = Severity.HIGH,
    all_namespaces: bool = False,
    target_namespaces: list[str] | None = None,
) -> Outcome:
    """Install the channel head, or hold it for approval (manual, or risky under auto).

    Dependencies are resolved first; one that is not installed yet is named with the command
    that installs it (each operator is reviewed and approved on its own, never pulled in unseen).
    """
    cluster.ensure_namespace(client, state_ns)
    existing = cluster.read_state(client, state_ns, package)
    if existing is not None and existing.installed:
        raise LifecycleError(
            f"{package} is already installed ({existing.installed}); "
            "use `flotilla operators upgrade`"
        )
    installed = {
        s.package: (s.installed, Version.parse(s.version))
        for s in cluster.list_states(client, state_ns)
        if s.installed and s.version
    }
    plan = plan_install(
        catalog,
        package,
        channel=channel,
        namespace=namespace,
        approval=approval,
        all_namespaces=all_namespaces,
        target_namespaces=target_namespaces,
        installed=installed,
        crds=cluster.existing_crds(client),
    )
    if plan.missing:
        needed = "; ".join(str(d) for d in plan.missing)
        first = plan.missing[0]
        raise LifecycleError(
            f"{package} needs operators that are not installed: {needed}. Install them first "
            f"(each is reviewed on its own), e.g. `flotilla operators install {first.package}`"
        )
    outcome = _proceed(client, plan.state, state_ns, plan.steps, hold_on, "installed")
    outcome.dependencies = plan.dependencies
    return outcome


def upgrade(
    client: Client,
    catalog: Catalog,
    package: str,
    *,
    state_ns: str,
    channel: str | None = None,
    hold_on: Severity | None = Severity.HIGH,
) -> Outcome:
    """Walk the upgrade graph to the channel head; apply or hold as the approval mode says."""
    state = _require(client, state_ns, package)
    if channel:
        state.channel = channel
    steps = _plan(catalog, state, cluster.existing_crds(client))
    state.deprecations = _notes(catalog, state, [s.ref.name for s in steps] or [state.installed])
    if not steps:
        state.pending = None
        cluster.write_state(client, state_ns, state)
        return Outcome("up-to-date", state)
    return _proceed(client, state, state_ns, steps, hold_on, "upgraded")


def approve(client: Client, catalog: Catalog, package: str, *, state_ns: str) -> Outcome:
    """Apply the pending plan — only if the catalog still resolves to the same bundles."""
    state = _require(client, state_ns, package, allow_uninstalled=True)
    if state.pending is None:
        raise LifecycleError(f"{package} has nothing waiting for approval")
    state.channel = state.pending.channel
    steps = _plan(catalog, state, cluster.existing_crds(client))
    if [s.ref.name for s in steps] != state.pending.steps:
        raise LifecycleError(
            f"the catalog now resolves {package} to {[s.ref.name for s in steps]}, not the "
            f"approved {state.pending.steps}; run upgrade again to review the new plan"
        )
    action = "upgraded" if state.installed else "installed"
    pruned = _execute(client, state, state_ns, steps)
    return Outcome(action, state, steps, pruned=pruned)


def _require(
    client: Client, state_ns: str, package: str, allow_uninstalled: bool = False
) -> OperatorState:
    state = cluster.read_state(client, state_ns, package)
    if state is None or (not state.installed and not allow_uninstalled):
        if state is not None and state.pending is not None:
            raise LifecycleError(
                f"{package} is waiting for approval of its install; "
                f"run `flotilla operators approve {package}`"
            )
        raise LifecycleError(f"{package} is not installed (no state in namespace {state_ns})")
    return state


@dataclass
class UninstallOutcome:
    deleted: list[ObjectRef]
    kept_crds: dict[str, int]
    """CRD -> number of objects left in the cluster (when not removed)."""
    removed_crds: dict[str, int]


def uninstall(
    client: Client, package: str, *, state_ns: str, remove_crds: bool = False
) -> UninstallOutcome:
    """Remove what the operator installed; CRDs and their objects stay unless asked."""
    state = cluster.read_state(client, state_ns, package)
    if state is None:
        raise LifecycleError(f"{package} is not installed (no state in namespace {state_ns})")
    others = [r for r in state.objects if r.kind != "CustomResourceDefinition"]
    deleted = cluster.delete_objects(client, others)
    kept: dict[str, int] = {}
    removed: dict[str, int] = {}
    if remove_crds:
        for name in state.crds:
            removed[name] = cluster.delete_crd_objects(client, name)
    else:
        kept = cluster.crd_object_counts(client, state.crds)
    cluster.delete_state(client, state_ns, package)
    return UninstallOutcome(deleted, kept, removed)
