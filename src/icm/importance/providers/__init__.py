"""Importance providers, one module per family; importing this registers them all."""

from icm.importance.providers import (  # noqa: F401  (each module registers its providers)
    clip,
    detections,
    fisher,
    saliency,
    sensitivity,
    text,
)
