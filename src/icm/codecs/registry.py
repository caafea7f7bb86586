"""The codec registry: a name -> class dict filled by the ``@register_codec`` decorator.

Adding a codec family is one module with one decorated class, imported in
``icm/codecs/__init__.py``; every registered codec is exercised by the parametrised tests.
"""

from __future__ import annotations

from icm.codecs.base import Codec
from icm.errors import CodecUnavailableError, UnknownCodecError

CODECS: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make ``cls`` reachable as ``cls.name``."""
    if cls.name in CODECS:
        raise ValueError(f"codec {cls.name!r} is registered twice")
    CODECS[cls.name] = cls
    return cls


def list_codecs(available_only: bool = False) -> list[str]:
    """Registered codec names in registration order."""
    return [n for n, c in CODECS.items() if not available_only or c.unavailable_reason() is None]


def get_codec(name: str) -> Codec:
    """An instance of codec ``name``; unknown or unusable codecs raise a one-line error."""
    cls = CODECS.get(name.strip().lower())
    if cls is None:
        raise UnknownCodecError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    reason = cls.unavailable_reason()
    if reason is not None:
        problem = f"codec {cls.name} is unavailable: {reason}. {cls.install_hint}"
        raise CodecUnavailableError(problem.strip())
    return cls()


def codec_for_suffix(suffix: str) -> str | None:
    """The codec whose raw standard file ends with ``suffix`` (``.265`` -> ``hevc``)."""
    suffix = suffix.lower()
    for name, cls in CODECS.items():
        if cls.raw_suffix == suffix:
            return name
    return None
