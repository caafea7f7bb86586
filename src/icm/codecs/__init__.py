"""Codecs: one module per family, each registered by ``@register_codec``.

Importing this package fills the registry with the standard codecs; icm's learned codecs
(``icm-lic``, CompressAI's zoo) live in :mod:`icm.learned` beside their training and join the
registry as plug-ins (:mod:`icm.plugins`) the first time it is read. Libraries load lazily
inside each codec, so a missing one makes only that codec unavailable (``icm codecs`` says
why and how to install it).
"""

# Importing a family module registers it. The order here is the listing order, and the first
# codec registered for a raw suffix owns it (.jpg -> jpeg, not jpegli), so sorting is off.
# isort: off
from icm.codecs import jpeg  # noqa: F401
from icm.codecs import jpegli  # noqa: F401
from icm.codecs import webp  # noqa: F401
from icm.codecs import jpeg2000  # noqa: F401
from icm.codecs import avif  # noqa: F401
from icm.codecs import jxl  # noqa: F401
from icm.codecs import heic  # noqa: F401
from icm.codecs import hevc  # noqa: F401
from icm.codecs import avc  # noqa: F401
from icm.codecs import av1  # noqa: F401
from icm.codecs import vvc  # noqa: F401
# isort: on
from icm.codecs.base import Bitstream, Codec, Knob, Option, pad_to_multiple
from icm.codecs.registry import (
    CODECS,
    codec_for_suffix,
    codec_rows,
    get_codec,
    list_codecs,
    register_codec,
)

__all__ = [
    "CODECS",
    "Bitstream",
    "Codec",
    "Knob",
    "Option",
    "codec_for_suffix",
    "codec_rows",
    "get_codec",
    "list_codecs",
    "pad_to_multiple",
    "register_codec",
]
