"""OperatorGroup install modes, planned without a cluster: what OLM would accept or refuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flotilla.operators.documents import Bundle
from flotilla.operators.models import Manifest, Source
from flotilla.operators.plan import InstallModeError, install_mode_for, materialize


def csv(**modes: bool) -> Manifest:
    body: dict[str, Any] = {
        "apiVersion": "operators.coreos.com/v1alpha1",
        "kind": "ClusterServiceVersion",
        "metadata": {"name": "op.v1.0.0"},
        "spec": {
            "installModes": [{"type": t, "supported": s} for t, s in modes.items()],
            "install": {
                "spec": {
                    "permissions": [
                        {
                            "serviceAccountName": "op",
                            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}],
                        }
                    ],
                    "deployments": [
                        {
                            "name": "op",
                            "spec": {
                                "template": {
                                    "metadata": {"annotations": {"keep": "me"}},
                                    "spec": {"serviceAccountName": "op"},
                                }
                            },
                        }
                    ],
                }
            },
        },
    }
    return Manifest(body=body, source=Source("csv.yaml", 1))


ALL = {"OwnNamespace": True, "SingleNamespace": True, "MultiNamespace": True, "AllNamespaces": True}


@pytest.mark.parametrize(
    ("targets", "all_ns", "expected"),
    [
        ([], False, ("OwnNamespace", ["ops"])),
        (["ops"], False, ("OwnNamespace", ["ops"])),
        (["team-a"], False, ("SingleNamespace", ["team-a"])),
        (["team-a", "team-b", "team-a"], False, ("MultiNamespace", ["team-a", "team-b"])),
        ([], True, ("AllNamespaces", [])),
    ],
)
def test_targets_decide_the_mode_as_an_operator_group_does(
    targets: list[str], all_ns: bool, expected: tuple[str, list[str]]
) -> None:
    assert install_mode_for(csv(**ALL), "ops", targets, all_ns) == expected


@pytest.mark.parametrize(
    ("modes", "targets", "all_ns", "message"),
    [
        (
            {"OwnNamespace": True, "AllNamespaces": False},
            [],
            True,
            "does not support the AllNamespaces install mode (watching all namespaces); "
            "it supports: OwnNamespace",
        ),
        (
            {"OwnNamespace": False, "SingleNamespace": True},
            ["ops"],
            False,
            "does not support the OwnNamespace install mode (watching ops); "
            "it supports: SingleNamespace",
        ),
        (
            {"OwnNamespace": True, "SingleNamespace": True, "MultiNamespace": False},
            ["a", "b"],
            False,
            "does not support the MultiNamespace install mode (watching a, b)",
        ),
        (
            {"SingleNamespace": True},
            [],
            False,
            "supports neither OwnNamespace nor AllNamespaces (only SingleNamespace): name the "
            "namespaces it should watch with --target-namespace",
        ),
        ({}, ["a"], False, "it supports: none"),
        ({}, [], False, "op.v1.0.0 marks no install mode supported (spec.installModes)"),
        (ALL, ["a"], True, "either all namespaces or target namespaces"),
    ],
)
def test_unsupported_mode_is_refused(
    modes: dict[str, bool], targets: list[str], all_ns: bool, message: str
) -> None:
    with pytest.raises(InstallModeError) as err:
        install_mode_for(csv(**modes), "ops", targets, all_ns)
    assert message in str(err.value)


def test_default_falls_back_to_all_namespaces_only_when_own_is_unsupported() -> None:
    only_all = csv(OwnNamespace=False, SingleNamespace=True, AllNamespaces=True)
    assert install_mode_for(only_all, "ops", [], False) == ("AllNamespaces", [])


def _objects(mode: str, targets: list[str]) -> list[dict[str, Any]]:
    bundle = Bundle(path=Path("b"), manifests=[csv(**ALL)], annotations={})
    return materialize(
        bundle, package="op", namespace="ops", install_mode=mode, target_namespaces=targets
    )


def test_permissions_are_copied_into_each_target_namespace() -> None:
    objects = _objects("MultiNamespace", ["team-a", "team-b"])
    roles = sorted((o["kind"], o["metadata"]["namespace"]) for o in objects if "Role" in o["kind"])
    assert roles == [
        ("Role", "ops"),
        ("Role", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "ops"),
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "op", "namespace": "ops"}]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes == {
        "keep": "me",
        "olm.targetNamespaces": "team-a,team-b",
        "olm.operatorNamespace": "ops",
    }


def test_all_namespaces_makes_cluster_roles_and_an_empty_target_list() -> None:
    objects = _objects("AllNamespaces", [])
    kinds = sorted(o["kind"] for o in objects if "Role" in o["kind"])
    assert kinds == ["ClusterRole", "ClusterRoleBinding"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["olm.targetNamespaces"] == ""
