"""Compress for the machine: BD-rate of machine-aware coding vs the same codec used plainly.

Runs of the real ``icm bench`` machinery (resumable: re-running only finishes what is missing),
each point a standard bitstream whose every byte counts:

* ``strength``: 8 Kodak photos x {hevc-kvazaar (delta-QP), jpeg (prefilter)} x importance at
  several strengths x classify -> the default strengths;
* ``classify``: Kodak x {hevc-kvazaar, vvc, avif, jpeg} x {plain, +saliency, +sensitivity,
  +fit=classify, +fit=classify+sensitivity} x classify:efficientnet-lite0;
* ``detect``: Kodak x the same codecs x {plain, +saliency, +fit=detect, +fit=detect+saliency}
  x detect:nanodet (not differentiable: saliency is its map);
* ``ocr``: the rendered documents x the same codecs x {plain, +text, +fit=ocr, +fit=ocr+text}
  x ocr:rapidocr.

HEVC is kvazaar, the encoder that takes delta-QP maps; the other codecs get the prefilter.
Every variant is compared with the same codec plain: BD-rate on the machine's primary fidelity
with a 90% bootstrap interval over images, the human-quality cost (BD-PSNR at equal bits, dB),
and the encode-time overhead (median encode time incl. maps and models / plain's). Writes
``benchmarks/results/machine_aware.json``; reports land in each run folder.

    python benchmarks/machine_aware.py [--stages strength,classify,detect,ocr,overhead]

``overhead`` times ``encode_image`` in-process (4 Kodak photos, best of 3, models warm): the
encode-time cost of each tool on a quiet machine, which ledger times (taken by workers under
whatever load the run had) cannot give.
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
from icm.codecs import parse_point
from icm.fileio import write_atomic
from icm.metrics import bd_metric

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"

# Ten levels per codec, wide enough that fitted (much smaller) images overlap the plain curve.
LEVELS = {
    "hevc-kvazaar": [f"qp{q}" for q in range(22, 52, 3)],
    "vvc": [f"qp{q}" for q in range(24, 60, 4)] + ["qp60"],
    "avif": [f"q{q}" for q in (2, 6, 10, 16, 24, 33, 42, 52, 64, 78)],
    "jpeg": [f"q{q}" for q in (3, 5, 8, 12, 18, 26, 36, 50, 68, 85)],
}
CODECS = tuple(LEVELS)
CLASSIFY = "classify:efficientnet-lite0"
# top-1 agreement over 24 photos moves in 4% steps; top-5 overlap in 0.8% steps
SECONDARY = {CLASSIFY: ("top5_overlap",)}
STAGES = {
    "strength": {
        "machines": (CLASSIFY,),
        "codecs": ("hevc-kvazaar", "jpeg"),
        "tools": ("", "+saliency~3", "+saliency~6", "+saliency~10", "+sensitivity~3",
                  "+sensitivity~6", "+sensitivity~10"),
        "strength_tools": {"jpeg": ("", "+saliency~1", "+saliency~2", "+saliency~4",
                                    "+sensitivity~1", "+sensitivity~2", "+sensitivity~4")},
        "limit": 8,
    },
    "classify": {
        "machines": (CLASSIFY,),
        "tools": ("", "+saliency", "+sensitivity", "+fit=classify",
                  "+fit=classify+sensitivity"),
    },
    "detect": {
        "machines": ("detect:nanodet",),
        "tools": ("", "+saliency", "+fit=detect", "+fit=detect+saliency"),
    },
    "ocr": {
        "machines": ("ocr:rapidocr",),
        "images": "samples",
        "tools": ("", "+text", "+fit=ocr", "+fit=ocr+text"),
    },
}


def points_for(stage: dict) -> tuple[str, ...]:
    points = []
    for codec in stage.get("codecs", CODECS):
        tools = stage.get("strength_tools", {}).get(codec, stage["tools"])
        points += [f"{codec}{tool}@{level}" for tool in tools for level in LEVELS[codec]]
    return tuple(points)


def run_stage(name: str, stage: dict, runs: Path, kodak: Path, workers: int) -> dict:
    config = BenchConfig(
        images=stage.get("images", str(kodak)), codecs=points_for(stage),
        machines=stage["machines"], out=runs / f"machine_aware_{name}", workers=workers,
        limit=stage.get("limit", 0), anchor=stage.get("codecs", CODECS)[0],
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
        "variants": compare_variants(rows),
        "report": str(config.out / "report" / "report.html"),
    }


def compare_variants(rows: list[dict]) -> list[dict]:
    """Each variant vs its own codec plain: BD-rate on the machine's primary fidelity (and on
    a smoother secondary score where the primary moves in whole-image steps), BD-PSNR, and the
    encode-time ratio."""
    results = []
    for codec in dict.fromkeys(parse_point(r["point"]).codec for r in rows):
        family = [r for r in rows if parse_point(r["point"]).codec == codec]
        for machine in dict.fromkeys(r["machine"] for r in family):
            mine = [r for r in family if r["machine"] == machine]
            for metric in (None, *SECONDARY.get(machine, ())):
                results += [_compare(entry, mine, codec, metric)
                            for entry in bd_table(mine, codec, metric=metric)]
    return results


def _compare(entry, rows: list[dict], codec: str, metric: str | None) -> dict:
    variant = [r for r in rows if r["codec"] == entry.codec]
    plain = [r for r in rows if r["codec"] == codec]
    return {
        "machine": entry.machine, "metric": metric or rows[0]["primary_name"], "codec": codec,
        "variant": entry.codec, "bd_rate": entry.bd_rate, "bd_rate_ci": entry.bd_rate_ci,
        "bd_fidelity": entry.bd_metric, "bd_fidelity_ci": entry.bd_metric_ci,
        "bd_psnr_db": _bd_psnr(plain, variant), "encode_time_ratio": _time_ratio(plain, variant),
        "notes": entry.notes[:3],
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
    """PSNR the variant gives up (negative) at equal bits: the cost to human viewers."""
    if not plain or not variant:
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


def measure_overhead(kodak: Path, images: int = 4, repeats: int = 3) -> list[dict]:
    """Encode time of each variant vs plain, in this process on a quiet machine: the minimum
    of ``repeats`` runs of ``encode_image`` (map, applier and encode; models warm) per image,
    then the median over images. Ledger times mix runs made under different loads."""
    from icm.codecs import get_codec
    from icm.coding import encode_image
    from icm.image import load_image

    photos = [load_image(path) for path in sorted(kodak.glob("*.png"))[:images]]
    variants = ("", "+saliency", "+sensitivity", "+fit=classify", "+fit=classify+sensitivity",
                "+fit=detect+saliency")
    results = []
    for codec in CODECS:
        level = LEVELS[codec][len(LEVELS[codec]) // 2]
        get_codec(codec)
        medians = {}
        for tool in variants:
            point = parse_point(f"{codec}{tool}@{level}")
            encode_image(photos[0], point)  # warm: models load once per process
            per_image = []
            for photo in photos:
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    encode_image(photo, point)
                    runs.append((time.perf_counter() - start) * 1e3)
                per_image.append(min(runs))
            medians[tool] = statistics.median(per_image)
        for tool, ms in medians.items():
            results.append({"codec": codec, "variant": f"{codec}{tool}", "level": level,
                            "encode_ms": ms, "ratio": ms / medians[""]})
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
    print(f"{'machine':28} {'metric':13} {'variant':34} {'BD-rate [90% CI]':>24} "
          f"{'BD-PSNR':>8} {'time x':>7}  first note")
    for item in result["variants"]:
        rate = with_interval(item["bd_rate"], item["bd_rate_ci"], "{:+.1f}%")
        psnr = "n/a" if item["bd_psnr_db"] is None else f"{item['bd_psnr_db']:+.2f}"
        ratio = "n/a" if item["encode_time_ratio"] is None else f"{item['encode_time_ratio']:.2f}"
        note = (item["notes"] or [""])[0][:40]
        print(f"{item['machine']:28} {item['metric']:13} {item['variant']:34} {rate:>24} "
              f"{psnr:>8} {ratio:>7}  {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default="strength,classify,detect,ocr,overhead")
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
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
