"""Synthetic real-camera degradations: deterministic, parameterised by one strength in [0, 1].

``get_degradation('haze').apply(rgb, 0.5, seed=3)`` returns the degraded copy; the family
modules below register themselves on import (one module per family of damage).
``recognise_image(rgb)`` goes the other way: it guesses the damage from the pixels alone.
Importing the package also lets ``icm.image`` datasets hold degraded images
(:mod:`icm.degrade.datasets`).
"""

# registration: the families, and (datasets) the degrader that icm.image datasets use
from icm.degrade import blur, capture, datasets, light, noise, weather  # noqa: F401
from icm.degrade.base import (
    BadDegradationError,
    Degradation,
    DegradationRecord,
    check_strength,
)
from icm.degrade.files import degrade_file
from icm.degrade.recognise import (
    Recogniser,
    Recognition,
    get_recogniser,
    image_features,
    recognise_image,
    train_recogniser,
)
from icm.degrade.registry import (
    DEGRADATIONS,
    UnknownDegradationError,
    degradation_rows,
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
    "Recogniser",
    "Recognition",
    "UnknownDegradationError",
    "check_strength",
    "degradation_rows",
    "degrade",
    "degrade_file",
    "get_degradation",
    "get_recogniser",
    "image_features",
    "list_degradations",
    "recognise_image",
    "register_degradation",
    "train_recogniser",
]
