"""Degradations by name: ``@register_degradation`` and ``get_degradation('haze')``."""

from __future__ import annotations

import numpy as np

from icm.degrade.base import Degradation, DegradationRecord
from icm.errors import IcmError

DEGRADATIONS: dict[str, type[Degradation]] = {}


class UnknownDegradationError(IcmError):
    """A degradation name that is not registered."""


def register_degradation(cls: type[Degradation]) -> type[Degradation]:
    """Class decorator: make a degradation reachable by its ``name``."""
    if cls.name in DEGRADATIONS:
        raise ValueError(f"degradation {cls.name!r} is registered twice")
    DEGRADATIONS[cls.name] = cls
    return cls


def get_degradation(name: str) -> Degradation:
    """A degradation from its name, or a one-line error listing the known ones."""
    cls = DEGRADATIONS.get(name.strip().lower())
    if cls is None:
        known = ", ".join(sorted(DEGRADATIONS))
        raise UnknownDegradationError(f"unknown degradation {name!r} (known: {known})")
    return cls()


def list_degradations() -> list[type[Degradation]]:
    return [DEGRADATIONS[name] for name in sorted(DEGRADATIONS)]


def degrade(rgb: np.ndarray, record: DegradationRecord) -> np.ndarray:
    """Do what ``record`` says to ``rgb``: the way to replay a degradation from side information."""
    return get_degradation(record.name).apply(rgb, record.strength, record.seed)
