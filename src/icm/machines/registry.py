"""The machine registry: family name -> class, filled by ``@register_machine``.

Machines are addressed ``family:model[@variant]``; a family's class decides which models it
accepts (``classify:efficientnet-lite0``, ``clip:<arch>@<pretrained>``, ``vlm:<hub id or path>``).
"""

from __future__ import annotations

from typing import Any

from icm.errors import IcmError
from icm.machines.base import Machine, MachineSpec
from icm.registry import Registry
from icm.spec import Spec, parse_spec

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
#: ``+NAME=ARG`` after a machine's name: classes with a ``name`` and ``wrap(machine, arg)``
MACHINE_WRAPPERS: Registry[type] = Registry("machine wrapper", UnknownMachineError,
                                            MachineUnavailableError)
register_machine_wrapper = MACHINE_WRAPPERS.register


def register_machine(*examples: str):
    """Class decorator: make the class reachable by its ``family``; ``examples`` are listed."""

    def decorate(cls: type[Machine]) -> type[Machine]:
        MACHINES.register(cls)
        KNOWN_MODELS[cls.family] = list(examples)
        return cls

    return decorate


def parse_machine(text: str) -> MachineSpec:
    """``family:model[@variant]``; a bare family (``classify``) means its first known model."""
    return _machine_spec(parse_spec(text, "machine", UnknownMachineError, parts=(),
                                    strengths=False), text)


def get_machine(text: str) -> Machine:
    """Instantiate a machine by name; unknown or unusable ones raise a one-line error.

    ``MACHINE+NAME=ARG`` is the machine wrapped by a registered wrapper: ``+adapter=PATH`` reads
    it through a codec-conditional adapter (:mod:`icm.adapt.wrapper`, a plug-in). Only a
    ``+`` before a wrapper's name begins one, so a path may hold ``+`` signs.
    """
    spec = parse_spec(text, "machine", UnknownMachineError, parts=tuple(MACHINE_WRAPPERS),
                      strengths=False)
    base = _machine_spec(Spec(spec.head, (), spec.qualifier), text)
    cls = MACHINES.lookup(base.family, within=text)
    machine = MACHINES.require(cls, f"machine {base}", base)(base)
    for wrapper in spec.parts:
        machine = MACHINE_WRAPPERS[wrapper.name].wrap(machine, wrapper.argument or "")
    return machine


def _machine_spec(spec: Spec, text: str) -> MachineSpec:
    """The head of a machine's name as family, model and variant."""
    name = spec.head.name
    if ":" not in name and spec.head.argument is None and KNOWN_MODELS.get(name):
        known = parse_spec(KNOWN_MODELS[name][0], "machine", UnknownMachineError, parts=())
        name = known.head.name
        spec = Spec(known.head, (), spec.qualifier or known.qualifier)
    family, sep, model = name.partition(":")
    if not sep or not family or not model or spec.head.argument is not None:
        raise UnknownMachineError(
            f"machine {text.strip()!r} is not family:model (e.g. classify:efficientnet-lite0); "
            f"families: {', '.join(MACHINES)}"
        )
    return MachineSpec(family, model, spec.qualifier or None)


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
