"""Our learned codec (icm-lic, the shipped checkpoint) against JPEG, WebP and HEVC on Kodak.

``icm-lic+saliency`` is the same model driven by the spectral-residual saliency map (the map
becomes its per-block quality map through the delta-QP interface, 3 QP = one quality level).
``icm-lic-lite0`` is the model fine-tuned with its distortion measured in Lite0's view
(``icm learned train --view-scale 0.4375``: Kodak's 512 px shorter side read at 224 px).
``hevc+fit=classify:efficientnet-lite0`` is HEVC on the photo resampled to what Lite0 reads
(shorter side 224 px), the strongest standard anchor for this machine.
Points with tools are coded into ``.icm`` containers (their resample record counts in the
bits) and decoded back to the original size.

For every codec x level x photo: the real bitstream's bytes, RGB PSNR, MS-SSIM (luma), encode
and decode wall time (one thread), and machine fidelity: EfficientNet-Lite0's output on the
decoded photo against its output on the pristine one (top-1 agreement, top-5 overlap, KL).
Curves are the means over the photos at each level; BD-rates (akima, percent; negative = icm-lic
needs fewer bits for the same quality) compare each icm-lic curve with each anchor on PSNR,
MS-SSIM, top-5 overlap and top-1 agreement. Prints markdown tables and writes
``benchmarks/results/learned.json`` with the exact command and the checkpoint's training record.

    python benchmarks/learned.py                      # all 24 Kodak photos
    python benchmarks/learned.py --limit 8 --codecs icm-lic,jpeg
    python benchmarks/learned.py --codecs icm-lic,jpeg,webp,hevc --model FILE \
        --out benchmarks/results/learned-alpha0.json     # another icm-lic model (an ablation)

Each run also draws its rate-PSNR and rate-KL curves next to the JSON (``learned.png``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from icm.codecs import get_codec
from icm.fileio import write_atomic
from icm.image.datasets import open_dataset
from icm.learned.files import load_model, shipped_model
from icm.machines import get_machine
from icm.metrics import BDWarning, bd_metric, bd_rate, ms_ssim, psnr
from icm.pipeline import decode_bytes, encode_image, parse_point

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
MACHINE = "classify:efficientnet-lite0"
FIT_HEVC = f"hevc+fit={MACHINE}"
ANCHORS = ("jpeg", "webp", "hevc", FIT_HEVC)
LIC_LEVELS = ("q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8")
TESTS = ("icm-lic", "icm-lic+saliency", "icm-lic-lite0")
#: BD-rate is taken at equal value of each; ``neg_kl`` is -KL(pristine || decoded), which rises
#: with rate like a quality (KL is continuous, so its curve is monotonic where top-k often ties)
METRICS = ("psnr", "ms_ssim", "neg_kl", "top5_overlap", "top1")
#: BD-fidelity (mean gain at equal bits, along log rate): defined for tied curves too
FIDELITY = ("top5_overlap", "top1")


def measure(curve: str, level: str, photo: np.ndarray, machine, pristine,
            model: Path | None = None) -> dict:
    point = parse_point(f"{curve}@{level}")
    options = {"weights": str(model)} if model and point.codec == "icm-lic" else {}
    in_container = bool(point.tools)  # a resample must travel with the bitstream
    start = time.perf_counter()
    encoded = encode_image(photo, point, as_container=in_container, **options)
    coded = time.perf_counter()
    if in_container:
        decoded = decode_bytes(encoded.data)
    else:
        decoded = get_codec(point.codec).decode(encoded.bitstream)
    finished = time.perf_counter()
    scores = machine.fidelity(pristine, machine.predict([decoded])[0])
    bpp = 8 * len(encoded.data) / (photo.shape[0] * photo.shape[1])
    return {"codec": curve, "level": level, "bpp": bpp,
            "psnr": psnr(photo, decoded), "ms_ssim": ms_ssim(photo, decoded),
            "top1": scores["top1"], "top5_overlap": scores["top5_overlap"], "kl": scores["kl"],
            "encode_ms": (coded - start) * 1e3, "decode_ms": (finished - coded) * 1e3}


def curves(rows: list[dict]) -> dict[str, list[dict]]:
    """Per codec, per level: the means over photos, ordered by rate."""
    by_point: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_point.setdefault((row["codec"], row["level"]), []).append(row)
    result: dict[str, list[dict]] = {}
    for (codec, level), group in by_point.items():
        mean = {key: float(np.mean([r[key] for r in group]))
                for key in ("bpp", "psnr", "ms_ssim", "top5_overlap", "top1", "kl",
                            "encode_ms", "decode_ms")}
        mean["neg_kl"] = -mean["kl"]
        result.setdefault(codec, []).append({"level": level, "photos": len(group), **mean})
    for points in result.values():
        points.sort(key=lambda p: p["bpp"])
    return result


def bd_table(points: dict[str, list[dict]], test: str) -> dict[str, dict[str, float | None]]:
    """BD-rate (%) per metric and BD-fidelity (points x 100) per machine score, vs each anchor.
    None where the curves do not overlap enough or a metric ties along a curve."""
    table: dict[str, dict[str, float | None]] = {}
    for anchor in ANCHORS:
        if anchor not in points or test not in points:
            continue
        a, t = points[anchor], points[test]
        table[anchor] = {}
        for metric in METRICS:
            table[anchor][metric] = _bd(bd_rate, a, t, metric, 1.0)
        for metric in FIDELITY:
            table[anchor][f"bd_{metric}"] = _bd(bd_metric, a, t, metric, 100.0)
    return table


def _bd(function, anchor: list[dict], test: list[dict], metric: str,
        scale: float) -> float | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BDWarning)
            value = function([p["bpp"] for p in anchor], [p[metric] for p in anchor],
                             [p["bpp"] for p in test], [p[metric] for p in test])
    except ValueError:  # too little overlap, or a metric that ties along a curve
        return None
    return round(value * scale, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(KODAK))
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--codecs", default=",".join((*TESTS, *ANCHORS)))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "learned.json")
    parser.add_argument("--model", type=Path, default=None,
                        help="an icm-lic model file (default: the shipped one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    codecs = [name.strip() for name in args.codecs.split(",") if name.strip()]
    photos = [(image.id, image.load()) for image in
              open_dataset(args.images).of_kind("photo").limit(args.limit)]
    machine = get_machine(MACHINE)
    rows, started = [], time.perf_counter()
    for index, (name, photo) in enumerate(photos):
        pristine = machine.predict([photo])[0]
        for codec in codecs:
            levels = (LIC_LEVELS if codec.startswith("icm-lic")
                      else get_codec(codec.split("+")[0]).ladder)
            for level in levels:
                rows.append({"image": name,
                             **measure(codec, level, photo, machine, pristine, args.model)})
        print(f"[{index + 1}/{len(photos)}] {name} {time.perf_counter() - started:.0f} s",
              file=sys.stderr, flush=True)
    points = curves(rows)
    bd = {test: bd_table(points, test) for test in TESTS if test in points}
    model = args.model or shipped_model()
    info = load_model(model)[1] if model else None
    report(points, bd)
    record = {
        "command": "python " + " ".join(sys.argv),
        "images": args.images, "photos": len(photos), "machine": MACHINE,
        "model": model.name if model else None, "trained": info.trained if info else None,
        "lite0_model": _model_record(shipped_model("lite0")),
        "threads": 1, "platform": platform.platform(), "wall_s": time.perf_counter() - started,
        "curves": points, "bd_rate_vs": bd, "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, (json.dumps(record, indent=1) + "\n").encode())
    plot(points, len(photos), args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png').name}")


def report(points: dict[str, list[dict]], bd: dict) -> None:
    print("| codec | level | bpp | PSNR dB | MS-SSIM | top-1 agr. | top-5 overlap | KL | "
          "enc ms | dec ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for codec, curve in points.items():
        for p in curve:
            print(f"| {codec} | {p['level']} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                  f"{p['ms_ssim']:.4f} | {p['top1']:.3f} | {p['top5_overlap']:.3f} | "
                  f"{p['kl']:.4f} | {p['encode_ms']:.0f} | {p['decode_ms']:.0f} |")
    print("\nBD-rate (%, negative = fewer bits at equal quality); BD-fidelity (points, "
          "positive = more agreement at equal bits)\n")
    print("| codec | anchor | PSNR | MS-SSIM | KL | top-5 overlap | top-1 agreement | "
          "BD top-5 (pts) | BD top-1 (pts) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    keys = (*METRICS, *(f"bd_{m}" for m in FIDELITY))
    for test, table in bd.items():
        for anchor, values in table.items():
            cells = [("n/a" if values[k] is None else f"{values[k]:+.1f}") for k in keys]
            print(f"| {test} | {anchor} | " + " | ".join(cells) + " |")


def _model_record(path: Path | None) -> dict | None:
    """A model file's name and training record (a fine-tune's names what it started from)."""
    return None if path is None else {"name": path.name, "trained": load_model(path)[1].trained}


def plot(points: dict[str, list[dict]], photos: int, path: Path) -> None:
    """Rate-PSNR and rate-KL (log scale: KL spans two decades) of every curve."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for codec, curve in points.items():
        rates = [p["bpp"] for p in curve]
        style = "-" if codec.startswith("icm-lic") else "--"
        axes[0].plot(rates, [p["psnr"] for p in curve], style, marker="o", ms=3, label=codec)
        axes[1].plot(rates, [p["kl"] for p in curve], style, marker="o", ms=3, label=codec)
    axes[0].set_ylabel("RGB PSNR (dB)")
    axes[1].set_ylabel("Lite0 KL(pristine || decoded)")
    axes[1].set_yscale("log")
    for axis in axes:
        axis.set_xlabel("bits per pixel")
        axis.set_xscale("log")
        axis.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7)
    figure.suptitle(f"Kodak ({photos} photos): icm-lic and icm-lic-lite0 against standard "
                    "codecs (lower KL is better)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


if __name__ == "__main__":
    main()
