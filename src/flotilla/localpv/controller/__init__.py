"""The cluster-wide half of localpv: claims become LocalVolume records, Ready records become PVs.

One module per resource kind (``claims``, ``volumes``, ``pvs``, ``capacity``), each with pure
``decide_…`` functions and a small executor; ``loop`` owns informers, queue and workers; ``leader``
elects one active instance.
"""

from flotilla.localpv.controller.context import ControllerSettings
from flotilla.localpv.controller.loop import Controller

__all__ = ["Controller", "ControllerSettings"]
