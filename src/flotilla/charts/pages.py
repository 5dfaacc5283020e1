"""The static files of a pages branch besides index.yaml: ``index.html`` and Artifact Hub metadata.

Pure functions: the same index gives the same HTML (no timestamps), so re-running a publish that
adds nothing changes nothing and makes no commit.
"""

from __future__ import annotations

import html

import yaml

from flotilla.charts import versions
from flotilla.charts.errors import ChartError
from flotilla.charts.index import Index
from flotilla.core import yamlload

PAGE_MARKER = '<meta name="generator" content="flotilla charts">'
"""Marks index.html as ours, so publish never overwrites a page someone else wrote."""


def render_html(index: Index, repo_url: str, title: str = "Helm chart repository") -> str:
    """A page listing every chart, its newest version and all published versions."""
    esc = html.escape
    repo_name = repo_url.rstrip("/").rsplit("/", 1)[-1] or "charts"
    rows = []
    for name in sorted(index.entries):
        entries = index.entries[name]
        releases = [e for e in entries if (v := versions.parse(e.version)) and not v.is_prerelease]
        latest = (releases or entries)[0]
        links = " ".join(
            f'<a href="{esc(e.urls[0] if e.urls else "")}">{esc(e.version)}</a>' for e in entries
        )
        description = esc(str(latest.data.get("description", "")))
        rows.append(
            f"<tr><td><strong>{esc(name)}</strong></td><td>{esc(latest.version)}</td>"
            f"<td>{esc(str(latest.data.get('appVersion', '')))}</td><td>{description}</td>"
            f"<td>{links}</td></tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="5">No charts yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{PAGE_MARKER}
<title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}
code{{background:#eee;padding:.2em}}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Add this repository:</p>
<pre><code>helm repo add {esc(repo_name)} {esc(repo_url)}
helm search repo {esc(repo_name)} --devel --versions</code></pre>
<table>
<tr><th>Chart</th><th>Latest</th><th>App version</th><th>Description</th><th>Versions</th></tr>
{body}
</table>
<p>Index: <a href="index.yaml">index.yaml</a></p>
</body>
</html>
"""


def check_artifacthub_repo(raw: bytes, source: str) -> bytes:
    """Validate an ``artifacthub-repo.yml`` enough to catch typos before it goes live."""
    try:
        data = yamlload.load(raw)
    except yaml.YAMLError as e:
        raise ChartError(f"{source}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ChartError(f"{source}: must be a mapping (repositoryID, owners, ignore)")
    unknown = set(data) - {"repositoryID", "owners", "ignore"}
    if unknown:
        raise ChartError(f"{source}: unknown keys {sorted(unknown)}")
    return raw
