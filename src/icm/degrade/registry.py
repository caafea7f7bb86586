"""Degradations by name: ``@register_degradation`` and ``get_degradation('haze')``."""

from __future__ import annotations

from typing import Any

import numpy as np

from icm.degrade.base import Degradation, DegradationRecord
from icm.errors import IcmError
from icm.registry import Registry


class UnknownDegradationError(IcmError):
    """A degradation name that is not registered."""


DEGRADATIONS: Registry[type[Degradation]] = Registry("degradation", UnknownDegradationError,
                                                     UnknownDegradationError)
register_degradation = DEGRADATIONS.register


def get_degradation(name: str) -> Degradation:
    """A degradation from its name, or a one-line error listing the known ones."""
    return DEGRADATIONS.lookup(name)()


def list_degradations() -> list[type[Degradation]]:
    return [DEGRADATIONS[name] for name in sorted(DEGRADATIONS)]


def degradation_rows() -> list[dict[str, Any]]:
    """Every degradation as ``icm degrade --list`` shows it: what it does, what a strength
    maps to, and whether it draws random numbers (a seed then matters)."""
    return [{"name": cls.name, "summary": cls.summary, "strength": cls.mapping,
             "random": cls.random} for cls in list_degradations()]


def degrade(rgb: np.ndarray, record: DegradationRecord) -> np.ndarray:
    """Do what ``record`` says to ``rgb``: the way to replay a degradation from side information."""
    return get_degradation(record.name).apply(rgb, record.strength, record.seed)
