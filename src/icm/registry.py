"""One registry mechanism for every kind of plug-in: codecs, machines, degradations,
importance providers, bench executors.

Each kind keeps one :class:`Registry`, filled by its ``register`` decorator when the module
that defines a class is imported. Looking a name up, listing (with a filter), asking why a
class cannot run here and refusing it with its install hint work the same way, with the same
one-line errors, whatever the kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from icm.errors import IcmError
from icm.plugins import load_plugins

T = TypeVar("T", bound=type)


class Registry(Mapping[str, T], Generic[T]):
    """Name -> class for one kind, in registration order (the order listings show).

    ``key`` is the class attribute that names a class (``name``; machines use ``family``).
    ``unknown`` and ``unavailable`` are the error classes raised for a name that is not
    registered and for a class whose library or weights are missing here.
    """

    def __init__(self, kind: str, unknown: type[IcmError], unavailable: type[IcmError],
                 *, key: str = "name") -> None:
        self.kind = kind
        self.unknown = unknown
        self.unavailable = unavailable
        self.key = key
        self._classes: dict[str, T] = {}
        self._plugins_loaded = False

    def _classes_with_plugins(self) -> dict[str, T]:
        """The classes, after this kind's plug-ins (:mod:`icm.plugins`) have registered.

        Loaded at the first read, not at construction: the plug-ins live in packages above
        the registry's and import it themselves."""
        if not self._plugins_loaded:
            self._plugins_loaded = True  # before importing: their imports read the registry
            load_plugins(self.kind)
        return self._classes

    # -- the Mapping protocol: registries read like the dicts they replace --------------------
    def __getitem__(self, name: str) -> T:
        return self._classes_with_plugins()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes_with_plugins())

    def __len__(self) -> int:
        return len(self._classes_with_plugins())

    # -- filling -----------------------------------------------------------------------------
    def register(self, cls: T) -> T:
        """Class decorator: make ``cls`` reachable by its name."""
        name = getattr(cls, self.key)
        if name in self._classes:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._classes[name] = cls
        return cls

    # -- reading -----------------------------------------------------------------------------
    def lookup(self, name: str, within: str | None = None) -> T:
        """The class registered as ``name`` (case and spaces ignored), or a one-line error
        listing the known names (and quoting ``within``, the text ``name`` was parsed from)."""
        cls = self._classes_with_plugins().get(name.strip().lower())
        if cls is None:
            where = f" in {within!r}" if within and within != name else ""
            raise self.unknown(f"unknown {self.kind} {name!r}{where}; known: {', '.join(self)}")
        return cls

    def classes(self, where: Callable[[T], bool] | None = None) -> list[T]:
        """The registered classes, in registration order, that pass ``where``."""
        return [cls for cls in self._classes_with_plugins().values()
                if where is None or where(cls)]

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        """Registered names, in registration order, of the classes that pass ``where``."""
        return [getattr(cls, self.key) for cls in self.classes(where)]

    def require(self, cls: T, label: str, *args: Any) -> T:
        """``cls``, or a one-line error saying why ``label`` (``codec jxl``, ``machine
        clip:ViT-B-32``) cannot run here and how to install what it needs; ``args`` go to the
        class's ``unavailable_reason``."""
        reason = reason_of(cls, *args)
        if reason is None:
            return cls
        hint = getattr(cls, "install_hint", "")
        raise self.unavailable(f"{label} is unavailable: {reason}. {hint}".strip())


def reason_of(cls: type, *args: Any) -> str | None:
    """Why ``cls`` cannot run here (its ``unavailable_reason``), or None when it can."""
    ask = getattr(cls, "unavailable_reason", None)
    return None if ask is None else ask(*args)
