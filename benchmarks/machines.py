"""How much does each codec hurt each machine? BD tables vs JPEG, timings, harness overhead.

Two runs of the real ``icm bench`` machinery, resumable (re-running only finishes what is
missing):

1. Kodak (../shared/data/kodak) x {jpeg, webp, avif, jxl, hevc, vvc} x their ladders x
   {classify:efficientnet-lite0, detect:nanodet};
2. the embedded rendered documents x the same codecs at common bpp targets x {ocr:rapidocr},
   with ground truth.

Prints the BD-rate (bits saved at equal fidelity; negative = fewer bits than JPEG) and
BD-fidelity tables per machine, wall time, and the harness overhead share, and writes
``benchmarks/results/machines.json``. Reports land in each run folder.

    python benchmarks/machines.py [--workers 2] [--runs benchmarks/runs]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.analysis import bd_table, curves, pristine_accuracy, stability, with_interval
from icm.bench.ledger import Ledger
from icm.bench.report import write_report
from icm.fileio import write_atomic

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
CODECS = ("jpeg", "webp", "avif", "jxl", "hevc", "vvc")
DOCUMENT_BPP = (0.4, 0.55, 0.75, 1.0, 1.4, 2.0)  # all above every codec's smallest file


def run(name: str, config: BenchConfig) -> dict:
    start = time.perf_counter()
    outcome = run_bench(config, _progress(name))
    print(file=sys.stderr)
    write_report(config.out, anchor="jpeg")
    with Ledger(ledger_path(config.out)) as ledger:
        rows, pristine, runs = ledger.rows(), ledger.rows("pristine"), ledger.rows("runs")
    productive = [r for r in runs if r["status"] == "finished" and r["rows_added"]]
    last = productive[-1] if productive else None
    share = None
    if last and last["workers"]:
        share = max(0.0, 1 - last["work_s"] / (last["wall_s"] * last["workers"]))
    return {
        "name": name,
        "config": config.to_json(),
        "rows": outcome.rows_total,
        "wall_s_this_call": time.perf_counter() - start,
        "wall_s_of_run_that_computed": last["wall_s"] if last else None,
        "work_s": last["work_s"] if last else None,
        "workers": last["workers"] if last else None,
        "harness_share": share,
        "bd": [vars(entry) for entry in bd_table(rows, "jpeg")],
        "curves": {machine: {codec: [vars(p) for p in points]
                             for codec, points in curves(rows, machine).items()}
                   for machine in dict.fromkeys(r["machine"] for r in rows)},
        "stability": stability(pristine),
        "pristine_accuracy": pristine_accuracy(pristine),
        "report": str(Path(config.out) / "report" / "report.html"),
    }


def _progress(name: str):
    def show(stage: str, done: int, total: int) -> None:
        print(f"\r{name}: {stage} {done}/{total}   ", end="", file=sys.stderr)
    return show


def print_tables(results: list[dict]) -> None:
    for result in results:
        print(f"\n## {result['name']}: {result['rows']} ledger rows; run that computed them: "
              f"{result['wall_s_of_run_that_computed'] or 0:.0f} s wall with "
              f"{result['workers']} workers; harness overhead "
              + ("n/a" if result["harness_share"] is None else f"{result['harness_share']:.1%}"))
        print(f"{'machine':28} {'codec':6} {'BD-rate [90% CI]':>26} "
              f"{'BD-fidelity [90% CI]':>28}  first note")
        for entry in result["bd"]:
            rate = with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}%")
            fid = with_interval(entry["bd_metric"], entry["bd_metric_ci"], "{:+.4f}")
            notes = (entry["notes"] or [""])[0][:50]
            print(f"{entry['machine']:28} {entry['codec']:6} {rate:>26} {fid:>28}  {notes}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=HERE / "runs")
    parser.add_argument("--kodak", type=Path, default=KODAK)
    args = parser.parse_args()
    if not args.kodak.is_dir():
        print(f"{args.kodak}: no such folder (Kodak lives in ../shared/data/kodak)",
              file=sys.stderr)
        return 2
    results = [
        run("kodak", BenchConfig(images=str(args.kodak), codecs=CODECS,
                                 machines=("classify:efficientnet-lite0", "detect:nanodet"),
                                 out=args.runs / "kodak", workers=args.workers)),
        # Documents compress to very different rates per codec at the same ladder step, so
        # they are coded to common bpp targets: every codec's curve then spans the same rates.
        run("documents", BenchConfig(images="samples", codecs=CODECS, bpp=DOCUMENT_BPP,
                                     machines=("ocr:rapidocr",),
                                     out=args.runs / "documents", workers=args.workers)),
    ]
    print_tables(results)
    report = {"command": "python " + " ".join(sys.argv), "platform": platform.platform(),
              "results": results}
    out = HERE / "results" / "machines.json"
    write_atomic(out, json.dumps(report, indent=1, default=str).encode())
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
