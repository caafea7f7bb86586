"""Semantic pre-editing: ``+preedit`` against the codec plain, ``+fit`` and ``+for``.

Stages (each resumable; results in ``benchmarks/results/preedit.json``, figure in
``preedit.png``):

* ``proxy``: how well the training proxy's rate tracks the real codecs' (Spearman rank
  correlation of proxy and real bits over photos x levels, within each level across photos,
  and the median real/proxy ratio), on Kodak fitted to the classifier's input, for JPEG,
  HEVC (kvazaar) and VVC (vvenc).
* ``classify``: Kodak (24, never used to train or tune the editor) x {jpeg, hevc-kvazaar,
  vvc} x {plain, +fit, +for, +fit+preedit, +for+preedit} x EfficientNet-Lite0, through the
  real ``icm bench`` (every point a standard bitstream whose every byte counts): BD-rate at
  equal KL / top-5 overlap / probability overlap with 90% intervals over photos, BD-PSNR.
* ``detect``: the same codecs x {+fit=detect, +fit=detect+preedit} x NanoDet (mAP@0.5
  against the pristine detections): the classifier-trained editor read by another machine.
* ``overhead``: the editor's run time (with its importance map, and the network alone)
  against each codec's encode time, at Kodak size and fitted (4 photos, warm).

    python benchmarks/preedit.py [--stages proxy,classify,detect,overhead] [--model PATH]

The editor is trained on CBSD68 with McMaster held out (``icm preedit train``; the shipped
model's command is in docs/preedit.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from icm.codecs import get_codec
from icm.fileio import write_atomic
from icm.image import load_image
from machine_aware import LEVELS, print_table, run_stage

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
CODECS = ("jpeg", "hevc-kvazaar", "vvc")
CLASSIFY = "classify:efficientnet-lite0"


def stages(model: str | None) -> dict[str, dict]:
    edit = f"+preedit={model}" if model else "+preedit"
    return {
        "classify": {"machines": (CLASSIFY,), "codecs": CODECS,
                     "tools": ("", "+fit=classify", "+for=classify", f"+fit=classify{edit}",
                               f"+for=classify{edit}")},
        "detect": {"machines": ("detect:nanodet",), "codecs": CODECS,
                   "tools": ("+fit=detect", f"+fit=detect{edit}")},
    }


def fitted_kodak(kodak: Path, limit: int = 0) -> list[np.ndarray]:
    from icm.image.resample import resize
    from icm.machines import get_machine

    machine = get_machine(CLASSIFY)
    photos = []
    for path in sorted(kodak.glob("*.png"))[: limit or None]:
        pixels = load_image(path)
        width, height = machine.fit_size(pixels)
        photos.append(resize(pixels, width, height))
    return photos


def proxy_bits(proxy, pixels: np.ndarray, family: str, value: float) -> float:
    """The proxy's bits for a whole photo (edge-padded to whole 16x16 macroblocks)."""
    import torch
    from torch.nn import functional as F

    from icm.preedit.config import step_tables

    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()[None] / 255
    height, width = pixels.shape[:2]
    x = F.pad(x, (0, -width % 16, 0, -height % 16), mode="replicate")
    tables = torch.from_numpy(step_tables(family, value))[None]
    with torch.no_grad():
        _, bpp = proxy(x, tables)
    return float(bpp) * x.shape[-1] * x.shape[-2]


def measure_proxy(kodak: Path) -> list[dict]:
    from icm.preedit.config import family_of
    from icm.preedit.proxy import CodecProxy

    proxy, photos, results = CodecProxy(), fitted_kodak(kodak), []
    for name in CODECS:
        codec = get_codec(name)
        family = family_of(codec)
        pairs = []  # (level index, photo index, proxy bits, real bits)
        for li, level in enumerate(LEVELS[name]):
            value = float(codec.knob.parse(level, codec.name))
            for pi, pixels in enumerate(photos):
                real = 8 * len(codec.encode(pixels, level).data)
                pairs.append((li, pi, proxy_bits(proxy, pixels, family, value), real))
        table = np.array(pairs)
        within = [spearmanr(table[table[:, 0] == li, 2], table[table[:, 0] == li, 3])[0]
                  for li in range(len(LEVELS[name]))]
        result = {"codec": name, "family": family, "photos": len(photos),
                  "levels": LEVELS[name],
                  "spearman_all": round(float(spearmanr(table[:, 2], table[:, 3])[0]), 4),
                  "spearman_within_level_median": round(float(np.median(within)), 4),
                  "spearman_within_level_min": round(float(np.min(within)), 4),
                  "real_over_proxy_median": round(float(np.median(table[:, 3] / table[:, 2])), 3)}
        print(f"{name:13} proxy/real rank correlation {result['spearman_all']:.3f} overall, "
              f"{result['spearman_within_level_median']:.3f} within a level (min "
              f"{result['spearman_within_level_min']:.3f}); real/proxy bits "
              f"{result['real_over_proxy_median']:.2f}")
        results.append(result)
    return results


def measure_overhead(kodak: Path, model: str | None, images: int = 4) -> list[dict]:
    """Median editor time and encode time per photo, at Kodak size and fitted (warm)."""
    from icm.preedit.api import edit_image

    full = [load_image(p) for p in sorted(kodak.glob("*.png"))[: images + 1]]
    fitted = fitted_kodak(kodak, images + 1)
    results = []
    for name in CODECS:
        codec = get_codec(name)
        level = LEVELS[name][len(LEVELS[name]) // 2]
        for size, photos in (("full", full), ("fitted", fitted)):
            edit_image(photos[0], codec, level, model)
            codec.encode(photos[0], level)
            edit_ms, network_ms, encode_ms = [], [], []
            for pixels in photos[1:]:
                start = time.perf_counter()
                edit_image(pixels, codec, level, model)
                edit_ms.append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()  # again: the importance map is kept, the network runs
                edit_image(pixels, codec, level, model)
                network_ms.append((time.perf_counter() - start) * 1e3)
                start = time.perf_counter()
                codec.encode(pixels, level)
                encode_ms.append((time.perf_counter() - start) * 1e3)
            row = {"codec": name, "size": size, "shape": list(photos[1].shape[:2]),
                   "level": level, "edit_ms": round(statistics.median(edit_ms), 1),
                   "network_ms": round(statistics.median(network_ms), 1),
                   "encode_ms": round(statistics.median(encode_ms), 1)}
            row["ratio"] = round(row["edit_ms"] / row["encode_ms"], 2)
            print(f"{name:13} {size:6} editor {row['edit_ms']:.0f} ms (network "
                  f"{row['network_ms']:.0f} ms), encode "
                  f"{row['encode_ms']:.0f} ms ({row['ratio']:.2f}x)")
            results.append(row)
    return results


def plot(saved: dict, path: Path) -> None:
    """Left: BD-rate (KL and the other scores) of each pre-edit variant against +fit, with
    intervals. Right: the editor's held-out loss over training (1 = no edit), its learning
    curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stage = saved.get("stages", {}).get("classify")
    items = [v for v in (stage or {}).get("variants", [])
             if v["against"].endswith("+fit=classify") and v["bd_rate"] is not None]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.4 * max(len(items), 6) + 1.8),
                                         gridspec_kw={"width_ratios": [3, 2]})
    for index, item in enumerate(items):
        low, high = item["bd_rate_ci"] or (item["bd_rate"], item["bd_rate"])
        colour = "tab:green" if "preedit" in item["variant"] else "tab:grey"
        left.errorbar(item["bd_rate"], index, xerr=[[item["bd_rate"] - low],
                      [high - item["bd_rate"]]], fmt="o", color=colour, capsize=3)
    left.set_yticks(range(len(items)), [f"{v['variant'].replace('=classify', '')} "
                                        f"({v['metric']})" for v in items], fontsize=7)
    left.axvline(0, color="black", linewidth=0.8)
    left.axvline(-15, color="tab:red", linewidth=0.8, linestyle="--")
    left.set_xlabel("BD-rate vs +fit=classify (%), 90% interval over Kodak photos")
    left.set_title("Pre-editing (green) and +for alone (grey) against resizing", fontsize=9)
    left.invert_yaxis()
    curve = saved.get("model", {}).get("curve") or []
    if curve:
        right.plot([0] + [p["step"] for p in curve], [1.0] + [p["loss"] for p in curve], "o-")
        right.axhline(1.0, color="black", linewidth=0.8)
    right.set_xlabel("training step")
    right.set_ylabel("held-out loss (McMaster; 1 = unedited)")
    right.set_title("The shipped editor's learning curve", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def describe_editor(model: str | None) -> dict:
    """The editor measured: file, digest, size, and its training record (with the curve)."""
    from icm.preedit.api import describe_model, get_editor

    record = describe_model(model)
    record["curve"] = get_editor(model)[1].trained.get("curve", [])
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="proxy,classify,detect,overhead")
    parser.add_argument("--model", default=None, help="editor file (default: the shipped one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    args = parser.parse_args()
    names = [name.strip() for name in args.stages.split(",") if name.strip()]
    known = ("proxy", *stages(None), "overhead")
    if any(name not in known for name in names):
        print(f"unknown stage in {args.stages!r}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if not args.kodak.is_dir():
        print(f"{args.kodak}: no such folder (Kodak lives in ../shared/data/kodak)",
              file=sys.stderr)
        return 2
    out = HERE / "results" / "preedit.json"
    saved = json.loads(out.read_text()) if out.exists() else {"stages": {}}
    saved["model"] = describe_editor(args.model)
    for name in names:
        if name == "proxy":
            saved["proxy"] = measure_proxy(args.kodak)
        elif name == "overhead":
            saved["overhead"] = measure_overhead(args.kodak, args.model)
        else:
            result = run_stage(name, stages(args.model)[name], args.runs, args.kodak,
                               args.workers, prefix="preedit")
            print_table(result)
            saved["stages"][name] = result
        saved.update(command="python " + " ".join(sys.argv), platform=platform.platform())
        write_atomic(out, json.dumps(saved, indent=1, default=str).encode())
        plot(saved, out.with_suffix(".png"))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
