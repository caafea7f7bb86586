"""Machine-aware coding: the tools of a codec point, applied to the image before the codec.

A point such as ``hevc-kvazaar+fit=classify+sensitivity~6@qp37`` reads: resample the image to
what the classifier consumes (``fit``), compute a feature-sensitivity importance map on it,
turn the map into delta-QPs of strength 6, and code with kvazaar at QP 37. The tools, in the
order they run whatever order they are written in:

``fit=MACHINE``
    resample to the machine's input profile (:meth:`Machine.fit_size`); the container records
    the original size and decoding restores it.
``preedit[=MODEL]``
    the learned pre-editor (:mod:`icm.preedit`): a compact network, trained through a proxy
    of the codec on rate plus the machine's distortion, changes the (fitted) pixels before
    the codec sees them, told the codec's family and the level's quantiser step; the shipped
    editor is trained for EfficientNet-Lite0. Before ``for``, it runs on the image fitted
    to ``for``'s machine.
``<provider>[=ARG][~STRENGTH]``
    an importance map from a provider (``saliency``, ``sensitivity=MACHINE``, ``text``,
    ``clip-attention=MODEL``, ``prompt=TEXT``), applied as a delta-QP map when the codec takes
    one and as a prefilter otherwise (:mod:`icm.importance.apply`); at most one per point.
``for=MACHINE[~STRENGTH]``
    icm's recipe for that machine (:mod:`icm.importance.allocation`): fit to its input, then
    spend each block's bits by the rate-distortion-optimal rule on the machine's own weights
    (the Fisher diagonal of a differentiable machine, :mod:`icm.importance.fisher`; the
    machine's own map for the others), and keep a smaller coded size where the machine reads
    it better at the same bits. Codecs that take per-block offsets get them; the others get a
    prefilter. ``STRENGTH`` multiplies the derived offsets (0.5 by default, 0 for OCR).
    Replaces ``fit`` and importance maps in the same point.
``tags[=MACHINE][~K]``
    the machine's top-K labels as ids in the container's semantic side channel (default
    ``classify``, K = 3).
``restore=edge|server|joint``
    where a degraded photo is restored (:mod:`icm.restore`; LL-ICM's placements). The encoder's
    recogniser names the damage on the uncoded image in every case. ``edge`` restores before
    coding (first of all the tools: at the camera); ``server`` writes a RESTORE field so the
    decoder runs the general restorer after decoding; ``joint`` does the same with the restorer
    trained on this codec's decoded images (``restore-<codec>``), which removes the damage
    and the coding artefacts together.

Every file stays a standard bitstream: the tools change what is coded, never how.

:func:`parse_points` lives here rather than beside :func:`~icm.pipeline.point.parse_point`
because checking a grid's tools before any work means building their recipe, and this module
already builds on the point grammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np

from icm.codecs import Bitstream, Codec, get_codec
from icm.container import PostRestore, Resample, Tags
from icm.degrade.recognise import CLEAN, recognise_image, recogniser_fingerprint
from icm.errors import IcmError
from icm.image.datasets import content_hash
from icm.image.resample import resize
from icm.importance import ImportanceMap, ImportanceProvider, get_importance
from icm.importance.allocation import MachineAllocator
from icm.importance.apply import (
    APPLIER_VERSIONS,
    DEFAULT_BLUR_STRENGTH,
    DEFAULT_QP_STRENGTH,
    delta_qp_map,
    prefilter,
)
from icm.machines import get_machine
from icm.pipeline.point import CodecPoint, RecipeError, Tool, parse_point
from icm.preedit.config import family_of

FIT, FOR, TAGS, RESTORE, PREEDIT = "fit", "for", "tags", "restore", "preedit"
#: tools that are not importance maps (one importance map at most per point)
STEPS = (FIT, FOR, TAGS, RESTORE, PREEDIT)
PLACEMENTS = ("edge", "server", "joint")
DEFAULT_TAGGER = "classify"
DEFAULT_TAG_COUNT = 3
RESAMPLE_FILTER = "lanczos"


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
    restore: PostRestore | None = None  # restoration the decoder runs (server, joint)
    restored: dict[str, Any] | None = None  # what the restore tool saw and did
    allocation: dict[str, Any] | None = None  # what the for tool measured and decided
    preedit: dict[str, Any] | None = None  # which editor changed the pixels, and how much
    bitstream: Bitstream | None = None  # an encode a tool already made and chose (for)

    def describe(self) -> dict[str, Any]:
        record: dict[str, Any] = {}
        if self.restored is not None:
            record["restoration"] = self.restored
        if self.importance is not None:
            record["importance"] = self.importance.describe()
            record["applier"] = {"kind": self.applier, "strength": self.strength}
        if self.allocation is not None:
            record["allocation"] = self.allocation
        if self.preedit is not None:
            record["preedit"] = self.preedit
        return record


class Recipe:
    """The parsed tools of a point, with their providers and machines loaded once. Tools
    given as text (``"fit=classify"``) are read with :meth:`Tool.parse`."""

    def __init__(self, tools: Sequence[Tool | str]) -> None:
        self.tools = tuple(tool if isinstance(tool, Tool) else Tool.parse(tool)
                           for tool in tools)
        names = [tool.name for tool in self.tools]
        for name in STEPS:
            if names.count(name) > 1:
                raise RecipeError(f"tool {name!r} is given twice")
        by_name = {tool.name: tool for tool in self.tools}
        self.fit = by_name.get(FIT)
        self.tags = by_name.get(TAGS)
        self.restore = by_name.get(RESTORE)
        self.target = by_name.get(FOR)
        self.preedit = by_name.get(PREEDIT)
        if self.restore is not None and self.restore.argument not in PLACEMENTS:
            raise RecipeError(f"tool 'restore' needs where: restore={'|'.join(PLACEMENTS)}")
        # the last image's (pixel hash, recognition) and (pixel hash, edge restoration)
        self._seen: tuple[str, Any] | None = None
        self._edge: tuple[str, np.ndarray] | None = None
        importance = [tool for tool in self.tools if tool.name not in STEPS]
        if len(importance) > 1:
            listed = ", ".join(str(tool) for tool in importance)
            raise RecipeError(f"one importance map per point, got {listed}")
        self.importance = importance[0] if importance else None
        if self.fit is not None and self.fit.argument is None:
            raise RecipeError("tool 'fit' needs =MACHINE (e.g. fit=classify)")
        self._allocator: Any = None
        if self.target is not None:
            if self.target.argument is None:
                raise RecipeError("tool 'for' needs =MACHINE (e.g. for=classify)")
            if self.fit is not None or self.importance is not None:
                raise RecipeError(f"tool 'for' fits and allocates by itself; drop "
                                  f"{self.fit or self.importance} from the point")
            self._allocator = _allocator(self.target.argument, self.target.strength)
        self._provider: ImportanceProvider | None = None
        self._machines: dict[str, Any] = {}
        if self.importance is not None:  # unknown providers fail here, before any work
            text = str(Tool(self.importance.name, self.importance.argument))
            self._provider = _provider(text)
        for tool in (self.fit, self.tags):
            if tool is not None:
                self._machine(tool.argument or DEFAULT_TAGGER)
        if self.preedit is not None:  # a missing or bad model file fails here
            if self.preedit.strength is not None:
                raise RecipeError("tool 'preedit' takes a model (preedit=PATH), not a ~strength")
            _preedit_api().get_editor(self.preedit.argument)

    def __bool__(self) -> bool:
        return bool(self.tools)

    def __str__(self) -> str:
        return "+".join(str(tool) for tool in self.tools)

    def _machine(self, name: str) -> Any:
        if name not in self._machines:
            self._machines[name] = get_machine(name)
        return self._machines[name]

    def record(self) -> str | None:
        """The tools the container's RECIPE field names: those no other field shows (``fit``
        is RESAMPLE, ``tags`` TAGS, ``restore`` RESTORE), so no byte is spent twice."""
        shown = (FIT, TAGS, RESTORE)
        return "+".join(str(tool) for tool in self.tools if tool.name not in shown) or None

    def check(self, codec: Codec) -> None:
        """Refuse, before any work, tools that cannot serve ``codec`` (the pre-editor knows
        JPEG and the QP-scaled video codecs only)."""
        if self.preedit is not None:
            family_of(codec)

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
        if self._allocator is not None:
            parts.append(self._allocator.fingerprint())
        if self.restore is not None:
            parts.append(_restore_fingerprint(self._restore_model(codec)))
        if self.preedit is not None:
            parts.append(f"preedit:{_preedit_api().fingerprint(self.preedit.argument)}")
        return "|".join(parts)

    def prepare(
        self, image: np.ndarray, codec: Codec, options: dict[str, Any], level: str | None = None
    ) -> Prepared:
        """Run the tools on ``image`` for ``codec`` (whose resolved ``options`` decide the
        applier) at ``level`` (None: a bpp target; the ``for`` tool then plans at the middle
        of the codec's ladder); the result's ``options`` carry any delta-QP map."""
        prepared = Prepared(image, dict(options))
        if self.restore is not None:  # at the camera, before anything reads the image
            self._restore(prepared, codec)
        if self.tags is not None:
            prepared.tags = self._tag(prepared.image)
        source_shape = prepared.image.shape[:2]
        if self.fit is not None:
            prepared.image, prepared.resample = self._fit(prepared.image, self.fit.argument)
        if self.preedit is not None:
            if self._allocator is not None:  # the editor works at the machine's input size
                prepared.image, prepared.resample = self._fit(prepared.image,
                                                              self.target.argument)
            self._preedit(prepared, codec, level)
        if self.importance is not None and self._provider is not None:
            self._apply_importance(prepared, codec)
        if self._allocator is not None:
            self._allocate(prepared, codec, level, source_shape)
        return prepared

    def _preedit(self, prepared: Prepared, codec: Codec, level: str | None) -> None:
        """``preedit[=MODEL]``: the editor's pixels replace the image the codec will code."""
        assert self.preedit is not None
        api = _preedit_api()
        before = prepared.image
        prepared.image = api.edit_image(before, codec, level, self.preedit.argument)
        change = np.abs(prepared.image.astype(np.int16) - before.astype(np.int16))
        prepared.preedit = {"model": api.fingerprint(self.preedit.argument),
                            "mean_abs_change": round(float(change.mean()), 3)}

    def _allocate(self, prepared: Prepared, codec: Codec, level: str | None,
                  source_shape: tuple[int, ...]) -> None:
        """``for=MACHINE``: fit (or smaller), then the RD offsets (or their prefilter);
        ``source_shape`` is the image's size before any tool resampled it."""
        allocator = self._allocator
        plan = allocator.allocate(prepared.image, codec, level, prepared.options)
        prepared.image = plan.image
        height, width = plan.image.shape[:2]
        if (height, width) != source_shape:
            prepared.resample = Resample(width, height, RESAMPLE_FILTER)
        prepared.options = plan.coding_options(prepared.options)
        prepared.bitstream = plan.bitstream
        prepared.importance = plan.importance(allocator.block, str(self.target))
        prepared.applier, prepared.strength = plan.route, allocator.strength
        prepared.allocation = plan.record

    def _tag(self, image: np.ndarray) -> Tags:
        assert self.tags is not None
        machine = self._machine(self.tags.argument or DEFAULT_TAGGER)
        count = int(self.tags.strength) if self.tags.strength is not None else DEFAULT_TAG_COUNT
        tagged = machine.tag(image, count)
        if tagged is None:
            raise RecipeError(f"machine {machine.name} cannot tag images (classify machines can)")
        vocabulary, ids = tagged
        return Tags(vocabulary, tuple(ids))

    def _fit(self, image: np.ndarray, machine: str | None) -> tuple[np.ndarray, Resample | None]:
        assert machine is not None
        width, height = self._machine(machine).fit_size(image)
        if (height, width) == image.shape[:2]:
            return image, None
        return resize(image, width, height), Resample(width, height, RESAMPLE_FILTER)

    def _restore_model(self, codec: Codec) -> str:
        """The shipped restorer a placement runs; a joint one must exist for ``codec``."""
        api = _restore_api()
        assert self.restore is not None
        if self.restore.argument != "joint":
            return api.GENERAL
        name = api.joint_model_name(codec.name)
        if not api.shipped_model_path(name).is_file():
            raise RecipeError(f"no joint restorer for {codec.name} ships with icm; train one "
                              f"with icm restore train --codec {codec.name} --init shipped")
        return name

    def _restore(self, prepared: Prepared, codec: Codec) -> None:
        """Recognise the damage on the uncoded image, then restore it now (edge) or have the
        decoder do it (server, joint) through the container's RESTORE field."""
        restore_decoded = _restore_api().restore_decoded
        assert self.restore is not None
        key, seen = self._recognise(prepared.image)
        strength = round(float(seen.strength), 2) if seen.name != CLEAN else None
        model = self._restore_model(codec)
        placement = self.restore.argument
        prepared.restored = {"placement": placement, "model": model, "seen": seen.name,
                             "strength": strength}
        if placement == "edge":
            if self._edge is None or self._edge[0] != key:
                self._edge = (key, restore_decoded(prepared.image, model, seen.name, strength))
            prepared.image = self._edge[1]
        elif seen.name != CLEAN or placement == "joint":  # a general restorer leaves clean be
            prepared.restore = PostRestore(model, seen.name, strength)

    def _recognise(self, image: np.ndarray) -> tuple[str, Any]:
        """(pixel hash, the recogniser's reading) of ``image``, kept for the next call: every
        level of a point sees the same uncoded image."""
        key = content_hash(image)
        if self._seen is None or self._seen[0] != key:
            self._seen = (key, recognise_image(image))
        return self._seen

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
def recipe_for(tools: tuple[Tool, ...]) -> Recipe:
    """One :class:`Recipe` per distinct tool list per process, so models load once (keyed by
    the tools as points carry them; text tools work too, as :class:`Recipe` reads them)."""
    return Recipe(tools)


def parse_points(
    items: Sequence[str],
    levels: Sequence[str] = (),
    bpps: Sequence[float] = (),
) -> list[CodecPoint]:
    """Turn ``jpeg``, ``hevc@qp37``, ``jpeg+saliency`` and friends into a de-duplicated list of
    points: a bare name (tools or not) runs at each of ``levels``, at each ``bpps`` target, or
    over its codec's own ladder. Each item is parsed once, its codec looked up once, each given
    level checked once and its tools built into their recipe, so whatever is unknown fails
    here, before any work."""
    if levels and bpps:
        raise IcmError("give --levels or --bpp, not both")
    points: dict[str, CodecPoint] = {}
    for item in items:
        expanded = _expand(parse_point(item, bare=True), levels, bpps)
        # unknown tools, and tools the codec cannot take, fail here, before any work
        recipe_for(expanded[0].tools).check(get_codec(expanded[0].codec))
        points.update((str(point), point) for point in expanded)
    if not points:
        raise IcmError("no codec points to run: give --codecs")
    return list(points.values())


def _expand(point: CodecPoint, levels: Sequence[str], bpps: Sequence[float]
            ) -> list[CodecPoint]:
    """A point with its level or target as it is; a bare one at ``bpps``, ``levels`` or the
    ladder. Unknown or unavailable codecs and levels they do not take fail here."""
    codec = get_codec(point.codec)
    if point.level is not None:
        codec.knob.parse(point.level, codec.name)
    if point.level is not None or point.bpp is not None:
        return [point]
    if bpps:
        return [replace(point, bpp=bpp) for bpp in bpps]
    for level in levels:
        codec.knob.parse(level, codec.name)
    return [replace(point, level=level) for level in levels or codec.ladder]


def _restore_api() -> Any:
    """``icm.restore.api``, or a one-line error where torch (the adapt extra) is missing."""
    try:
        from icm.restore import api
    except ImportError as exc:
        raise RecipeError(f"tool 'restore' needs torch ({exc.name} is missing): "
                          "pip install 'icm[adapt]'") from None
    return api


def _preedit_api() -> Any:
    """``icm.preedit.api``, or a one-line error where torch (the adapt extra) is missing."""
    try:
        from icm.preedit import api
    except ImportError as exc:
        raise RecipeError(f"tool 'preedit' needs torch ({exc.name} is missing): "
                          "pip install 'icm[adapt]'") from None
    return api


@cache
def _restore_fingerprint(model: str) -> str:
    api = _restore_api()
    return f"recogniser:{recogniser_fingerprint()},{model}:" \
        f"{api.model_fingerprint(api.shipped_model_path(model))}"


@cache
def _provider(text: str) -> ImportanceProvider:
    return get_importance(text)


@cache
def _allocator(machine: str, strength: float | None) -> Any:
    return MachineAllocator(machine, strength)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def machine_tools(
    machine: str | None,
    importance: str | None = None,
    strength: float | None = None,
    *,
    fit: bool = True,
    tags: int = 0,
) -> tuple[Tool, ...]:
    """The tools ``icm encode --for MACHINE [--importance P] [--tags K]`` adds to a point.

    ``--for`` alone means icm's recipe for that machine, ``for=MACHINE`` (fit, then the
    rate-distortion-optimal allocation on the machine's own weights); ``--strength`` scales
    its offsets. Naming a map with ``--importance`` (or ``--no-fit``) asks for the older
    tools instead: fit to the machine and apply that map by the linear rule of
    :mod:`icm.importance.apply`. ``--importance none`` turns maps off (fit only). The
    ``--importance`` text reads as a tool in a point does; ``--strength`` replaces its
    strength.
    """
    target = get_machine(machine) if machine else None
    tools: list[Tool] = []
    if target is not None and importance is None and fit:
        tools.append(Tool(FOR, target.name, strength))
    else:
        if target is not None and fit:
            tools.append(Tool(FIT, target.name))
        if importance is None and target is not None:
            importance = target.default_importance()
        if importance is not None and importance.strip().lower() != "none":
            provider = Tool.parse(importance)
            tools.append(provider if strength is None else replace(provider, strength=strength))
        elif strength is not None:
            raise RecipeError("--strength needs an importance map (--for or --importance)")
    if tags:
        tagger = target.name if target is not None and target.can_tag else DEFAULT_TAGGER
        tools.append(Tool(TAGS, tagger, float(tags)))
    return tuple(tools)
