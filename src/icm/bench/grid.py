"""Planning the grid: images x codec points x machines, minus what the ledger already has.

A codec point is a fixed level (``jpeg@q30``) or a bpp target (``hevc@0.1bpp``), optionally
with machine-aware tools (``hevc-kvazaar+saliency@qp37``). Bare codec names (with or without
tools) expand to explicit ``--levels``, to ``--bpp`` targets, or to the codec's own ladder. Each
machine reads only the image kinds it is meant for (OCR reads documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from icm.codecs import CODECS, CodecPoint, get_codec, parse_point
from icm.codecs.point import split_level
from icm.errors import IcmError
from icm.machines import MACHINES, Machine, get_machine, parse_machine
from icm.recipe import recipe_for

DEFAULT_CODECS = ("jpeg", "webp", "avif", "hevc", "vvc")
DEFAULT_MACHINES = ("classify:efficientnet-lite0", "ocr:rapidocr", "detect:nanodet")
#: The embedded default's levels. Each codec's own ladder suits photos at full size; these
#: reach down to where small print breaks for OCR and up to where the classifier's output
#: barely moves on 224 px views, so that every codec's curve shares most of its fidelity range
#: with the anchor's for both machines (no BD value is read from curves that do not overlap).
DEFAULT_LADDERS = {
    "jpeg": ("q3", "q6", "q10", "q15", "q25", "q40", "q65"),
    "webp": ("q0", "q4", "q10", "q20", "q35", "q55", "q75"),
    "avif": ("q0", "q8", "q16", "q25", "q35", "q50", "q65"),
    "hevc": ("qp51", "qp47", "qp43", "qp39", "qp35", "qp31", "qp27"),
    "vvc": ("qp53", "qp49", "qp45", "qp41", "qp37", "qp33", "qp29"),
}


def default_codecs(levels: Sequence[str] = (), bpps: Sequence[float] = ()) -> tuple[str, ...]:
    """The default codecs that work here: as the embedded default's points, or as bare names
    when ``--levels`` or ``--bpp`` say what levels to run."""
    available = [name for name in DEFAULT_CODECS
                 if name in CODECS and CODECS[name].unavailable_reason() is None]
    if levels or bpps:
        return tuple(available)
    return tuple(f"{name}@{level}" for name in available for level in DEFAULT_LADDERS[name])


def expand_points(
    codecs: Sequence[str],
    levels: Sequence[str] = (),
    bpps: Sequence[float] = (),
) -> list[CodecPoint]:
    """Turn ``jpeg``, ``hevc@qp37`` and friends into a de-duplicated list of points."""
    if levels and bpps:
        raise IcmError("give --levels or --bpp, not both")
    points: dict[str, CodecPoint] = {}
    for item in codecs:
        head, level = split_level(item)
        if level:
            expanded = [parse_point(item)]
        else:
            name, *tools = (part.strip() for part in head.split("+"))
            codec = get_codec(name)  # unknown or unavailable codecs fail here, once
            tool_list = tuple(tools)
            if bpps:
                expanded = [CodecPoint(codec.name, bpp=b, tools=tool_list) for b in bpps]
            else:
                for level in levels:
                    codec.knob.parse(level, codec.name)
                expanded = [CodecPoint(codec.name, level=lv, tools=tool_list)
                            for lv in levels or codec.ladder]
        recipe_for(expanded[0].tools)  # unknown tools fail here, before any work
        for point in expanded:
            get_codec(point.codec)
            if point.level is not None:
                CODECS[point.codec].knob.parse(point.level, point.codec)
            points[str(point)] = point
    if not points:
        raise IcmError("no codec points to run: give --codecs")
    return list(points.values())


def default_machines() -> list[str]:
    """The default machines that work here (the offline ones whose weights are present)."""
    names = []
    for name in DEFAULT_MACHINES:
        spec = parse_machine(name)
        cls = MACHINES.get(spec.family)
        if cls is not None and cls.unavailable_reason(spec) is None:
            names.append(name)
    return names


def with_adapters(machines: Sequence[str], adapters: Sequence[Path]) -> tuple[str, ...]:
    """The machines plus, per adapter file, its machine read through it (and the plain
    machine too, which the gap decomposition compares with). No adapters: unchanged."""
    if not adapters:
        return tuple(machines)
    from icm.adapt.files import read_adapter

    names = list(machines) or default_machines()
    for path in adapters:
        base = read_adapter(Path(path))[1].machine
        names += [base, f"{base}+adapter={path}"]
    return tuple(dict.fromkeys(names))


def load_machines(names: Sequence[str]) -> list[Machine]:
    """Instantiate (without loading weights) every named machine; errors are one line."""
    machines = [get_machine(name) for name in dict.fromkeys(names)]
    if not machines:
        raise IcmError("no machines to run: give --machines (see icm machines)")
    return machines


@dataclass
class Unit:
    """One work unit: one image through one codec's points, read by the pending machines."""

    image_index: int
    codec: str
    points: list[CodecPoint]
    pending: dict[str, list[str]] = field(default_factory=dict)  # point -> machine names

    @property
    def rows(self) -> int:
        return sum(len(machines) for machines in self.pending.values())
