"""Compress for the machine: ``+for=M`` against the same codec plain and with ``+fit=M`` only.

Runs of the real ``icm bench`` machinery (resumable: re-running only finishes what is missing),
each point a standard bitstream whose every byte counts:

* ``classify``: Kodak (24) x {hevc-kvazaar, av1, jpeg, vvc} x {plain, +fit=classify,
  +for=classify} x classify:efficientnet-lite0 (probability overlap, top-5 overlap, KL);
* ``detect``: Kodak x the same codecs x {plain, +fit=detect, +for=detect} x detect:nanodet
  (mAP@0.5 against the pristine detections);
* ``ocr``: the rendered documents x the same codecs x {plain, +fit=ocr, +for=ocr} x
  ocr:rapidocr (text agreement; the documents' truth gives CER in the report).

HEVC is kvazaar and JPEG is Pillow's libjpeg-turbo, both with per-block control (kvazaar's ROI
QP map; JPEG's per-block coefficient dropping); AV1 (SVT-AV1) and VVC (vvenc) expose no
per-block QP in the bundled builds, so ``for`` reaches them as a prefilter. Every ``for``
variant is compared with (a) the codec plain and (b) the codec with ``+fit`` only: BD-rate at
equal machine fidelity with a 90% bootstrap interval over photos, the human cost (BD-PSNR at
full resolution, vs plain, dB) and the encode-time ratio vs plain. Writes
``benchmarks/results/machine_aware.json`` and ``machine_aware.png``; reports land in each run
folder.

    python benchmarks/machine_aware.py [--stages classify,detect,ocr,overhead]

The defaults of ``for`` were chosen on CBSD68, never on these photos: ``for_tuning.py``.

``overhead`` times ``encode_image`` in-process (4 Kodak photos, every level of the ladder in
turn as a benchmark encodes them, models warm): what ``for`` costs per encode on a quiet
machine, which ledger times (taken by workers under whatever load the run had) cannot give.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.analysis import bd_table, with_interval
from icm.bench.ledger import Ledger
from icm.bench.report import write_report
from icm.fileio import write_atomic
from icm.metrics import bd_metric
from icm.pipeline import parse_point

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
KODAK = SHARED / "kodak"

# Ten levels per codec, wide enough that fitted (much smaller) images overlap the plain curve.
LEVELS = {
    "hevc-kvazaar": [f"qp{q}" for q in range(24, 52, 3)] + ["qp51"],
    "av1": [f"qp{q}" for q in (20, 26, 32, 38, 43, 48, 52, 56, 60, 63)],
    "jpeg": [f"q{q}" for q in (3, 5, 8, 12, 18, 26, 36, 50, 68, 85)],
    "vvc": [f"qp{q}" for q in range(24, 60, 4)] + ["qp60"],
}
CODECS = tuple(LEVELS)
CLASSIFY = "classify:efficientnet-lite0"
#: beside the primary: top-5 overlap and KL (negated: BD curves rise with rate)
SECONDARY = {CLASSIFY: ("top5_overlap", "-kl")}
STAGES = {
    "classify": {"machines": (CLASSIFY,), "tools": ("", "+fit=classify", "+for=classify")},
    "detect": {"machines": ("detect:nanodet",), "tools": ("", "+fit=detect", "+for=detect")},
    "ocr": {"machines": ("ocr:rapidocr",), "images": "samples",
            "tools": ("", "+fit=ocr", "+for=ocr")},
}


def points_for(stage: dict) -> tuple[str, ...]:
    return tuple(f"{codec}{tool}@{level}" for codec in stage.get("codecs", CODECS)
                 for tool in stage["tools"] for level in LEVELS[codec])


def run_stage(name: str, stage: dict, runs: Path, kodak: Path, workers: int,
              prefix: str = "machine_aware") -> dict:
    codecs = stage.get("codecs", CODECS)
    config = BenchConfig(
        images=stage.get("images", str(kodak)), codecs=points_for(stage), views=1,
        machines=stage["machines"], out=runs / f"{prefix}_{name}", workers=workers,
        anchor=codecs[0],
    )
    start = time.perf_counter()
    outcome = run_bench(config, _progress(name))
    print(file=sys.stderr)
    write_report(config.out, anchor=config.anchor)
    with Ledger(ledger_path(config.out)) as ledger:
        rows = ledger.rows()
    return {
        "stage": name,
        "config": config.to_json(),
        "rows": outcome.rows_total,
        "wall_s_this_call": time.perf_counter() - start,
        "variants": compare_variants(rows, stage),
        "report": str(config.out / "report" / "report.html"),
    }


def compare_variants(rows: list[dict], stage: dict) -> list[dict]:
    """Every variant with tools against each simpler curve of its codec (plain, ``+fit``):
    BD-rate on the machine's primary fidelity and on its secondary scores, BD-PSNR (vs
    plain) and the encode-time ratio (vs plain)."""
    results = []
    tools = stage["tools"]
    for codec in stage.get("codecs", CODECS):
        family = [r for r in rows if parse_point(r["point"]).codec == codec]
        plain = [r for r in family if r["codec"] == codec]
        for machine in dict.fromkeys(r["machine"] for r in family):
            mine = [r for r in family if r["machine"] == machine]
            for position, anchor_tool in enumerate(tools):
                anchor = codec + anchor_tool
                later = {codec + tool for tool in tools[position + 1:]}
                for metric in (None, *SECONDARY.get(machine, ())):
                    entries = [e for e in bd_table(mine, anchor, metric=metric)
                               if e.codec in later]
                    results += [_compare(e, mine, plain, metric) for e in entries]
    return results


def _compare(entry, rows: list[dict], plain: list[dict], metric: str | None) -> dict:
    variant = [r for r in rows if r["codec"] == entry.codec]
    return {
        "machine": entry.machine, "metric": metric or rows[0]["primary_name"],
        "variant": entry.codec, "against": entry.anchor, "bd_rate": entry.bd_rate,
        "bd_rate_ci": entry.bd_rate_ci, "bd_fidelity": entry.bd_metric,
        "bd_fidelity_ci": entry.bd_metric_ci, "bd_psnr_db": _bd_psnr(plain, variant),
        "encode_time_ratio": _time_ratio(plain, variant), "notes": entry.notes[:3],
    }


def _mean_curve(rows: list[dict]) -> tuple[list[float], list[float]]:
    """Mean bpp and PSNR per point over the images every point of the curve has."""
    by_point: dict[str, dict[str, tuple[float, float]]] = {}
    for row in rows:
        by_point.setdefault(row["point"], {})[row["image_sha"]] = (row["bpp"], row["psnr"])
    common = set.intersection(*(set(v) for v in by_point.values())) if by_point else set()
    curve = sorted((statistics.fmean(v[s][0] for s in common),
                    statistics.fmean(v[s][1] for s in common)) for v in by_point.values())
    return [c[0] for c in curve], [c[1] for c in curve]


def _bd_psnr(plain: list[dict], variant: list[dict]) -> float | None:
    """PSNR the variant gives up (negative) at equal bits, at full resolution: the cost to
    human viewers."""
    if not plain or not variant or plain is variant:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(bd_metric(*_mean_curve(plain), *_mean_curve(variant), method="pchip"))
        except ValueError:
            return None


def _time_ratio(plain: list[dict], variant: list[dict]) -> float | None:
    once = {}  # one encode time per (image, point), not one per machine row
    for label, rows in (("plain", plain), ("variant", variant)):
        times = {(r["image_sha"], r["point"]): r["encode_ms"] for r in rows}
        once[label] = statistics.median(times.values()) if times else None
    if not once["plain"] or once["variant"] is None:
        return None
    return once["variant"] / once["plain"]


def measure_overhead(kodak: Path, images: int = 4) -> list[dict]:
    """Encode time per image of each variant vs plain, in this process on a quiet machine:
    every level of the codec's ladder encoded in turn, as a benchmark or a rate search does
    (the ``for`` tool's Fisher map is computed on the first level and kept), total per image,
    then the median over images. Models are warmed on another photo first."""
    from icm.codecs import get_codec
    from icm.image import load_image
    from icm.pipeline import encode_image

    photos = [load_image(path) for path in sorted(kodak.glob("*.png"))[: images + 1]]
    warm, photos = photos[0], photos[1:]
    results = []
    for codec in CODECS:
        get_codec(codec)
        levels = LEVELS[codec][1::3]
        medians = {}
        for tool in ("", "+fit=classify", "+for=classify"):
            points = [parse_point(f"{codec}{tool}@{level}") for level in levels]
            encode_image(warm, points[0])  # models load once per process
            per_image = []
            for photo in photos:
                start = time.perf_counter()
                for point in points:
                    encode_image(photo, point)
                per_image.append((time.perf_counter() - start) * 1e3 / len(points))
            medians[tool] = statistics.median(per_image)
        for tool, ms in medians.items():
            results.append({"codec": codec, "variant": f"{codec}{tool}", "levels": levels,
                            "encode_ms_per_level": ms, "ratio": ms / medians[""]})
        print(f"{codec:14} " + "  ".join(f"{t or 'plain'} {m:.0f} ms ({m / medians['']:.2f}x)"
                                          for t, m in medians.items()))
    return results


def _progress(name: str):
    def show(stage: str, done: int, total: int) -> None:
        print(f"\r{name}: {stage} {done}/{total}   ", end="", file=sys.stderr)
    return show


def print_table(result: dict) -> None:
    print(f"\n## {result['stage']}: {result['rows']} ledger rows "
          f"({result['wall_s_this_call']:.0f} s this call)")
    print(f"{'metric':13} {'variant':28} {'against':22} {'BD-rate [90% CI]':>24} "
          f"{'BD-PSNR':>8} {'time x':>7}  first note")
    for item in result["variants"]:
        rate = with_interval(item["bd_rate"], item["bd_rate_ci"], "{:+.1f}%")
        psnr = "n/a" if item["bd_psnr_db"] is None else f"{item['bd_psnr_db']:+.2f}"
        ratio = "n/a" if item["encode_time_ratio"] is None else f"{item['encode_time_ratio']:.2f}"
        note = (item["notes"] or [""])[0][:40]
        print(f"{item['metric']:13} {item['variant']:28} {item['against']:22} {rate:>24} "
              f"{psnr:>8} {ratio:>7}  {note}")


def plot(saved: dict, path: Path) -> None:
    """BD-rate of ``for`` against ``+fit`` (and plain), per machine metric and codec, with
    the intervals: the figure a reader looks at first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(saved["stages"].items())
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for axis, (name, stage) in zip(axes[0], panels, strict=True):
        items = [v for v in stage["variants"] if "+for=" in v["variant"]]
        labels = []
        for index, item in enumerate(items):
            low, high = item["bd_rate_ci"] or (item["bd_rate"], item["bd_rate"])
            if item["bd_rate"] is None:
                continue
            colour = "tab:blue" if "+fit=" in item["against"] else "tab:grey"
            axis.errorbar(item["bd_rate"], index, xerr=[[item["bd_rate"] - low],
                          [high - item["bd_rate"]]], fmt="o", color=colour, capsize=3)
            vs = "fit" if "+fit=" in item["against"] else "plain"
            labels.append((index, f"{item['variant'].split('+')[0]} {item['metric']} vs {vs}"))
        axis.set_yticks([i for i, _ in labels], [t for _, t in labels], fontsize=7)
        axis.axvline(0, color="black", linewidth=0.8)
        axis.axvline(-25, color="tab:red", linewidth=0.8, linestyle="--")
        axis.set_xlabel("BD-rate of +for (%), 90% interval over photos")
        axis.set_title(f"{name}: +for vs +fit (blue) and plain (grey)", fontsize=9)
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="classify,detect,ocr,overhead")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    args = parser.parse_args()
    names = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*STAGES, "overhead")]
    if unknown:
        print(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}",
              file=sys.stderr)
        return 2
    if not args.kodak.is_dir() and any("images" not in STAGES.get(n, {}) for n in names):
        print(f"{args.kodak}: no such folder (Kodak lives in ../shared/data/kodak)",
              file=sys.stderr)
        return 2
    out = HERE / "results" / "machine_aware.json"
    saved = json.loads(out.read_text()) if out.exists() else {"stages": {}}
    for name in names:
        if name == "overhead":
            saved["overhead"] = measure_overhead(args.kodak)
        else:
            result = run_stage(name, STAGES[name], args.runs, args.kodak, args.workers)
            print_table(result)
            saved["stages"][name] = result
        saved.update(command="python " + " ".join(sys.argv), platform=platform.platform())
        write_atomic(out, json.dumps(saved, indent=1, default=str).encode())
        plot(saved, out.with_suffix(".png"))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
