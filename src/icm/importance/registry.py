"""Importance providers by name: ``@register_importance`` and ``get_importance('saliency')``."""

from __future__ import annotations

from icm.errors import IcmError
from icm.importance.providers.base import ImportanceProvider
from icm.registry import Registry
from icm.spec import parse_part


class UnknownImportanceError(IcmError):
    """An importance provider name that is not registered, or cannot run here."""


PROVIDERS: Registry[type[ImportanceProvider]] = Registry(
    "importance provider", UnknownImportanceError, UnknownImportanceError)
register_importance = PROVIDERS.register


def parse_provider(text: str) -> tuple[str, str | None]:
    """``'sensitivity=detect:nanodet'`` -> ``('sensitivity', 'detect:nanodet')``."""
    part = parse_part(text.strip(), "importance", UnknownImportanceError, strengths=False)
    return part.name, part.argument


def get_importance(text: str) -> ImportanceProvider:
    """A provider from its name, or a one-line error listing the known ones."""
    name, argument = parse_provider(text)
    cls = PROVIDERS.lookup(name)
    if argument is None and cls.argument_help and cls.default_argument is None:
        raise UnknownImportanceError(f"importance {name!r} needs ={cls.argument_help}")
    used = argument if argument is not None else cls.default_argument
    return PROVIDERS.require(cls, f"importance {text.strip()!r}", used)(argument)


def list_importance() -> list[type[ImportanceProvider]]:
    return [PROVIDERS[name] for name in sorted(PROVIDERS)]
