"""Operator audit and lifecycle: what an operator install grants, and installs that show it.

The public names below are loaded on first use (PEP 562), not when the package is imported, so
``flotilla operators ... --help`` does not read YAML machinery or the audit rules first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.operators.audit import AuditDiff, audit, diff_audits
    from flotilla.operators.catalog import load_catalog, upgrade_path
    from flotilla.operators.loading import load_inputs
    from flotilla.operators.models import AuditReport, Finding, Grant, Manifest, Severity

_EXPORTS = {
    "AuditDiff": "flotilla.operators.audit",
    "AuditReport": "flotilla.operators.models",
    "Finding": "flotilla.operators.models",
    "Grant": "flotilla.operators.models",
    "Manifest": "flotilla.operators.models",
    "Severity": "flotilla.operators.models",
    "audit": "flotilla.operators.audit",
    "diff_audits": "flotilla.operators.audit",
    "load_catalog": "flotilla.operators.catalog",
    "load_inputs": "flotilla.operators.loading",
    "upgrade_path": "flotilla.operators.catalog",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
