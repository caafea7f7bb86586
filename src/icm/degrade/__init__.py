"""Synthetic real-camera degradations: deterministic, parameterised by one strength in [0, 1].

``get_degradation('haze').apply(rgb, 0.5, seed=3)`` returns the degraded copy; the family
modules below register themselves on import (one module per family of damage).
"""

from icm.degrade import blur, capture, light, noise, weather  # noqa: F401  (registration)
from icm.degrade.base import (
    BadDegradationError,
    Degradation,
    DegradationRecord,
    check_strength,
)
from icm.degrade.files import degrade_file
from icm.degrade.registry import (
    DEGRADATIONS,
    UnknownDegradationError,
    degrade,
    get_degradation,
    list_degradations,
    register_degradation,
)

__all__ = [
    "DEGRADATIONS",
    "BadDegradationError",
    "Degradation",
    "DegradationRecord",
    "UnknownDegradationError",
    "check_strength",
    "degrade",
    "degrade_file",
    "get_degradation",
    "list_degradations",
    "register_degradation",
]
