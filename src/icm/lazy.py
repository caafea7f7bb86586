"""Packages whose names need torch, exported without importing torch.

``icm.adapt`` and ``icm.restore`` are read on every ``icm`` call (the command line takes its
defaults from their torch-free config modules), yet most of their names live in modules that
import torch, which takes seconds. A package lists those names with their modules and takes
its ``__getattr__`` from :func:`lazy_exports`: ``from icm.restore import restore_image`` then
imports the module (and torch) the first time the name is used, and never before.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``modules[name]`` on first use."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
