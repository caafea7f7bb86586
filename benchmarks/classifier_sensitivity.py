"""Is "JPEG beats VVC for the classifier" a codec effect or a colour-path bug? Measured.

EfficientNet-Lite0 on the 24 Kodak photos: top-1 agreement with its pristine output, mean
KL(pristine || decoded) and RGB PSNR after (a) the bare colour round trips the video codecs use
(RGB -> BT.601 limited-range YUV 4:2:0 or 4:4:4 -> RGB, no coding), (b) HEVC near 38 dB in
4:2:0, 4:4:4 and with ``tune=psnr``, (c) JPEG at similar PSNR. Also the mean pristine top-1
probability, which says how easily top-1 can flip on these photos. Writes
``benchmarks/results/classifier_sensitivity.json``.

    python benchmarks/classifier_sensitivity.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from icm.codecs import get_codec
from icm.codecs._pyav import to_rgb, to_yuv
from icm.fileio import write_atomic
from icm.image import load_image
from icm.machines import get_machine
from icm.metrics import psnr

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def main() -> int:
    if not KODAK.is_dir():
        print(f"{KODAK}: no such folder", file=sys.stderr)
        return 2
    images = [load_image(p) for p in sorted(KODAK.glob("*.png"))]
    machine = get_machine("classify:efficientnet-lite0")
    pristine = machine.predict(images)
    hevc, jpeg = get_codec("hevc"), get_codec("jpeg")

    def round_trip(pix_fmt: str):
        return [to_rgb(to_yuv(image, pix_fmt))[: image.shape[0], : image.shape[1]]
                for image in images]

    def coded(codec, level: str, **options):
        return [codec.decode(codec.encode(image, level, **options)) for image in images]

    variants = {
        "yuv420 limited round trip (no coding)": lambda: round_trip("yuv420p"),
        "yuv444 limited round trip (no coding)": lambda: round_trip("yuv444p"),
        "hevc@qp20": lambda: coded(hevc, "qp20"),
        "hevc@qp20 chroma=444": lambda: coded(hevc, "qp20", chroma="444"),
        "hevc@qp20 tune=psnr": lambda: coded(hevc, "qp20", tune="psnr"),
        "jpeg@q95": lambda: coded(jpeg, "q95"),
        "jpeg@q85": lambda: coded(jpeg, "q85"),
    }
    results = {"mean_pristine_top1_probability":
               float(np.mean([p["top5_prob"][0] for p in pristine]))}
    print(f"mean pristine top-1 probability: {results['mean_pristine_top1_probability']:.3f}")
    print(f"{'variant':40} {'top-1 agree':>11} {'mean KL':>8} {'PSNR dB':>8}")
    for label, make in variants.items():
        decoded = make()
        scores = [machine.fidelity(p, o) for p, o in zip(pristine, machine.predict(decoded),
                                                          strict=True)]
        row = {"top1_agreement": float(np.mean([s["top1"] for s in scores])),
               "mean_kl": float(np.mean([s["kl"] for s in scores])),
               "psnr": float(np.mean([psnr(a, b) for a, b in zip(images, decoded,
                                                                  strict=True)]))}
        results[label] = row
        print(f"{label:40} {row['top1_agreement']:11.3f} {row['mean_kl']:8.4f} "
              f"{row['psnr']:8.2f}")
    write_atomic(HERE / "results" / "classifier_sensitivity.json",
                 json.dumps({"command": "python " + " ".join(sys.argv), **results},
                            indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
