"""The machine registry: family name -> class, filled by ``@register_machine``.

Machines are addressed ``family:model[@variant]``; a family's class decides which models it
accepts (``classify:efficientnet-lite0``, ``clip:<arch>@<pretrained>``, ``vlm:<hub id or path>``).
"""

from __future__ import annotations

from typing import Any

from icm.errors import IcmError
from icm.machines.base import Machine, MachineSpec
from icm.registry import Registry

#: concrete names shown by ``icm machines`` and used by the default bench
KNOWN_MODELS: dict[str, list[str]] = {}
ADAPTER_MARKER = "+adapter="
#: ends the fingerprint of a machine read through a fine-tuned encoder file (``icm adapt train
#: --tune-encoder``): the gap it closes estimates the whole generalization gap, so reports
#: measure the other adapters of its machine against it
REFERENCE_MARK = "|encoder=tuned"


class UnknownMachineError(IcmError):
    """The machine name does not parse or names no registered family."""


class MachineUnavailableError(IcmError):
    """The family is known but its library or weights are missing here."""


MACHINES: Registry[type[Machine]] = Registry("machine family", UnknownMachineError,
                                             MachineUnavailableError, key="family")


def register_machine(*examples: str):
    """Class decorator: make the class reachable by its ``family``; ``examples`` are listed."""

    def decorate(cls: type[Machine]) -> type[Machine]:
        MACHINES.register(cls)
        KNOWN_MODELS[cls.family] = list(examples)
        return cls

    return decorate


def parse_machine(text: str) -> MachineSpec:
    """``family:model[@variant]``; a bare family (``classify``) means its first known model."""
    text = text.strip()
    if ":" not in text and KNOWN_MODELS.get(text.lower()):
        text = KNOWN_MODELS[text.lower()][0]
    family, sep, rest = text.partition(":")
    if not sep or not family or not rest:
        raise UnknownMachineError(
            f"machine {text!r} is not family:model (e.g. classify:efficientnet-lite0); "
            f"families: {', '.join(MACHINES)}"
        )
    model, _, variant = rest.partition("@")
    return MachineSpec(family.lower(), model, variant or None)


def get_machine(text: str) -> Machine:
    """Instantiate a machine by name; unknown or unusable ones raise a one-line error.

    ``MACHINE+adapter=PATH`` is the machine with a codec-conditional adapter (``icm.adapt``).
    """
    base, marker, adapter = text.partition(ADAPTER_MARKER)
    if marker:
        from icm.adapt.machine import AdaptedMachine

        return AdaptedMachine(get_machine(base), adapter.strip())
    spec = parse_machine(text)
    cls = MACHINES.lookup(spec.family, within=text)
    return MACHINES.require(cls, f"machine {spec}", spec)(spec)


def machine_rows() -> list[dict[str, Any]]:
    """Every family's example machines as ``icm machines`` lists them (a family with no
    examples as ``family:<model>``), each with whether it works here and, if not, why and how
    to install what it needs."""
    rows = []
    for family, cls in MACHINES.items():
        for name in KNOWN_MODELS.get(family) or [f"{family}:<model>"]:
            reason = cls.unavailable_reason(parse_machine(name)) if "<" not in name else None
            rows.append({"machine": name, "family": family, "primary": cls.primary,
                         "kinds": sorted(cls.kinds), "summary": cls.summary,
                         "available": reason is None,
                         "reason": None if reason is None else f"{reason}. {cls.install_hint}"})
    return rows
