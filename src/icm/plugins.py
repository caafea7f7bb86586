"""Plug-ins: the modules that add to a registry from outside its package, in one list.

A registry's own package registers its built-in classes when it is imported (``icm.codecs``
imports each codec family). Classes that live higher up, beside the training and models they
need (icm's learned codecs in ``icm.learned``), cannot be imported by the package below them
without an import cycle; they are named here instead, and a registry imports its plug-ins the
first time it is read. Other packages can add theirs through the ``icm.plugins`` entry-point
group, one entry per module: ``[project.entry-points."icm.plugins"] codec = "mypkg.codec"``
(the entry's name is the registry kind it adds to).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

#: registry kind -> the modules that register into it, imported in this order
PLUGINS: dict[str, tuple[str, ...]] = {
    "codec": ("icm.learned.codec", "icm.learned.compressai_zoo"),
    "machine wrapper": ("icm.adapt.wrapper",),
}
ENTRY_POINT_GROUP = "icm.plugins"


def load_plugins(kind: str) -> None:
    """Import every plug-in module of ``kind``: icm's own, then installed packages'."""
    for module in PLUGINS.get(kind, ()):
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == kind:
            importlib.import_module(entry.value)
