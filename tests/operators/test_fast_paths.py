"""The shortcuts taken for speed (issue 24, 60,000 objects) give what the plain way gave."""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flotilla.operators.audit import audit
from flotilla.operators.loading import load_inputs
from flotilla.operators.models import Grant, PolicyRule, Source, paused_gc
from flotilla.operators.rbac import grants_from_manifests, policy_rule
from flotilla.operators.report import _Table
from flotilla.operators.rules import grant_findings

ROLE = """apiVersion: rbac.authorization.k8s.io/v1
kind: {kind}
metadata: {{name: {name}{ns}}}
rules:
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [GET, list, update]
"""


def _binding(kind: str, name: str, role_kind: str, role: str, ns: str = "") -> str:
    meta = f"{{name: {name}, namespace: {ns}}}" if ns else f"{{name: {name}}}"
    return (
        f"apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: {meta}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {role_kind}, name: {role}}}\n"
        "subjects: [{kind: ServiceAccount, name: sa, namespace: x}]\n"
    )


def test_table_folds_each_long_cell_at_its_column_width() -> None:
    table = _Table("T", ("a", "b"), (4, 6))
    table.rows = [
        ("x", "y"),
        ("abcdefghij", "z"),  # the first cell folds
        ("x", "1234567"),  # the last cell folds
        ("abcdefghi", "123456789012345"),  # both fold
        ("", ""),
    ]
    assert table.render() == (
        "T\n"
        "a     b\n"
        "----  ------\n"
        "x     y\n"
        "abcd  z\n"
        "efgh\n"
        "ij\n"
        "x     123456\n"
        "      7\n"
        "abcd  123456\n"
        "efgh  789012\n"
        "i     345\n"
        "\n"
    )


def test_cycles_made_with_collection_paused_are_still_collected() -> None:
    class Node:
        other: object = None

    with paused_gc():
        node = Node()
        node.other = node
        alive = weakref.ref(node)
        del node
        young: list[list[int]] = [[] for _ in range(5000)]
    assert gc.isenabled()
    # what was made inside is not left counted as young, to be scanned at the next allocation
    assert gc.get_count()[0] < 1000
    assert alive() is not None
    gc.collect()
    assert alive() is None
    del young


def test_collection_paused_leaves_a_programs_own_frozen_objects_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            made: list[list[int]] = [[] for _ in range(100)]
        assert gc.get_freeze_count() == frozen
        del made
    finally:
        gc.unfreeze()


def test_equal_policy_rules_share_one_object_and_keep_their_text() -> None:
    known: dict[tuple[Any, ...], PolicyRule] = {}
    first = policy_rule({"apiGroups": [""], "resources": ["pods"], "verbs": ["GET"]}, known)
    again = policy_rule({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, known)
    other = policy_rule({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}, known)
    assert first is again and first is not other
    assert first is not None and first.verbs == ("get",)
    odd = policy_rule({"apiGroups": "apps", "resources": ["a", None, 1, True], "verbs": ["Get"]})
    assert odd is not None
    assert (odd.api_groups, odd.resources, odd.verbs) == (("apps",), ("a", "1", "True"), ("get",))


def test_one_rule_bound_in_several_scopes_is_judged_in_each(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "---\n".join(
            [
                ROLE.format(kind="ClusterRole", name="shared", ns=""),
                ROLE.format(kind="ClusterRole", name="twin", ns=""),
                _binding("ClusterRoleBinding", "everywhere", "ClusterRole", "shared"),
                _binding("RoleBinding", "in-apps", "ClusterRole", "shared", "apps"),
                _binding("RoleBinding", "in-kube-system", "ClusterRole", "twin", "kube-system"),
            ]
        )
    )
    manifests, problems = load_inputs([tmp_path])
    assert problems == []
    grants = grants_from_manifests(manifests)
    assert len({id(g.rule) for g in grants}) == 1  # the two roles' equal rule is one object
    found = {
        (f.rule, f.subject, f.severity.label, f.message.rsplit("(", 1)[1])
        for f in audit(manifests).findings
    }
    sa = "ServiceAccount x/sa"
    assert ("secrets-read", sa, "high", "ClusterRole shared, cluster)") in found
    assert ("secrets-read", sa, "medium", "ClusterRole shared, namespace apps)") in found
    assert ("secrets-read", sa, "high", "ClusterRole twin, namespace kube-system)") in found
    assert ("configmap-kube-system-write", sa, "high", "ClusterRole shared, cluster)") in found
    assert (
        "configmap-kube-system-write",
        sa,
        "high",
        "ClusterRole twin, namespace kube-system)",
    ) in found
    assert not any(
        rule == "configmap-kube-system-write" and where.endswith("namespace apps)")
        for rule, _s, _sev, where in found
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_directory_walk_order_names_and_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}}}\n"
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b.yaml").write_text(obj.format("b"))
    (tmp_path / "sub" / "c.yml").write_text(obj.format("c"))
    (tmp_path / "sub" / "deeper" / "d.json").write_text('{"apiVersion": "v1", "kind": "X"}')
    (tmp_path / "sub" / "notes.txt").write_text(obj.format("txt"))
    (tmp_path / ".hidden" / "h.yaml").write_text(obj.format("hidden"))
    (tmp_path / "a-link.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "linked-dir").symlink_to(tmp_path / "sub")  # not followed, as os.walk
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere.yaml")
    os.mkfifo(tmp_path / "pipe.yaml")
    expected = ["a-link.yaml", "b.yaml", "sub/c.yml", "sub/deeper/d.json"]
    manifests, problems = load_inputs([tmp_path])
    assert problems == []
    assert [m.source.file for m in manifests] == [str(tmp_path / e) for e in expected]
    assert {m.origin for m in manifests} == {str(tmp_path)}
    monkeypatch.chdir(tmp_path)
    manifests, _ = load_inputs([Path(".")])
    assert [m.source.file for m in manifests] == expected


def test_rule_findings_follow_each_rule_of_grants_made_one_at_a_time() -> None:
    """Grants from a generator: each rule object is dropped after its grant, and a new one may
    reuse its address; its findings must still be its own."""
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
    ] * 50

    def grants() -> Iterator[Grant]:
        for raw in rules:
            rule = policy_rule(raw)
            assert rule is not None
            yield Grant("User u", "ClusterRole r", "cluster", rule, Source("f", 1))

    found = [f.rule for f in grant_findings(grants())]
    assert found == ["secrets-read", "workload-write"] * 50
