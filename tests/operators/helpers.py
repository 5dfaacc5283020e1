"""Shared helpers for the operators tests."""

from __future__ import annotations

from pathlib import Path

from flotilla.operators.models import AuditReport

DATA = Path(__file__).parent / "data"
CATALOG = DATA / "catalog"
BUNDLES = CATALOG / "bundles"


def rows(report: AuditReport) -> set[tuple[str, str, str, str]]:
    """(rule, severity, subject, file:line) with the file's base name: what a reviewer reads."""
    return {
        (f.rule, f.severity.label, f.subject, f"{Path(f.source.file).name}:{f.source.line}")
        for f in report.findings
    }
