"""CSIStorageCapacity publishing: what each (class, node) can still take, and writing only changes.

``desired_capacities`` is pure (classes, nodes, agent reports, allocations in; objects out);
``sync_capacities`` creates, patches or deletes so the cluster matches, skipping equal objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from lightkube import Client
from lightkube.resources.storage_v1 import CSIStorageCapacity
from lightkube.types import PatchType

from flotilla.core.kube import KubeNotFoundError, kube_errors, to_dict
from flotilla.localpv import manifests
from flotilla.localpv.model import PROVISIONER, Allocation
from flotilla.localpv.policies import (
    InvalidInput,
    node_capacity,
    parse_class_params,
    parse_quantity,
)
from flotilla.localpv.resources import Obj, create_object, node_report

MANAGED_BY = {"app.kubernetes.io/managed-by": "flotilla-localpv"}


def desired_capacities(
    classes: list[Obj],
    nodes: list[Obj],
    agents: dict[str, Obj],
    allocations: list[Allocation],
    *,
    namespace: str,
    agent_timeout: float,
) -> dict[str, Obj]:
    """One object per (our class, node with the class's topology label); 0 while no agent."""
    desired: dict[str, Obj] = {}
    for sc in classes:
        if sc.get("provisioner") != PROVISIONER:
            continue
        try:
            params = parse_class_params(dict(sc.get("parameters") or {}))
        except InvalidInput:
            continue
        for node in nodes:
            name = node["metadata"]["name"]
            report = node_report(name, node, agents.get(name), agent_timeout)
            value = report.labels.get(params.node_affinity_key)
            if value is None:
                continue
            total, largest = (
                node_capacity(report.pools, allocations, params.backend)
                if report.agent_alive
                else (0, 0)
            )
            obj = manifests.storage_capacity(
                namespace,
                sc["metadata"]["name"],
                name,
                params.node_affinity_key,
                value,
                total,
                largest,
            )
            obj["metadata"]["labels"].update(MANAGED_BY)
            desired[obj["metadata"]["name"]] = obj
    return desired


def same_quantities(have: Obj, want: Obj) -> bool:
    try:
        return all(
            parse_quantity(str(have.get(k))) == parse_quantity(str(want[k]))
            for k in ("capacity", "maximumVolumeSize")
        )
    except InvalidInput:
        return False


def sync_capacities(
    client: Client,
    namespace: str,
    desired: dict[str, Obj],
    existing: dict[str, Obj],
    remember: Callable[[Obj], Any],
) -> None:
    """Make the cluster match ``desired``; ``remember`` records what we wrote (cache)."""
    for name, obj in desired.items():
        have = existing.get(name)
        if have is not None and same_quantities(have, obj):
            continue
        if have is None:
            made = create_object(client, CSIStorageCapacity, obj)
        else:
            with kube_errors(f"update CSIStorageCapacity {name}"):
                made = to_dict(
                    client.patch(
                        CSIStorageCapacity,
                        name,
                        {
                            "capacity": obj["capacity"],
                            "maximumVolumeSize": obj["maximumVolumeSize"],
                        },
                        namespace=namespace,
                        patch_type=PatchType.MERGE,
                    )
                )
        remember(made)
    for name in set(existing) - set(desired):
        with (
            contextlib.suppress(KubeNotFoundError),
            kube_errors(f"delete CSIStorageCapacity {name}"),
        ):
            client.delete(CSIStorageCapacity, name, namespace=namespace)
