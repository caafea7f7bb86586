"""Importance providers by name: ``@register_importance`` and ``get_importance('saliency')``."""

from __future__ import annotations

from icm.errors import IcmError
from icm.importance.providers.base import ImportanceProvider

PROVIDERS: dict[str, type[ImportanceProvider]] = {}


class UnknownImportanceError(IcmError):
    """An importance provider name that is not registered, or cannot run here."""


def register_importance(cls: type[ImportanceProvider]) -> type[ImportanceProvider]:
    """Class decorator: make a provider reachable by its ``name``."""
    if cls.name in PROVIDERS:
        raise ValueError(f"importance provider {cls.name!r} is registered twice")
    PROVIDERS[cls.name] = cls
    return cls


def parse_provider(text: str) -> tuple[str, str | None]:
    """``'sensitivity=detect:nanodet'`` -> ``('sensitivity', 'detect:nanodet')``."""
    name, equals, argument = text.strip().partition("=")
    name = name.strip().lower()
    if equals and not argument.strip():
        raise UnknownImportanceError(f"importance {text!r} has an empty argument after '='")
    return name, (argument.strip() if equals else None)


def get_importance(text: str) -> ImportanceProvider:
    """A provider from its name, or a one-line error listing the known ones."""
    name, argument = parse_provider(text)
    cls = PROVIDERS.get(name)
    if cls is None:
        known = ", ".join(sorted(PROVIDERS))
        raise UnknownImportanceError(f"unknown importance provider {name!r} (known: {known})")
    if argument is None and cls.argument_help and cls.default_argument is None:
        raise UnknownImportanceError(f"importance {name!r} needs ={cls.argument_help}")
    reason = cls.unavailable_reason(argument if argument is not None else cls.default_argument)
    if reason:
        hint = f"; {cls.install_hint}" if cls.install_hint else ""
        raise UnknownImportanceError(f"importance {name!r} cannot run here: {reason}{hint}")
    return cls(argument)


def list_importance() -> list[type[ImportanceProvider]]:
    return [PROVIDERS[name] for name in sorted(PROVIDERS)]
