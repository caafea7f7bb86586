"""Where the machine looks: importance maps, their providers, and the appliers that spend bits.

``get_importance('saliency').compute(image)`` gives an :class:`ImportanceMap`; the appliers in
:mod:`icm.importance.apply` turn a map into a codec's delta-QP block map or a prefiltered image.
Codecs never import machines; this package is where the two meet, only through the map.
"""

from icm.importance import providers  # noqa: F401  (registers the built-in providers)
from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap
from icm.importance.providers.base import ImportanceProvider
from icm.importance.registry import (
    PROVIDERS,
    UnknownImportanceError,
    get_importance,
    list_importance,
    register_importance,
)

__all__ = [
    "DEFAULT_BLOCK",
    "PROVIDERS",
    "ImportanceMap",
    "ImportanceProvider",
    "UnknownImportanceError",
    "get_importance",
    "list_importance",
    "register_importance",
]
