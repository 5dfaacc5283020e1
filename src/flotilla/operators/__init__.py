"""Operator audit and lifecycle: what an operator install grants, and installs that show it."""

from flotilla.operators.audit import AuditDiff, audit, diff_audits
from flotilla.operators.catalog import load_catalog, upgrade_path
from flotilla.operators.loading import load_inputs
from flotilla.operators.models import AuditReport, Finding, Grant, Manifest, Severity

__all__ = [
    "AuditDiff",
    "AuditReport",
    "Finding",
    "Grant",
    "Manifest",
    "Severity",
    "audit",
    "diff_audits",
    "load_catalog",
    "load_inputs",
    "upgrade_path",
]
