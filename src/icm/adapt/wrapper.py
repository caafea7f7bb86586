"""``MACHINE+adapter=FILE``: the machine read through a codec-conditional adapter.

A plug-in of the machine registry (:mod:`icm.plugins`): the machines package sits below the
adapters, which wrap its machines, so it finds this wrapper by name instead of importing it.
"""

from __future__ import annotations

from icm.adapt.machine import AdaptedMachine
from icm.machines.base import Machine
from icm.machines.registry import register_machine_wrapper


@register_machine_wrapper
class AdapterWrapper:
    """Reads ``+adapter=FILE`` after a machine's name."""

    name = "adapter"

    @staticmethod
    def wrap(machine: Machine, argument: str) -> Machine:
        return AdaptedMachine(machine, argument)
