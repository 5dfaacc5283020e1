"""``flotilla updates``: one Typer app, and the one table of its commands from every room.

The command modules import only Typer, rich and the standard library at module level; each
command loads SQLAlchemy, FastAPI, httpx or the Kubernetes client when it runs, so
``flotilla updates --help`` does not pay for them.
"""

from __future__ import annotations

from flotilla.core.cli import system_app
from flotilla.updates.node import commands as node
from flotilla.updates.reboots import commands as reboots
from flotilla.updates.server import commands as server

app = system_app("Omaha update server for Flatcar fleets, with rollout policies.")

app.command("serve")(server.serve)
app.command("apply")(server.apply)
app.command("instances")(server.instances)
app.command("activity")(server.activity)
app.command("agent")(node.agent)
app.command("reboot-coordinator")(reboots.reboot_coordinator)
app.command("simulate")(node.simulate)
app.add_typer(server.fleetlock_app, name="fleetlock")
