"""The ``.icm`` container: one codec bitstream behind a compact, CRC-checked header.

The byte layout is documented in :mod:`icm.container.format`.
"""

from icm.container.format import (
    CHROMA_CODES,
    MAGIC,
    VERSION,
    Field,
    Header,
    PostRestore,
    Resample,
    Tags,
    bitstream_from,
    header_for,
    is_icm,
    pack,
    read_icm,
    unpack,
    write_icm,
)

__all__ = [
    "CHROMA_CODES",
    "MAGIC",
    "VERSION",
    "Field",
    "Header",
    "PostRestore",
    "Resample",
    "Tags",
    "bitstream_from",
    "header_for",
    "is_icm",
    "pack",
    "read_icm",
    "unpack",
    "write_icm",
]
