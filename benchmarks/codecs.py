"""Codec rate-distortion benchmark over a folder of photos (default: Kodak in ../shared).

For every codec x level x image: the real standard bitstream's bytes, RGB PSNR, MS-SSIM (luma),
encode and decode wall time. Prints a table per codec and the BD-rate of each codec against
JPEG on PSNR (akima, on the mean rate-PSNR curve over the images), and writes everything to
``benchmarks/results/codecs.json``.

    python benchmarks/codecs.py                       # all available codecs, their ladders
    python benchmarks/codecs.py --codecs jpeg,hevc --limit 4

bpp here is the standard file's (the ``.icm`` container adds 29-33 bytes, about 0.0006 bpp on
a Kodak photo). Timings are single-process wall times on this machine: run with the default
``--workers 1`` when the times matter, since parallel workers share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from icm.codecs import CODECS, get_codec
from icm.fileio import write_atomic
from icm.image import load_image
from icm.metrics import BDWarning, bd_rate, ms_ssim, psnr

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def measure(task: tuple[str, str, tuple[str, ...]]) -> list[dict]:
    """One image through one codec's whole ladder (one process task, to reuse the load)."""
    codec_name, image_path, levels = task
    codec = get_codec(codec_name)
    image = load_image(image_path)
    pixels = image.shape[0] * image.shape[1]
    rows = []
    for level in levels:
        start = time.perf_counter()
        bitstream = codec.encode(image, level)
        encode_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        decoded = codec.decode(bitstream)
        decode_ms = (time.perf_counter() - start) * 1e3
        rows.append({
            "codec": codec_name,
            "level": bitstream.level,
            "image": Path(image_path).name,
            "bytes": len(bitstream.data),
            "bpp": 8 * len(bitstream.data) / pixels,
            "psnr": psnr(image, decoded),
            "ms_ssim": ms_ssim(image, decoded),
            "encode_ms": encode_ms,
            "decode_ms": decode_ms,
        })
    return rows


def summarise(rows: list[dict], codecs: list[str]) -> dict[str, list[dict]]:
    """Mean over images, per codec and level, in ladder order."""
    summary = {}
    for codec in codecs:
        levels = []
        for level in dict.fromkeys(r["level"] for r in rows if r["codec"] == codec):
            group = [r for r in rows if r["codec"] == codec and r["level"] == level]
            levels.append({
                "level": level,
                "images": len(group),
                **{key: float(np.mean([r[key] for r in group]))
                   for key in ("bpp", "psnr", "ms_ssim", "encode_ms", "decode_ms")},
            })
        summary[codec] = sorted(levels, key=lambda entry: entry["bpp"])
    return summary


def bd_rates(summary: dict[str, list[dict]], anchor: str, metric: str) -> dict[str, dict]:
    """BD-rate of each codec's mean curve against the anchor's, with any warning recorded."""
    base = summary[anchor]
    results = {}
    for codec, curve in summary.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BDWarning)
            try:
                value = bd_rate([p["bpp"] for p in base], [p[metric] for p in base],
                                [p["bpp"] for p in curve], [p[metric] for p in curve])
            except ValueError as exc:
                value, caught = None, [str(exc)]
        results[codec] = {"bd_rate_percent": value,
                          "warnings": [str(getattr(w, "message", w)) for w in caught]}
    return results


def print_tables(summary, bd_psnr, bd_msssim) -> None:
    print(f"\n{'codec':13} {'level':>7} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} "
          f"{'enc ms':>8} {'dec ms':>7}")
    for codec, curve in summary.items():
        for point in curve:
            print(f"{codec:13} {point['level']:>7} {point['bpp']:7.3f} {point['psnr']:7.2f} "
                  f"{point['ms_ssim']:8.4f} {point['encode_ms']:8.1f} {point['decode_ms']:7.1f}")
    print(f"\n{'codec':13} {'BD-rate vs jpeg (PSNR)':>24} {'(MS-SSIM)':>10}  mean enc ms")
    order = sorted(summary, key=lambda c: bd_psnr[c]["bd_rate_percent"] or 0)
    for codec in order:
        value, other = bd_psnr[codec]["bd_rate_percent"], bd_msssim[codec]["bd_rate_percent"]
        encode = np.mean([p["encode_ms"] for p in summary[codec]])
        text = "n/a" if value is None else f"{value:+.1f}%"
        other_text = "n/a" if other is None else f"{other:+.1f}%"
        flag = " *" if bd_psnr[codec]["warnings"] else ""
        print(f"{codec:13} {text:>24} {other_text:>10}  {encode:10.1f}{flag}")
    print("(* BD warning: see the JSON)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--codecs", default="", help="comma-separated (default: all available)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "codecs.json")
    args = parser.parse_args()
    if not args.images.is_dir():
        print(f"{args.images}: no such folder (Kodak lives in ../shared/data/kodak)",
              file=sys.stderr)
        return 2
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")
    images = images[: args.limit] if args.limit else images
    codecs = [c for c in args.codecs.split(",") if c] or [
        name for name, cls in CODECS.items() if cls.unavailable_reason() is None]
    if "jpeg" not in codecs:
        codecs.insert(0, "jpeg")
    tasks = [(c, str(p), CODECS[c].ladder) for c in codecs for p in images]
    start = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done, result in enumerate(pool.map(measure, tasks), 1):
            rows.extend(result)
            print(f"\r{done}/{len(tasks)} codec x image tasks", end="", file=sys.stderr)
    wall = time.perf_counter() - start
    summary = summarise(rows, codecs)
    bd_psnr = bd_rates(summary, "jpeg", "psnr")
    bd_msssim = bd_rates(summary, "jpeg", "ms_ssim")
    print_tables(summary, bd_psnr, bd_msssim)
    report = {
        "what": "codec RD benchmark: standard-file bpp, RGB PSNR, luma MS-SSIM, wall ms",
        "command": "python " + " ".join(sys.argv),
        "images": str(args.images),
        "image_count": len(images),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "workers": args.workers,
        "wall_s": wall,
        "codecs": {c: {"library_version": CODECS[c].library_version(),
                       "ladder": list(CODECS[c].ladder)} for c in codecs},
        "summary": summary,
        "bd_rate_vs_jpeg_psnr": bd_psnr,
        "bd_rate_vs_jpeg_ms_ssim": bd_msssim,
        "rows": rows,
    }
    write_atomic(args.out, json.dumps(report, indent=1).encode())
    print(f"\nwrote {args.out} ({len(rows)} rows, {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
