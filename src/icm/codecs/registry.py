"""The codec registry (icm's one :class:`~icm.registry.Registry` mechanism), filled by the
``@register_codec`` decorator.

Adding a codec family is one module with one decorated class, imported in
``icm/codecs/__init__.py``; every registered codec is exercised by the parametrised tests.
"""

from __future__ import annotations

from typing import Any

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


def codec_rows() -> list[dict[str, Any]]:
    """Every registered family as ``icm codecs`` lists it: level knob, raw suffix, library and
    version, and, where it cannot run here, why and how to install what it needs."""
    rows = []
    for name, cls in CODECS.items():
        reason = cls.unavailable_reason()
        rows.append({
            "codec": name,
            "levels": cls.knob.describe(),
            "raw_suffix": cls.raw_suffix,
            "library": cls.library,
            "library_version": cls.library_version() if reason is None else "",
            "available": reason is None,
            "reason": None if reason is None else f"{reason}. {cls.install_hint}".strip(),
            "options": {key: opt.default for key, opt in cls.options.items()},
            "summary": cls.summary,
        })
    return rows
