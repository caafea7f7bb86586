"""Machine-aware coding: the tools of a codec point, applied to the image before the codec.

A point such as ``hevc-kvazaar+fit=classify+sensitivity~6@qp37`` reads: resample the image to
what the classifier consumes (``fit``), compute a feature-sensitivity importance map on it,
turn the map into delta-QPs of strength 6, and code with kvazaar at QP 37. The tools, in the
order they run whatever order they are written in:

``fit=MACHINE``
    resample to the machine's input profile (:meth:`Machine.fit_size`); the container records
    the original size and decoding restores it.
``<provider>[=ARG][~STRENGTH]``
    an importance map from a provider (``saliency``, ``sensitivity=MACHINE``, ``text``,
    ``clip-attention=MODEL``, ``prompt=TEXT``), applied as a delta-QP map when the codec takes
    one and as a prefilter otherwise (:mod:`icm.importance.apply`); at most one per point.
``tags[=MACHINE][~K]``
    the machine's top-K labels as ids in the container's semantic side channel (default
    ``classify``, K = 3).

Every file stays a standard bitstream: the tools change what is coded, never how.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from icm.codecs import Codec
from icm.container import Resample, Tags
from icm.errors import IcmError
from icm.importance import ImportanceMap, ImportanceProvider, get_importance
from icm.importance.apply import (
    APPLIER_VERSIONS,
    DEFAULT_BLUR_STRENGTH,
    DEFAULT_QP_STRENGTH,
    delta_qp_map,
    prefilter,
)

FIT, TAGS = "fit", "tags"
DEFAULT_TAGGER = "classify"
DEFAULT_TAG_COUNT = 3
RESAMPLE_FILTER = "lanczos"


class RecipeError(IcmError):
    """A point's tools that do not make sense together or cannot run."""


@dataclass(frozen=True)
class Tool:
    """One ``+tool`` of a point: ``name[=argument][~strength]``."""

    name: str
    argument: str | None = None
    strength: float | None = None

    @classmethod
    def parse(cls, text: str) -> Tool:
        body, tilde, number = text.rpartition("~")
        strength = None
        if tilde:
            try:
                strength = float(number)
            except ValueError:
                raise RecipeError(f"tool {text!r}: strength {number!r} is not a number") from None
            if strength < 0:
                raise RecipeError(f"tool {text!r}: strength must be >= 0")
        else:
            body = text
        name, equals, argument = body.partition("=")
        if equals and not argument:
            raise RecipeError(f"tool {text!r} has nothing after '='")
        return cls(name.strip().lower(), argument.strip() if equals else None, strength)

    def __str__(self) -> str:
        text = f"{self.name}={self.argument}" if self.argument else self.name
        return f"{text}~{self.strength:g}" if self.strength is not None else text


@dataclass
class Prepared:
    """What a recipe made of one image: the pixels to code and the side information."""

    image: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)
    resample: Resample | None = None
    tags: Tags | None = None
    importance: ImportanceMap | None = None
    applier: str | None = None
    strength: float | None = None

    def describe(self) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if self.importance is not None:
            record["importance"] = self.importance.describe()
            record["applier"] = {"kind": self.applier, "strength": self.strength}
        return record


class Recipe:
    """The parsed tools of a point, with their providers and machines loaded once."""

    def __init__(self, tools: Sequence[str]) -> None:
        self.tools = tuple(Tool.parse(text) for text in tools)
        names = [tool.name for tool in self.tools]
        for name in (FIT, TAGS):
            if names.count(name) > 1:
                raise RecipeError(f"tool {name!r} is given twice")
        by_name = {tool.name: tool for tool in self.tools}
        self.fit = by_name.get(FIT)
        self.tags = by_name.get(TAGS)
        importance = [tool for tool in self.tools if tool.name not in (FIT, TAGS)]
        if len(importance) > 1:
            listed = ", ".join(str(tool) for tool in importance)
            raise RecipeError(f"one importance map per point, got {listed}")
        self.importance = importance[0] if importance else None
        if self.fit is not None and self.fit.argument is None:
            raise RecipeError("tool 'fit' needs =MACHINE (e.g. fit=classify)")
        self._provider: ImportanceProvider | None = None
        self._machines: dict[str, Any] = {}
        if self.importance is not None:  # unknown providers fail here, before any work
            text = str(Tool(self.importance.name, self.importance.argument))
            self._provider = _provider(text)
        for tool in (self.fit, self.tags):
            if tool is not None:
                self._machine(tool.argument or DEFAULT_TAGGER)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __str__(self) -> str:
        return "+".join(str(tool) for tool in self.tools)

    def _machine(self, name: str) -> Any:
        if name not in self._machines:
            from icm.machines import get_machine

            self._machines[name] = get_machine(name)
        return self._machines[name]

    def fingerprint(self, codec: Codec) -> str:
        """Everything that shapes what the recipe makes for ``codec`` (with its default
        options): tools, models, weights, and the revision of the applier it gets."""
        parts = [str(self)]
        if self._provider is not None:
            parts.append(self._provider.fingerprint())
            version = APPLIER_VERSIONS[self.applier_for(codec, {})]
            if version:
                parts.append(version)
        for tool in (self.fit, self.tags):
            if tool is not None:
                parts.append(self._machine(tool.argument or DEFAULT_TAGGER).fingerprint())
        return "|".join(parts)

    def prepare(self, image: np.ndarray, codec: Codec, options: dict[str, Any]) -> Prepared:
        """Run the tools on ``image`` for ``codec`` (whose resolved ``options`` decide the
        applier); the result's ``options`` carry any delta-QP map."""
        prepared = Prepared(image, dict(options))
        if self.tags is not None:
            prepared.tags = self._tag(image)
        if self.fit is not None:
            prepared.image, prepared.resample = self._fit(image)
        if self.importance is not None and self._provider is not None:
            self._apply_importance(prepared, codec)
        return prepared

    def _tag(self, image: np.ndarray) -> Tags:
        assert self.tags is not None
        machine = self._machine(self.tags.argument or DEFAULT_TAGGER)
        count = int(self.tags.strength) if self.tags.strength is not None else DEFAULT_TAG_COUNT
        tagged = machine.tag(image, count)
        if tagged is None:
            raise RecipeError(f"machine {machine.name} cannot tag images (classify machines can)")
        vocabulary, ids = tagged
        return Tags(vocabulary, tuple(ids))

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, Resample | None]:
        assert self.fit is not None and self.fit.argument is not None
        width, height = self._machine(self.fit.argument).fit_size(image)
        if (height, width) == image.shape[:2]:
            return image, None
        from PIL import Image

        resized = Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)
        return np.asarray(resized), Resample(width, height, RESAMPLE_FILTER)

    @staticmethod
    def applier_for(codec: Codec, options: dict[str, Any]) -> str:
        """``delta-qp`` where the codec takes QP offsets with these options, else
        ``prefilter``."""
        takes = codec.takes_delta_qp(codec.resolve_options(options))
        return "delta-qp" if takes else "prefilter"

    def _apply_importance(self, prepared: Prepared, codec: Codec) -> None:
        assert self.importance is not None and self._provider is not None
        importance = self._provider.compute(prepared.image)
        prepared.importance = importance
        if self.applier_for(codec, prepared.options) == "delta-qp":
            strength = _or(self.importance.strength, DEFAULT_QP_STRENGTH)
            prepared.options["delta_qp"] = delta_qp_map(importance, strength)
            prepared.applier = "delta-qp"
        else:
            strength = _or(self.importance.strength, DEFAULT_BLUR_STRENGTH)
            prepared.image = prefilter(prepared.image, importance, strength)
            prepared.applier = "prefilter"
        prepared.strength = strength


@cache
def recipe_for(tools: tuple[str, ...]) -> Recipe:
    """One :class:`Recipe` per distinct tool list per process, so models load once."""
    return Recipe(tools)


@cache
def _provider(text: str) -> ImportanceProvider:
    return get_importance(text)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def machine_tools(
    machine: str | None,
    importance: str | None = None,
    strength: float | None = None,
    *,
    fit: bool = True,
    tags: int = 0,
) -> tuple[str, ...]:
    """The tools ``icm encode --for MACHINE [--importance P] [--tags K]`` adds to a point.

    ``--for`` alone means: fit to the machine's input and use the machine's own importance
    provider (:meth:`Machine.default_importance`). ``--importance none`` turns maps off.
    """
    from icm.machines import get_machine

    target = get_machine(machine) if machine else None
    tools: list[str] = []
    if target is not None and fit:
        tools.append(f"{FIT}={target.name}")
    if importance is None and target is not None:
        importance = target.default_importance()
    if importance is not None and importance.strip().lower() != "none":
        tools.append(str(Tool(*_split_provider(importance), strength)))
    elif strength is not None:
        raise RecipeError("--strength needs an importance map (--for or --importance)")
    if tags:
        tagger = target.name if target is not None and target.can_tag else DEFAULT_TAGGER
        tools.append(str(Tool(TAGS, tagger, float(tags))))
    return tuple(tools)


def _split_provider(text: str) -> tuple[str, str | None]:
    name, equals, argument = text.strip().partition("=")
    return name.strip().lower(), (argument.strip() if equals else None)
