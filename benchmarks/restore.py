"""How much does the shipped restoration network win back on photos it has never seen?

The 24 Kodak photos (held out of training; four of their center crops were its validation),
center-cropped to 256x256, get every registered degradation at strengths 0.3 and 0.7 with fixed
seeds. Each is restored four ways and scored by PSNR to the clean crop: not at all (degraded),
told the true type and strength, told "unknown" (no type, no strength), and "auto" (the
recogniser names type and strength when ``icm.degrade.recognise`` and its model are installed;
otherwise auto is unknown, and the table says so). Prints a markdown table; writes
``benchmarks/results/restore.json`` with the exact command.

    python benchmarks/restore.py [--model FILE] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from icm.degrade import get_degradation, list_degradations
from icm.fileio import write_atomic
from icm.image.datasets import open_dataset
from icm.metrics import psnr
from icm.restore import read_model, restore_image
from icm.restore.api import shipped_model_path

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
STRENGTHS = (0.3, 0.7)
MODES = ("degraded", "true", "unknown", "auto")


def center(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    top, left = (height - side) // 2, (width - side) // 2
    return np.ascontiguousarray(pixels[top : top + side, left : left + side])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--images", default=str(KODAK))
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model or shipped_model_path()
    _, info = read_model(model)
    crops = [center(image.load(), args.crop)
             for image in open_dataset(args.images).of_kind("photo").limit(args.limit)]
    started = time.perf_counter()
    rows, auto_sources, auto_hits = [], set(), 0
    for cls in list_degradations():
        for strength in STRENGTHS:
            scores: dict[str, list[float]] = {mode: [] for mode in MODES}
            for index, clean in enumerate(crops):
                degraded = get_degradation(cls.name).apply(clean, strength, 9000 + index)
                scores["degraded"].append(psnr(clean, degraded))
                true, _ = restore_image(degraded, cls.name, strength, model)
                unknown, _ = restore_image(degraded, "unknown", None, model)
                auto, record = restore_image(degraded, "auto", None, model)
                auto_sources.add(record.source)
                auto_hits += record.name == cls.name
                for mode, restored in (("true", true), ("unknown", unknown), ("auto", auto)):
                    scores[mode].append(psnr(clean, restored))
            rows.append({"degradation": cls.name, "strength": strength, "images": len(crops),
                         **{mode: round(float(np.mean(v)), 3) for mode, v in scores.items()}})
    elapsed = time.perf_counter() - started
    means = {mode: round(float(np.mean([row[mode] for row in rows])), 3) for mode in MODES}
    auto_note = ("recogniser" if auto_sources == {"recogniser"}
                 else "fallback to unknown (no recogniser model installed)"
                 if auto_sources == {"fallback"} else ", ".join(sorted(auto_sources)))
    print(f"Restoration on {len(crops)} Kodak {args.crop}x{args.crop} center crops, "
          f"PSNR dB to clean (auto: {auto_note})\n")
    print("| degradation | s | degraded | true type | unknown | auto |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['degradation']} | {row['strength']:g} | {row['degraded']:.2f} | "
              f"{row['true']:.2f} | {row['unknown']:.2f} | {row['auto']:.2f} |")
    print(f"| **mean** | | {means['degraded']:.2f} | {means['true']:.2f} | "
          f"{means['unknown']:.2f} | {means['auto']:.2f} |")
    summary = {"command": "python " + " ".join(sys.argv), "model": str(model),
               "trained": info.trained, "images": args.images, "crop": args.crop,
               "strengths": list(STRENGTHS), "seeds": "9000 + image index", "auto": auto_note,
               "auto_type_accuracy": round(auto_hits / max(1, len(rows) * len(crops)), 4),
               "mean": means, "rows": rows, "wall_s": round(elapsed, 1),
               "torch_threads": args.threads}
    write_atomic(HERE / "results" / "restore.json",
                 (json.dumps(summary, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
