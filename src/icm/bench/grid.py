"""Planning the grid: the default codecs and machines, and the machines to load.

A codec point is a fixed level (``jpeg@q30``) or a bpp target (``hevc@0.1bpp``), optionally
with machine-aware tools (``hevc-kvazaar+saliency@qp37``); :func:`icm.pipeline.parse_points`
reads them, expanding bare codec names (with or without tools) to explicit ``--levels``, to
``--bpp`` targets, or to the codec's own ladder. Each machine reads only the image kinds it is
meant for (OCR reads documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from icm.codecs import CODECS
from icm.errors import IcmError
from icm.machines import MACHINES, Machine, get_machine, parse_machine

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

