"""Fleet OS updates: an Omaha v3 server for Flatcar's update_engine with rollout policies.

Three rooms over a shared pure core (:mod:`models`, :mod:`policies`):

- :mod:`flotilla.updates.server`: the Omaha endpoint, store, REST API, dashboard, FleetLock
  holders; the only room with a database.
- :mod:`flotilla.updates.node`: the update agent, its A/B slots, the Omaha client and the
  simulator; ships without a database.
- :mod:`flotilla.updates.reboots`: reboot coordination (the Kubernetes coordinator and its node
  agent, the FleetLock protocol's pure part).

The names below load on first use, so ``flotilla updates --help`` does not import them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.updates.models import (
        FLATCAR_APP_ID,
        Channel,
        Group,
        InstanceState,
        InstanceStatus,
        Package,
        Policy,
        RolloutStats,
        Version,
        Window,
    )
    from flotilla.updates.policies import Decision, Reason, bucket, choose_target, may_grant

_HOMES = {
    **dict.fromkeys(
        ("FLATCAR_APP_ID", "Channel", "Group", "InstanceState", "InstanceStatus", "Package",
         "Policy", "RolloutStats", "Version", "Window"),
        "flotilla.updates.models",
    ),
    **dict.fromkeys(
        ("Decision", "Reason", "bucket", "choose_target", "may_grant"), "flotilla.updates.policies"
    ),
}

__all__ = [
    "FLATCAR_APP_ID",
    "Channel",
    "Decision",
    "Group",
    "InstanceState",
    "InstanceStatus",
    "Package",
    "Policy",
    "Reason",
    "RolloutStats",
    "Version",
    "Window",
    "bucket",
    "choose_target",
    "may_grant",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
