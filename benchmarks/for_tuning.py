"""How ``+for``'s design choices were made: on CBSD68 photos, never on Kodak (the test set).

Each variant is ``+for=classify`` with one choice changed, against ``+fit=classify`` on the
same photos and levels, for EfficientNet-Lite0: BD-rate on the mean curves at equal KL, top-5
overlap and probability overlap, and the encode time relative to ``+fit``. Variants:

* ``scales=1``, ``scales=1,0.75,0.6``, ``scales=1,0.75,0.6,0.5``: which coded sizes are
  weighed (the default is the last; ``scales=1`` is the allocation alone);
* ``strength=1``: the bare derivation's offsets instead of half of them (``+for=classify~1``);
* ``two-sided``: offsets allowed below 0 (finer than the level), as the bare derivation says.

    python benchmarks/for_tuning.py [--codec hevc-kvazaar] [--images 24:40] [--variants ...]

Writes ``benchmarks/results/for_tuning-<codec>.json``. Mean curves over 16 photos, no
interval: this is the exploration the defaults came from, not the claim (that is
``machine_aware.py`` on Kodak).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import icm.importance.allocation as allocation
from icm.fileio import write_atomic
from icm.image import load_image
from icm.machines import get_machine
from icm.metrics import bd_rate
from icm.pipeline import decode_bytes, encode_image, parse_point, recipe

HERE = Path(__file__).resolve().parent
TUNING = HERE.parent.parent / "shared" / "data" / "cbsd68"
LEVELS = {
    "hevc-kvazaar": [f"qp{q}" for q in (27, 31, 35, 39, 43, 47, 51)],
    "jpeg": [f"q{q}" for q in (5, 8, 12, 18, 26, 36, 50)],
}
VARIANTS = ("scales=1", "scales=1,0.75,0.6", "scales=1,0.75,0.6,0.5", "two-sided",
            "strength=1")
SCORES = {"kl": -1, "top5_overlap": 2, "prob_overlap": 3}  # column; KL negated (lower better)


def configure(variant: str) -> str:
    """Set the module defaults a variant changes; return the tool text it uses."""
    allocation.SCALES = (1.0, 0.75, 0.6, 0.5)
    allocation.ONE_SIDED = True
    tool = "+for=classify"
    name, _, value = variant.partition("=")
    if name == "scales":
        allocation.SCALES = tuple(float(v) for v in value.split(","))
    elif name == "strength":
        tool += f"~{value}"
    elif name == "two-sided":
        allocation.ONE_SIDED = False
    recipe.recipe_for.cache_clear()
    recipe._allocator.cache_clear()
    return tool


def curve(machine, photo, pristine, codec: str, tool: str) -> tuple[list, float]:
    height, width = photo.shape[:2]
    points, seconds = [], 0.0
    for level in LEVELS[codec]:
        start = time.perf_counter()
        encoded = encode_image(photo, parse_point(f"{codec}{tool}@{level}"))
        seconds += time.perf_counter() - start
        scores = machine.fidelity(pristine, machine.predict([decode_bytes(encoded.data)])[0])
        points.append((8 * len(encoded.data) / (width * height), scores["kl"],
                       scores["top5_overlap"], scores["prob_overlap"]))
    return points, seconds


def bd(anchor: np.ndarray, test: np.ndarray, column: int) -> float | None:
    sign = -1.0 if column < 0 else 1.0
    column = abs(column) if column > 0 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return round(bd_rate(anchor[:, 0], sign * anchor[:, column], test[:, 0],
                                 sign * test[:, column], method="pchip"), 1)
        except ValueError:
            return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="hevc-kvazaar", choices=sorted(LEVELS))
    parser.add_argument("--images", default="24:40", help="slice of CBSD68's sorted photos")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="';'-separated")
    args = parser.parse_args()
    first, last = (int(v) for v in args.images.split(":"))
    files = sorted(TUNING.glob("*.png"))[first:last]
    if not files:
        print(f"{TUNING}: no photos (CBSD68 lives in ../shared/data/cbsd68)", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(";") if v.strip()]
    machine = get_machine("classify:efficientnet-lite0")
    curves = {name: [] for name in ("fit", *variants)}
    seconds = dict.fromkeys(curves, 0.0)
    for path in files:
        photo = load_image(path)
        pristine = machine.predict([photo])[0]
        for name in curves:
            tool = "+fit=classify" if name == "fit" else configure(name)
            points, spent = curve(machine, photo, pristine, args.codec, tool)
            curves[name].append(points)
            seconds[name] += spent
        print(f"{path.name} done", file=sys.stderr)
    means = {name: np.mean(np.array(c), axis=0) for name, c in curves.items()}
    results = []
    for name in variants:
        row = {"variant": name, "time_vs_fit": round(seconds[name] / seconds["fit"], 2)}
        row.update({f"bd_rate_{score}": bd(means["fit"], means[name], column)
                    for score, column in SCORES.items()})
        results.append(row)
        print(f"{name:22} " + "  ".join(f"{k[8:]} {v:+.1f}%" if v is not None else f"{k} n/a"
                                         for k, v in row.items() if k.startswith("bd_")) +
              f"  time {row['time_vs_fit']:.1f}x fit")
    out = HERE / "results" / f"for_tuning-{args.codec}.json"
    write_atomic(out, json.dumps({"command": "python " + " ".join(sys.argv),
                                  "photos": [p.name for p in files], "results": results,
                                  "mean_curves": {k: v.round(4).tolist()
                                                  for k, v in means.items()}},
                                 indent=1).encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
