"""The chart of Flotilla itself (deploy/chart/flotilla): its checks, without real nodes.

The chart repeats what the product defines elsewhere (the CRDs, the localpv RBAC), so these tests
hold the copies equal; they lint it with both linters, audit what it grants, and have the API
server validate everything it renders (server-side dry run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import flotilla
from flotilla.localpv.deploy import (
    AGENT_CLUSTER_RULES,
    CONTROLLER_CLUSTER_RULES,
    CONTROLLER_NAMESPACE_RULES,
)
from flotilla.localpv.manifests import crds
from flotilla.testenv.build import BuildSpec

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "flotilla"
FLOTILLA = [sys.executable, "-m", "flotilla"]
EVERYTHING = (
    "--set",
    "updates.enabled=true",
    "--set",
    "reboots.enabled=true",
    "--set",
    "updates.tokens.adminTokens=a",
)
# High findings accepted on purpose; docs/chart.md says why for each (rule, service account).
ACCEPTED_FINDINGS = {
    # Each one is explained in docs/chart.md ("Accepted audit findings").
    ("pv-create", "localpv-controller"): "a provisioner creates PersistentVolumes",
    ("pod-privileged", "localpv-agent"): "it creates and removes directories on the host's disks",
    ("pod-hostpath", "localpv-agent"): "its hostPath roots are where the volumes live",
    ("pod-privileged", "reboot-agent"): "hostReboot: it runs systemctl reboot on the host",
    ("pod-host-namespace", "reboot-agent"): "hostReboot: nsenter into the host's PID 1",
}
DEFAULT_FINDINGS = {
    ("pv-create", "localpv-controller"),
    ("pod-privileged", "localpv-agent"),
    ("pod-hostpath", "localpv-agent"),
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("helm")
    assert binary, "tests/conftest.py puts the helm it builds on PATH"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def render(*args: str, namespace: str = "flotilla", release: str = "fl") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def workload(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _strip(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k in ("apiGroups", "resources", "verbs")} for r in rules]


def test_the_charts_crds_are_the_ones_localpv_defines() -> None:
    docs = [d for d in yaml.safe_load_all((CHART / "crds" / "localpv.yaml").read_text()) if d]
    assert docs == crds()


def test_the_localpv_rbac_is_the_one_flotilla_localpv_manifests_prints() -> None:
    roles = {(d["kind"], d["metadata"]["name"]): d["rules"] for d in render() if "rules" in d}
    assert _strip(roles[("ClusterRole", "fl-localpv-controller-flotilla")]) == (
        CONTROLLER_CLUSTER_RULES
    )
    assert _strip(roles[("Role", "fl-localpv-controller")]) == CONTROLLER_NAMESPACE_RULES
    assert _strip(roles[("ClusterRole", "fl-localpv-agent-flotilla")]) == AGENT_CLUSTER_RULES


def test_every_rbac_rule_says_why() -> None:
    for template in CHART.glob("templates/*.yaml"):
        lines = template.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                above = lines[i - 1].strip()
                assert above.startswith("#") or above.startswith("{{/*"), (
                    f"{template.name}:{i + 1}: a rule without a comment saying why"
                )


def test_both_linters_pass() -> None:
    helm("lint", str(CHART), "--strict")
    helm("lint", str(CHART), "--strict", *EVERYTHING)
    result = subprocess.run(
        [*FLOTILLA, "charts", "lint", str(CHART)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_audit_finds_nothing_high_but_the_accepted(tmp_path: Path) -> None:
    everything = tmp_path / "everything.yaml"
    everything.write_text(helm("template", "fl", str(CHART), "-n", "flotilla", *EVERYTHING).stdout)
    for target in (CHART, everything):
        result = subprocess.run(
            [*FLOTILLA, "operators", "audit", str(target), "-o", "json", "--no-grants"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        high = {
            (f["rule"], _workload(f["subject"]))
            for f in json.loads(result.stdout)["findings"]
            if f["severity"] in ("high", "critical")
        }
        assert high <= set(ACCEPTED_FINDINGS), (
            f"{target}: unexplained {high - set(ACCEPTED_FINDINGS)}"
        )
        if target == CHART:
            assert high == DEFAULT_FINDINGS
        else:
            assert high == set(ACCEPTED_FINDINGS)
    doc = (CHART.parents[2] / "docs" / "chart.md").read_text()
    for rule, _ in ACCEPTED_FINDINGS:
        assert f"`{rule}`" in doc, f"docs/chart.md does not explain {rule}"


def _workload(subject: str) -> str:
    """``ServiceAccount flotilla/fl-x`` or ``DaemonSet audit-x`` -> ``x``."""
    return subject.split()[-1].split("/")[-1].removeprefix("fl-").removeprefix("audit-")


def test_tokens_never_reach_argv_and_the_server_is_probed() -> None:
    docs = render(*EVERYTHING)
    server = workload(docs, "Deployment", "fl-updates")
    pod = server["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert not any("token" in a for a in container["args"])
    env = {e["name"]: e for e in container["env"]}
    for name in ("FLOTILLA_UPDATES_ADMIN_TOKENS", "FLOTILLA_UPDATES_READ_TOKENS"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "fl-updates-tokens"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert server["spec"]["strategy"]["type"] == "Recreate"  # SQLite: one writer


def test_postgres_comes_from_a_secret_and_sqlite_refuses_two_replicas() -> None:
    refused = helm(
        "template", "fl", str(CHART), *EVERYTHING, "--set", "updates.replicas=2", check=False
    )
    assert refused.returncode != 0
    assert "needs updates.database.postgres.urlSecret" in refused.stderr
    docs = render(
        *EVERYTHING,
        "--set",
        "updates.replicas=2",
        "--set",
        "updates.database.postgres.urlSecret=fleet-db",
    )
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    server = workload(docs, "Deployment", "fl-updates")
    assert server["spec"]["replicas"] == 2
    db = next(e for e in server["spec"]["template"]["spec"]["containers"][0]["env"])
    assert db == {
        "name": "FLOTILLA_UPDATES_DB",
        "valueFrom": {"secretKeyRef": {"name": "fleet-db", "key": "url"}},
    }


def test_the_controller_runs_two_leader_elected_replicas() -> None:
    docs = render()
    ctl = workload(docs, "Deployment", "fl-localpv-controller")
    assert ctl["spec"]["replicas"] == 2
    args = ctl["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--namespace=flotilla" in args
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == flotilla.__version__
    image = ctl["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"flotilla.local/flotilla:{app_version}"


@pytest.mark.cluster
def test_the_api_server_accepts_everything_the_chart_renders(
    kubeconfig: Path, namespace: str
) -> None:
    rendered = helm(
        "template", "fl", str(CHART), "--namespace", namespace, "--include-crds", *EVERYTHING
    ).stdout
    result = subprocess.run(
        [
            str(BuildSpec().binary("kubectl")),
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    kinds = {line.split()[0].split("/")[0] for line in result.stdout.splitlines()}
    assert {"deployment.apps", "daemonset.apps", "service", "storageclass.storage.k8s.io"} <= kinds
