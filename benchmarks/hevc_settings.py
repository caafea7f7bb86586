"""Why HEIC beats our raw-HEVC x265 at equal PSNR: encoder settings, measured.

Both are x265. HEIC goes through libheif (which signals full-range BT.601 and drives x265 in
its own quality mode); ``hevc`` uses x265 at a fixed QP, limited range, x265's default tuning.
This measures BD-rate on RGB PSNR, against ``hevc`` with its defaults, of: preset slow,
``tune=psnr`` (no psycho-visual RD), 10-bit coding, and HEIC. Writes
``benchmarks/results/hevc_settings.json``.

    python benchmarks/hevc_settings.py [--images N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from icm.codecs import get_codec
from icm.fileio import write_atomic
from icm.image import load_image
from icm.metrics import bd_rate, psnr

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
VARIANTS = {
    "hevc preset=slow": ("hevc", {"preset": "slow"}),
    "hevc tune=psnr": ("hevc", {"tune": "psnr"}),
    "hevc bit_depth=10": ("hevc", {"bit_depth": 10}),
    "heic (libheif + x265)": ("heic", {}),
}


def curve(images, name: str, options: dict) -> list[tuple[float, float]]:
    codec = get_codec(name)
    points = []
    for level in codec.ladder:
        coded = [codec.encode(image, level, **options) for image in images]
        points.append((float(np.mean([b.bpp for b in coded])),
                       float(np.mean([psnr(i, codec.decode(b)) for i, b in zip(images, coded,
                                                                                 strict=True)]))))
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6, help="first N Kodak photos")
    args = parser.parse_args()
    if not KODAK.is_dir():
        print(f"{KODAK}: no such folder", file=sys.stderr)
        return 2
    paths = sorted(KODAK.glob("*.png"))[: args.images]
    images = [load_image(p) for p in paths]
    base = curve(images, "hevc", {})
    results = {}
    print(f"BD-rate on RGB PSNR vs hevc defaults, {len(images)} Kodak photos")
    for label, (name, options) in VARIANTS.items():
        other = curve(images, name, options)
        value = bd_rate(*zip(*base, strict=True), *zip(*other, strict=True), method="pchip")
        results[label] = {"bd_rate_percent": value, "curve": other}
        print(f"  {label:24} {value:+6.1f}%")
    write_atomic(HERE / "results" / "hevc_settings.json", json.dumps(
        {"command": "python " + " ".join(sys.argv), "images": [p.name for p in paths],
         "baseline": base, "variants": results}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
