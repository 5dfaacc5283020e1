"""Fleet OS updates: an Omaha v3 server for Flatcar's update_engine with rollout policies.

The pure core is :mod:`models`, :mod:`policies`, :mod:`lifecycle`, :mod:`omaha` and
:mod:`fleetspec`; :mod:`store`, :mod:`catalog` and :mod:`api` are the SQL and HTTP adapters.
"""

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
