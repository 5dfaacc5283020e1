"""Operator audit and lifecycle: what an operator install grants, and installs that show it.

The public names load on first use (PEP 562), so ``flotilla operators --help`` does not import
the audit, its YAML loaders and reports. One catch of laziness: the function ``audit`` shares
its name with the module ``flotilla.operators.audit``; import it as
``from flotilla.operators.audit import audit`` when that module may already be loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.operators.audit import AuditDiff, audit, diff_audits
    from flotilla.operators.catalog import load_catalog, upgrade_path
    from flotilla.operators.loading import load_inputs
    from flotilla.operators.models import AuditReport, Finding, Grant, Manifest, Severity

_WHERE = {
    "AuditDiff": "audit", "audit": "audit", "diff_audits": "audit",
    "load_catalog": "catalog", "upgrade_path": "catalog",
    "load_inputs": "loading",
    "AuditReport": "models", "Finding": "models", "Grant": "models", "Manifest": "models",
    "Severity": "models",
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
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_WHERE[name]}")
    # Bind every name of that module now: importing ``operators.audit`` sets the package's
    # ``audit`` to the submodule, which must not shadow the function of that name.
    for public, where in _WHERE.items():
        if where == _WHERE[name]:
            globals()[public] = getattr(module, public)
    return globals()[name]
