"""One audit over loaded manifests, and the diff of two audits (what an upgrade adds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from flotilla.operators.models import (
    AuditReport,
    Finding,
    Grant,
    LoadProblem,
    Manifest,
    Severity,
    paused_gc,
)
from flotilla.operators.rbac import grants_from_manifests, mode_for_targets
from flotilla.operators.rules import (
    RULES,
    _crd_summary,
    grant_findings,
    manifest_findings,
    problem_findings,
)

__all__ = ["AuditDiff", "audit", "diff_audits", "exceeds"]


def audit(
    manifests: Sequence[Manifest],
    *,
    namespace: str = "operators",
    install_mode: str | None = None,
    target_namespaces: Sequence[str] = (),
    existing_crds: Mapping[str, str] | None = None,
    owner: str = "",
    errors: Sequence[str | LoadProblem] = (),
) -> AuditReport:
    """Grants and findings for the manifests, most severe first, then by file and line.

    ``errors`` are what loading could not read: each :class:`LoadProblem` is also a finding
    (``load-error``, ``duplicate-key``) at its file and line, so no output format hides it; the
    load errors (not the duplicate keys) are the report's ``errors``. ``target_namespaces``
    are the OperatorGroup's targets: a CSV's ``permissions`` are granted in each of them.
    """
    install_mode = install_mode or mode_for_targets(namespace, target_namespaces, False)
    with paused_gc():
        grants = grants_from_manifests(
            manifests,
            namespace=namespace,
            install_mode=install_mode,
            target_namespaces=target_namespaces,
        )
        findings = list(
            manifest_findings(
                manifests, existing_crds=existing_crds, owner=owner, install_mode=install_mode
            )
        )
        findings.extend(grant_findings(grants))
        findings.extend(problem_findings(p for p in errors if isinstance(p, LoadProblem)))
        findings = _dedup_sorted(findings)
    messages = [str(p) for p in errors if not isinstance(p, LoadProblem) or p.rule == "load-error"]
    return AuditReport(findings=findings, grants=grants, errors=messages)


def _dedup_sorted(findings: list[Finding]) -> list[Finding]:
    # plain tuples: hashing them is several times cheaper than the dataclasses they come from
    unique = {
        (f.rule, f.subject, f.identity or f.message, f.source.file, f.source.line): f
        for f in findings
    }
    # most severe first, then by file, line, rule and subject: two stable sorts whose keys are
    # read in C (a key function in Python took 0.1 s more for 172,000 findings)
    ordered = sorted(unique.values(), key=_PLACE)
    ordered.sort(key=_SEVERITY, reverse=True)  # reverse keeps equal keys in order
    return ordered


_PLACE = attrgetter("source.file", "source.line", "rule", "subject")
_SEVERITY = attrgetter("severity")


def exceeds(report: AuditReport | AuditDiff, threshold: Severity | None) -> bool:
    """True when any (added) finding is at or above ``threshold`` — the ``--fail-on`` test."""
    if threshold is None:
        return False
    findings = report.added if isinstance(report, AuditDiff) else report.findings
    return any(f.severity >= threshold for f in findings)


@dataclass
class AuditDiff:
    """What NEW has that OLD had not, and what it drops. Findings match by meaning, not line."""

    added: list[Finding] = field(default_factory=list)
    removed: list[Finding] = field(default_factory=list)
    grants_added: list[Grant] = field(default_factory=list)
    grants_removed: list[Grant] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.grants_added or self.grants_removed)


def _grant_key(g: Grant) -> tuple[str, str, str, object]:
    return (g.subject, g.role, g.scope, g.rule)


def _removed_versions(old: Sequence[Manifest], new: Sequence[Manifest]) -> list[Finding]:
    before = {m.name: _crd_summary(m)[1] for m in old if m.kind == "CustomResourceDefinition"}
    found = []
    info = RULES["crd-version-removed"]
    for m in new:
        if m.kind != "CustomResourceDefinition" or m.name not in before:
            continue
        gone = [v for v in before[m.name] if v not in _crd_summary(m)[1]]
        if gone:
            found.append(
                Finding(
                    rule=info.id,
                    severity=info.severity,
                    subject=f"CRD {m.name}",
                    source=m.source,
                    message=f"{m.name} stops serving {','.join(gone)}",
                    why=info.why,
                    origin=m.origin,
                )
            )
    return found


def diff_audits(
    old: AuditReport,
    new: AuditReport,
    *,
    old_manifests: Sequence[Manifest] = (),
    new_manifests: Sequence[Manifest] = (),
) -> AuditDiff:
    """Findings and grants in ``new`` but not ``old`` (and the reverse).

    With the manifests given, CRD versions that stop being served are reported as added findings.
    """
    old_keys = {f.key for f in old.findings}
    new_keys = {f.key for f in new.findings}
    old_grants = {_grant_key(g) for g in old.grants}
    new_grants = {_grant_key(g) for g in new.grants}
    added = [f for f in new.findings if f.key not in old_keys]
    added.extend(_removed_versions(old_manifests, new_manifests))
    return AuditDiff(
        added=_dedup_sorted(added),
        removed=_dedup_sorted([f for f in old.findings if f.key not in new_keys]),
        grants_added=[g for g in new.grants if _grant_key(g) not in old_grants],
        grants_removed=[g for g in old.grants if _grant_key(g) not in new_grants],
    )
