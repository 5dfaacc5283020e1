"""Dynamic local persistent volumes: a controller, a node agent and storage backends.

The public surface is small: the provisioner's name, the models the decisions are made over, and
the pure policies. Everything that talks to Kubernetes or a disk stays in its own module.
"""

from flotilla.localpv.model import PROVISIONER, Backend, ClassParams
from flotilla.localpv.policies import InvalidInput, parse_class_params, place, render_subpath

__all__ = [
    "PROVISIONER",
    "Backend",
    "ClassParams",
    "InvalidInput",
    "parse_class_params",
    "place",
    "render_subpath",
]
