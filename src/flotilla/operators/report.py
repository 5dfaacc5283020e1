"""Render audits and diffs: a table for people, JSON for scripts, SARIF for code-scanning UIs."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flotilla import __version__
from flotilla.operators.audit import AuditDiff
from flotilla.operators.models import AuditReport, Finding, Grant, Severity, paused_gc

__all__ = ["diff_json", "diff_text", "report_json", "report_sarif", "report_text"]

_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}


@dataclass
class _Table:
    """A plain text table, laid out in one pass: time linear in its cells.

    rich's Table measured every cell several times over and took 74 s for 6,000 roles; a
    report of 60,000 objects must print in seconds. Columns are as wide as their widest cell up
    to a cap, and longer cells fold onto further lines, as before.
    """

    title: str
    headers: tuple[str, ...]
    caps: tuple[int, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def render(self) -> str:
        columns = list(zip(*self.rows, strict=True)) or [()] * len(self.headers)
        widths = [
            min(cap, max(len(h), max(map(len, column), default=0)))
            for h, cap, column in zip(self.headers, self.caps, columns, strict=True)
        ]
        template = "  ".join(f"%-{w}s" for w in widths)
        full = sum(widths) + 2 * (len(widths) - 1)
        out = [self.title]
        out.append(_line(self.headers, widths, template))
        out.append("  ".join("-" * w for w in widths))
        append = out.append
        for row in self.rows:
            text = template % row
            # a cell wider than its column makes the line longer than the columns: fold it
            append(text.rstrip() if len(text) == full else _line(row, widths, template))
        return "\n".join(out) + "\n"


def _line(cells: tuple[str, ...], widths: list[int], template: str) -> str:
    """One row whose long cells fold onto further lines; a cell that fits is not split.

    A third of the bench's rows fold, nearly always in one cell (the message, the
    permission). Line ``n`` of the row holds slice ``n`` of each cell (past its end a slice is
    empty), and when one cell folds its further lines are that cell's slices after blanks:
    60,000 manifests' 95,000 folded rows took 1.3 s under the profiler cut into pieces."""
    over = [i for i, (c, w) in enumerate(zip(cells, widths, strict=True)) if len(c) > w]
    if len(over) == 1:
        k = over[0]
        cell, w = cells[k], widths[k]
        lines = [(template % (*cells[:k], cell[:w], *cells[k + 1 :])).rstrip()]
        pad = " " * (sum(widths[:k]) + 2 * k)
        lines.extend((pad + cell[i : i + w]).rstrip() for i in range(w, len(cell), w))
        return "\n".join(lines)
    height = max([(len(c) - 1) // w for c, w in zip(cells, widths, strict=True)]) + 1
    lines = []
    for n in range(height):
        part = tuple([c[n * w : n * w + w] for c, w in zip(cells, widths, strict=True)])
        lines.append((template % part).rstrip())
    return "\n".join(lines)


def _render(*tables: _Table) -> str:
    return "\n".join(t.render() for t in tables)


def _findings_table(findings: list[Finding], title: str, *, why: bool = False) -> _Table:
    headers: tuple[str, ...] = ("severity", "rule", "subject", "source", "message")
    caps: tuple[int, ...] = (8, 28, 40, 50, 70)
    if why:
        headers, caps = (*headers, "why"), (*caps, 60)
    table = _Table(title, headers, caps)
    labels = {s: s.label for s in Severity}
    if why:
        table.rows = [
            (labels[f.severity], f.rule, f.subject, str(f.source), f.message, f.why)
            for f in findings
        ]
    else:
        table.rows = [
            (labels[f.severity], f.rule, f.subject, str(f.source), f.message) for f in findings
        ]
    return table


def _grants_table(grants: list[Grant], title: str) -> _Table:
    table = _Table(title, ("subject", "scope", "via", "permission", "source"), (40, 24, 40, 60, 50))
    described: dict[int, str] = {}  # by rule object: a role's rules recur in all its grants
    for g in grants:
        shown = described.get(id(g.rule))
        if shown is None:
            shown = described[id(g.rule)] = g.rule.describe()
        table.rows.append((g.subject, g.scope, g.role, shown, str(g.source)))
    return table


def _summary(findings: list[Finding]) -> str:
    tally = Counter(f.severity for f in findings)
    counts = {s: tally[s] for s in reversed(Severity)}
    return ", ".join(f"{n} {s.label}" for s, n in counts.items() if n) or "no findings"


def report_text(report: AuditReport, *, grants: bool = True, why: bool = False) -> str:
    """Findings table (most severe first), the grants inventory, then input errors."""
    with paused_gc():
        summary = f"Findings: {_summary(report.findings)}"
        parts: list[_Table] = [_findings_table(report.findings, summary, why=why)]
        if grants and report.grants:
            title = f"Permissions granted ({len(report.grants)})"
            parts.append(_grants_table(report.grants, title))
        text = _render(*parts)
    for err in report.errors:
        text += f"error: {err}\n"
    return text


def _grant_json(g: Grant) -> dict[str, Any]:
    r = g.rule
    return {
        "subject": g.subject,
        "scope": g.scope,
        "via": g.role,
        "source": str(g.source),
        "apiGroups": list(r.api_groups),
        "resources": list(r.resources),
        "verbs": list(r.verbs),
        "resourceNames": list(r.resource_names),
        "nonResourceURLs": list(r.non_resource_urls),
    }


def report_json(report: AuditReport) -> str:
    """``{"findings": [...], "grants": [...], "errors": [...]}``."""
    return json.dumps(
        {
            "findings": [f.to_json() for f in report.findings],
            "grants": [_grant_json(g) for g in report.grants],
            "errors": report.errors,
        },
        indent=2,
    )


def report_sarif(report: AuditReport) -> str:
    """SARIF 2.1.0 with one result per finding, located at its manifest and line."""
    from flotilla.operators.rules import RULES

    used = sorted({f.rule for f in report.findings})
    rules = [
        {
            "id": rid,
            "name": rid,
            "shortDescription": {"text": RULES[rid].title},
            "fullDescription": {"text": RULES[rid].why},
            "defaultConfiguration": {"level": _SARIF_LEVEL[RULES[rid].severity]},
            "properties": {"security-severity": _security_score(RULES[rid].severity)},
        }
        for rid in used
        if rid in RULES
    ]
    base = _uri_base([f.source.file for f in report.findings])
    results = []
    for f in report.findings:
        location: dict[str, Any] = {"artifactLocation": _artifact(f.source.file, base)}
        if f.source.line:
            location["region"] = {"startLine": f.source.line}
        results.append(
            {
                "ruleId": f.rule,
                "level": _SARIF_LEVEL[f.severity],
                "message": {"text": f"{f.subject}: {f.message}"},
                "locations": [{"physicalLocation": location}],
                "properties": {"severity": f.severity.label, "subject": f.subject},
            }
        )
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "flotilla-operators-audit",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not report.errors,
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": err}} for err in report.errors
                        ],
                    }
                ],
                "originalUriBaseIds": {
                    "SRCROOT": {"uri": Path(base).resolve().as_uri().rstrip("/") + "/"}
                },
            }
        ],
    }
    return json.dumps(sarif, indent=2)


def _uri_base(files: list[str]) -> str:
    """The directory SARIF URIs are relative to: the working directory, or, when a file lies
    outside it, the deepest directory holding every file (so no URI keeps a ``../``)."""
    cwd = os.getcwd()
    local = [os.path.abspath(f) for f in files if not f.startswith("cluster:")]
    if all(os.path.commonpath([cwd, f]) == cwd for f in local):
        return cwd
    return os.path.commonpath([os.path.dirname(f) for f in local])


def _artifact(file: str, base: str) -> dict[str, str]:
    if file.startswith("cluster:"):  # a live object: no file to point at
        return {"uri": file}
    relative = Path(os.path.relpath(os.path.abspath(file), base)).as_posix()
    return {"uri": quote(relative), "uriBaseId": "SRCROOT"}


def _security_score(severity: Severity) -> str:
    return {
        Severity.CRITICAL: "9.5",
        Severity.HIGH: "8.0",
        Severity.MEDIUM: "5.5",
        Severity.LOW: "2.0",
    }[severity]


def diff_text(diff: AuditDiff) -> str:
    """What the new version adds (and drops), for a reviewer deciding on an upgrade."""
    if diff.empty:
        return "No change in findings or permissions.\n"
    parts: list[_Table] = []
    if diff.added:
        parts.append(_findings_table(diff.added, f"Added findings: {_summary(diff.added)}"))
    if diff.grants_added:
        parts.append(_grants_table(diff.grants_added, "Added permissions"))
    if diff.removed:
        parts.append(_findings_table(diff.removed, "Findings no longer present"))
    if diff.grants_removed:
        parts.append(_grants_table(diff.grants_removed, "Permissions no longer granted"))
    return _render(*parts)


def diff_json(diff: AuditDiff) -> str:
    """``{"added": [...], "removed": [...], "grants_added": [...], "grants_removed": [...]}``."""
    return json.dumps(
        {
            "added": [f.to_json() for f in diff.added],
            "removed": [f.to_json() for f in diff.removed],
            "grants_added": [_grant_json(g) for g in diff.grants_added],
            "grants_removed": [_grant_json(g) for g in diff.grants_removed],
        },
        indent=2,
    )
