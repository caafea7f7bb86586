"""The codec registry (icm's one :class:`~icm.registry.Registry` mechanism), filled by the
``@register_codec`` decorator.

Adding a codec family is one module with one decorated class, imported in
``icm/codecs/__init__.py``; every registered codec is exercised by the parametrised tests.
"""

from __future__ import annotations

from icm.codecs.base import Codec
from icm.errors import CodecUnavailableError, UnknownCodecError
from icm.registry import Registry

CODECS: Registry[type[Codec]] = Registry("codec", UnknownCodecError, CodecUnavailableError)
register_codec = CODECS.register


def list_codecs(available_only: bool = False) -> list[str]:
    """Registered codec names in registration order."""
    return CODECS.names((lambda cls: cls.unavailable_reason() is None) if available_only else None)


def get_codec(name: str) -> Codec:
    """An instance of codec ``name``; unknown or unusable codecs raise a one-line error."""
    cls = CODECS.lookup(name)
    return CODECS.require(cls, f"codec {cls.name}")()


def codec_for_suffix(suffix: str) -> str | None:
    """The codec whose raw standard file ends with ``suffix`` (``.265`` -> ``hevc``)."""
    found = CODECS.names(lambda cls: cls.raw_suffix == suffix.lower())
    return found[0] if found else None
