"""Install, upgrade held for approval, approve, status and uninstall on the real control plane."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from typer.testing import CliRunner

from flotilla.core.kube import apply_raw, get_raw, list_raw
from flotilla.operators import cluster
from flotilla.operators.cli import EXIT_HELD, app
from tests.operators.helpers import CATALOG

pytestmark = pytest.mark.cluster
runner = CliRunner()
CRD_API = "apiextensions.k8s.io/v1"

ETCD_ENTRIES = {
    "etcdoperator.v0.9.0": "",
    "etcdoperator.v0.9.1": "  replaces: etcdoperator.v0.9.0\n",
    "etcdoperator.v0.9.2": "  replaces: etcdoperator.v0.9.0\n  skips:\n  - etcdoperator.v0.9.1\n",
    "etcdoperator.v0.9.4": "  replaces: etcdoperator.v0.9.2\n",
}


def _catalog(root: Path, entries: list[str]) -> Path:
    """A catalog dir with all bundles but only ``entries`` in the etcd alpha channel."""
    if not (root / "bundles").exists():
        shutil.copytree(CATALOG / "bundles", root / "bundles")
        shutil.copy(CATALOG / "more.json", root / "more.json")
    docs = [
        "schema: olm.package\nname: etcd\ndefaultChannel: alpha\n",
        "schema: olm.channel\npackage: etcd\nname: alpha\nentries:\n"
        + "".join(f"- name: {e}\n{ETCD_ENTRIES[e]}" for e in entries),
    ]
    for e in entries:
        version = e.split(".v", 1)[1]
        docs.append(
            f"schema: olm.bundle\nname: {e}\npackage: etcd\nimage: bundles/etcd-{version}\n"
            f"properties:\n- type: olm.package\n  value: {{packageName: etcd, "
            f"version: {version}}}\n"
        )
    (root / "etcd.yaml").write_text("---\n".join(docs))
    return root


def ops(kubeconfig: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _labels(obj: dict[str, Any] | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


@pytest.fixture
def cleanup_crds(kube: Client) -> Any:
    names: list[str] = []
    yield names
    for name in names:
        cluster.delete_crd_objects(kube, name)


def test_etcd_install_upgrade_held_with_diff_then_approved(
    kube: Client, kubeconfig: Path, namespace: str, tmp_path: Path, cleanup_crds: list[str]
) -> None:
    cleanup_crds += [
        "etcdclusters.etcd.database.coreos.com",
        "etcdbackups.etcd.database.coreos.com",
    ]
    cat = _catalog(tmp_path / "cat", ["etcdoperator.v0.9.0"])
    common = ["--catalog", str(cat), "--state-namespace", namespace]
    # 0.9.0 in its own namespace: only namespace-scoped, medium findings -> auto goes ahead
    result = ops(
        kubeconfig,
        "install",
        "etcd",
        "--channel",
        "alpha",
        "--approve",
        "auto",
        "--namespace",
        namespace,
        *common,
    )
    assert result.exit_code == 0, result.output
    assert "Step 1/1: etcdoperator.v0.9.0" in result.output
    assert "installed etcd etcdoperator.v0.9.0" in result.output
    dep = get_raw(kube, "apps/v1", "Deployment", "etcd-operator", namespace=namespace)
    assert _labels(dep)["flotilla.dev/bundle"] == "etcdoperator.v0.9.0"
    role = get_raw(
        kube, "rbac.authorization.k8s.io/v1", "Role", "etcd-etcd-operator", namespace=namespace
    )
    assert role is not None and len(role["rules"]) == 4
    assert get_raw(kube, "v1", "ServiceAccount", "etcd-operator", namespace=namespace)
    crd = get_raw(
        kube, CRD_API, "CustomResourceDefinition", "etcdclusters.etcd.database.coreos.com"
    )
    assert _labels(crd)["flotilla.dev/operator"] == "etcd"
    # the managed fields show server-side apply by our field manager
    assert any(
        f.get("manager") == "flotilla" and f.get("operation") == "Apply"
        for f in (dep or {})["metadata"]["managedFields"]
    )

    # The catalog moves on: 0.9.2 (skips 0.9.1) then 0.9.4, which reads secrets cluster-wide.
    _catalog(cat, list(ETCD_ENTRIES))
    result = ops(kubeconfig, "upgrade", "etcd", *common)
    assert result.exit_code == EXIT_HELD, result.output
    out = result.output
    assert "Step 1/2: etcdoperator.v0.9.2" in out and "Step 2/2: etcdoperator.v0.9.4" in out
    assert "HELD for approval: etcdoperator.v0.9.4" in out
    assert "Added findings: 1 high, 1 medium, 1 low" in out and "secrets-read" in out
    # nothing applied yet
    dep = get_raw(kube, "apps/v1", "Deployment", "etcd-operator", namespace=namespace)
    assert _labels(dep)["flotilla.dev/bundle"] == "etcdoperator.v0.9.0"
    assert (
        get_raw(kube, "rbac.authorization.k8s.io/v1", "ClusterRole", "etcd-etcd-operator-cluster")
        is None
    )
    status = ops(kubeconfig, "status", "etcd", "--state-namespace", namespace)
    assert "pending approval: etcdoperator.v0.9.2 -> etcdoperator.v0.9.4" in status.output
    assert "secrets-read" in status.output

    result = ops(kubeconfig, "approve", "etcd", *common)
    assert result.exit_code == 0, result.output
    assert "upgraded etcd etcdoperator.v0.9.4" in result.output
    dep = get_raw(kube, "apps/v1", "Deployment", "etcd-operator", namespace=namespace)
    assert _labels(dep)["flotilla.dev/bundle"] == "etcdoperator.v0.9.4"
    cr = get_raw(kube, "rbac.authorization.k8s.io/v1", "ClusterRole", "etcd-etcd-operator-cluster")
    assert cr is not None and cr["rules"][0]["resources"] == ["secrets"]
    assert (
        get_raw(kube, CRD_API, "CustomResourceDefinition", "etcdbackups.etcd.database.coreos.com")
        is not None
    )
    assert ops(kubeconfig, "approve", "etcd", *common).exit_code == 2  # nothing pending
    twice = ops(kubeconfig, "install", "etcd", "--namespace", namespace, *common)
    assert twice.exit_code == 2 and "already installed" in twice.output
    again = ops(kubeconfig, "upgrade", "etcd", *common)
    assert again.exit_code == 0 and "is at the head" in again.output

    # The live audit sees what we granted, pointing at the cluster object.
    live = ops(kubeconfig, "audit", "--cluster", "-o", "json")
    assert live.exit_code == 0, live.output
    assert '"source": "cluster:ClusterRole/etcd-etcd-operator-cluster"' in live.output
    # Auditing another bundle with the same CRD against the cluster finds the conflict.
    conflict = ops(
        kubeconfig, "audit", str(CATALOG / "bundles" / "etcd-0.9.2"), "--check-crds", "--no-grants"
    )
    assert "crd-conflict" in conflict.output

    # Uninstall keeps the CRDs and says how many objects they still hold.
    apply_raw(
        kube,
        {
            "apiVersion": "etcd.database.coreos.com/v1beta2",
            "kind": "EtcdCluster",
            "metadata": {"name": "example", "namespace": namespace},
            "spec": {"size": 3},
        },
        plural="etcdclusters",
        namespaced=True,
    )
    result = ops(kubeconfig, "uninstall", "etcd", "--state-namespace", namespace)
    assert result.exit_code == 0, result.output
    assert "kept CRD etcdclusters.etcd.database.coreos.com (1 objects still exist)" in result.output
    assert get_raw(kube, "apps/v1", "Deployment", "etcd-operator", namespace=namespace) is None
    assert (
        get_raw(kube, "rbac.authorization.k8s.io/v1", "ClusterRole", "etcd-etcd-operator-cluster")
        is None
    )
    assert (
        get_raw(kube, CRD_API, "CustomResourceDefinition", "etcdclusters.etcd.database.coreos.com")
        is not None
    )
    assert ops(kubeconfig, "status", "etcd", "--state-namespace", namespace).exit_code == 2


def test_webhook_operator_manual_approval_and_full_removal(
    kube: Client, kubeconfig: Path, namespace: str, cleanup_crds: list[str]
) -> None:
    cleanup_crds.append("memcacheds.cache.example.com")
    common = ["--catalog", str(CATALOG), "--state-namespace", namespace]
    result = ops(kubeconfig, "install", "memcached-operator", "--namespace", namespace, *common)
    assert result.exit_code == EXIT_HELD, result.output
    assert "approval is manual" in result.output and "mutating-webhook" in result.output
    assert (
        get_raw(
            kube,
            "apps/v1",
            "Deployment",
            "memcached-operator-controller-manager",
            namespace=namespace,
        )
        is None
    )
    states = cluster.list_states(kube, namespace)
    assert [(s.package, s.installed, s.pending is not None) for s in states] == [
        ("memcached-operator", "", True)
    ]
    # upgrade of something not yet installed points at approve
    assert "approve" in ops(kubeconfig, "upgrade", "memcached-operator", *common).output

    result = ops(kubeconfig, "approve", "memcached-operator", *common)
    assert result.exit_code == 0, result.output
    # AllNamespaces only: CSV permissions became cluster-wide, no Role
    roles = list_raw(
        kube,
        "rbac.authorization.k8s.io/v1",
        "Role",
        namespace=namespace,
        labels={"flotilla.dev/operator": "memcached-operator"},
    )
    assert roles == []
    promoted = get_raw(
        kube,
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "memcached-operator-memcached-operator-controller-manager",
    )
    assert promoted is not None
    assert (
        get_raw(kube, "v1", "Service", "memcached-operator-webhook-service", namespace=namespace)
        is not None
    )

    result = ops(
        kubeconfig,
        "uninstall",
        "memcached-operator",
        "--remove-crds",
        "--state-namespace",
        namespace,
    )
    assert result.exit_code == 0, result.output
    assert "deleted CRD memcacheds.cache.example.com and its 0 objects" in result.output
    assert (
        get_raw(
            kube, "rbac.authorization.k8s.io/v1", "ClusterRole", "memcached-operator-metrics-reader"
        )
        is None
    )


def test_star_on_star_is_held_even_with_auto_approval(
    kube: Client, kubeconfig: Path, namespace: str
) -> None:
    common = ["--catalog", str(CATALOG), "--state-namespace", namespace]
    result = ops(
        kubeconfig,
        "install",
        "greedy-operator",
        "--approve",
        "auto",
        "--namespace",
        namespace,
        *common,
    )
    assert result.exit_code == EXIT_HELD, result.output
    assert "rbac-wildcard-all" in result.output and "cluster-admin-binding" in result.output
    assert (
        get_raw(kube, "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "greedy-operator-admin")
        is None
    )
    # declining = uninstalling the pending request; nothing was applied, nothing to delete
    result = ops(kubeconfig, "uninstall", "greedy-operator", "--state-namespace", namespace)
    assert result.exit_code == 0 and "deleted" not in result.output.replace("uninstalled", "")
    assert cluster.list_states(kube, namespace) == []
