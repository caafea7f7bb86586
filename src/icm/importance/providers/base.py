"""The provider interface: an RGB image in, an :class:`ImportanceMap` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap
from icm.machines import MACHINES, UnknownMachineError, get_machine, parse_machine


class ImportanceProvider(ABC):
    """One way of deciding where bits matter.

    ``argument`` is what follows ``=`` in the provider's name (``sensitivity=detect:nanodet``:
    which machine; ``prompt=a red car``: which prompt), or None for the provider's default.
    Constructing a provider is cheap; models load on the first ``compute``.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    #: what ``argument`` means, for listings and errors ("" when the provider takes none)
    argument_help: ClassVar[str] = ""
    default_argument: ClassVar[str | None] = None
    install_hint: ClassVar[str] = ""

    def __init__(self, argument: str | None = None) -> None:
        self.argument = argument if argument is not None else self.default_argument

    @property
    def full_name(self) -> str:
        return f"{self.name}={self.argument}" if self.argument else self.name

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        """None when the provider can run here, else a short reason."""
        return None

    @abstractmethod
    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        """The map for one (H, W, 3) uint8 RGB image, deterministic for equal inputs."""

    def fingerprint(self) -> str:
        """What identifies the map this provider makes (its name, plus model weights if any)."""
        return self.full_name


class MachineProvider(ImportanceProvider):
    """A provider whose argument names the machine it asks (``sensitivity=classify``,
    ``detections=detect:nanodet``): the machine loads on first use, and the provider cannot
    run where the machine cannot, or where the machine lacks what :meth:`lacks` checks."""

    def __init__(self, argument: str | None = None) -> None:
        super().__init__(argument)
        self._machine: Any = None

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        try:
            spec = parse_machine(argument or cls.default_argument or "")
        except UnknownMachineError as error:
            return str(error)
        family = MACHINES.get(spec.family)
        if family is None:
            return f"unknown machine family {spec.family!r}"
        return cls.lacks(family, spec) or family.unavailable_reason(spec)

    @classmethod
    def lacks(cls, family: type, spec: Any) -> str | None:
        """Why this machine family cannot serve the provider at all (None: it can)."""
        return None

    def machine(self) -> Any:
        if self._machine is None:
            self._machine = get_machine(self.argument or self.default_argument or "")
        return self._machine
