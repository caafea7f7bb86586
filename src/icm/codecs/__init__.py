"""Codecs: one module per family, each registered by ``@register_codec``.

Importing this package fills the registry. Libraries load lazily inside each codec, so a missing
one makes only that codec unavailable (``icm codecs`` says why and how to install it).
"""

from icm.codecs import jpeg  # noqa: F401  (registers on import)
from icm.codecs.base import Bitstream, Codec, Knob, Option, pad_to_multiple
from icm.codecs.point import CodecPoint, parse_point
from icm.codecs.registry import CODECS, codec_for_suffix, get_codec, list_codecs, register_codec

__all__ = [
    "CODECS",
    "Bitstream",
    "Codec",
    "CodecPoint",
    "Knob",
    "Option",
    "codec_for_suffix",
    "get_codec",
    "list_codecs",
    "pad_to_multiple",
    "parse_point",
    "register_codec",
]
