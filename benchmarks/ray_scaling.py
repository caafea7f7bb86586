"""How fast does ``icm bench`` go on Ray, and what would a million images cost?

Runs one grid (default: the embedded default run, ``icm bench`` with no flags) from scratch
under the local executor and a private Ray instance, with 1 and 2 workers each, each as its
own ``icm bench`` process timed whole (interpreter, model loading and Ray start-up included).
Checks that every ledger is the same apart from timings, then prints throughput (ledger rows,
i.e. image x codec point x machine, per second) and scaling efficiency, and extrapolates from
the measured per-item costs to a one-million-image grid on N workers. Writes
``benchmarks/results/ray_scaling.json``.

    python benchmarks/ray_scaling.py [--limit N] [--codecs jpeg,webp] [--runs DIR]
        [--cores-per-worker 8] [--gpu-speedups 10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from icm.bench import ledger_path
from icm.bench.ledger import Ledger
from icm.fileio import write_atomic

HERE = Path(__file__).resolve().parent
CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))
MILLION = 1_000_000


def run_one(executor: str, workers: int, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "icm.cli.main", "bench", "--out", str(out), "--executor",
               executor, "--workers", str(workers), "--no-report", "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{executor} x{workers} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    return {"executor": executor, "workers": workers, "wall_s": wall,
            "rows": summary["rows"], "rows_per_s": summary["rows"] / wall}


def per_item_costs(out: Path) -> dict:
    """Mean work per bitstream (encode + decode) and per row (prediction), per image."""
    with Ledger(ledger_path(out)) as ledger:
        bitstreams = ledger.rows("bitstreams")
        results = ledger.rows("results")
        images = ledger.count("images")
    code_ms = sum(b["encode_ms"] + b["decode_ms"] for b in bitstreams)
    predict: dict[str, float] = {}
    for row in results:
        predict[row["machine"]] = predict.get(row["machine"], 0.0) + row["predict_ms"]
    return {
        "images": images, "bitstreams": len(bitstreams), "rows": len(results),
        "code_s_per_image": code_ms / 1e3 / images,
        "predict_s_per_image": {m: ms / 1e3 / images for m, ms in predict.items()},
        "rows_per_image": len(results) / images,
        "median_encode_ms": statistics.median(b["encode_ms"] for b in bitstreams),
    }


def million_image_estimate(costs: dict, cores: int, speedups: tuple[float, ...]) -> list[dict]:
    """Hours for 1M images of the same grid on N workers of ``cores`` CPU cores each.

    CPU-only: coding and reading share the cores, at the per-core costs measured here.
    With an accelerator: coding stays on the cores while the machines run S times faster than
    one core did here (S is an assumption: no GPU was measured); coding tasks and machine
    actors overlap, so the slower side sets the pace. Harness overhead is not included.
    """
    code = costs["code_s_per_image"]
    predict = sum(costs["predict_s_per_image"].values())
    estimates = []
    for workers in (1, 8, 32, 128):
        row = {"workers": workers,
               "cpu_only_h": MILLION * (code + predict) / (workers * cores) / 3600}
        for speedup in speedups:
            row[f"gpu_x{speedup:g}_h"] = MILLION * max(code / (workers * cores),
                                                       predict / (workers * speedup)) / 3600
        estimates.append(row)
    return estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--codecs", default="", help="codecs (default: the default run's)")
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "ray_scaling")
    parser.add_argument("--cores-per-worker", type=int, default=8)
    parser.add_argument("--gpu-speedups", default="10,50",
                        help="assumed machine speed on a worker's GPU vs one CPU core here")
    args = parser.parse_args()
    extra = (["--limit", str(args.limit)] if args.limit else []) + (
        ["--codecs", args.codecs] if args.codecs else [])

    runs = []
    for executor, workers in CONFIGS:
        out = args.runs / f"{executor}-{workers}"
        runs.append({**run_one(executor, workers, out, extra), "out": str(out)})
        print(f"{executor:>5} x{workers}: {runs[-1]['rows']} rows in {runs[-1]['wall_s']:.1f} s "
              f"= {runs[-1]['rows_per_s']:.2f} rows/s", flush=True)

    snapshots = []
    for run in runs:
        with Ledger(ledger_path(Path(run["out"]))) as ledger:
            snapshots.append(ledger.snapshot())
    identical = all(snapshot == snapshots[0] for snapshot in snapshots)
    speed = {(r["executor"], r["workers"]): r["rows_per_s"] for r in runs}
    efficiency = {name: speed[(name, 2)] / (2 * speed[(name, 1)]) for name in ("local", "ray")}
    # Per-item costs from Ray x1: there every task and actor runs single-threaded (per core).
    costs = per_item_costs(Path(next(r["out"] for r in runs if r["executor"] == "ray")))
    speedups = tuple(float(x) for x in args.gpu_speedups.split(","))
    estimate = million_image_estimate(costs, args.cores_per_worker, speedups)

    print(f"\nledgers identical apart from timings: {identical}")
    print("\n| executor | workers | wall s | rows | rows/s | vs local x1 |")
    print("|---|---|---|---|---|---|")
    base = speed[("local", 1)]
    for run in runs:
        print(f"| {run['executor']} | {run['workers']} | {run['wall_s']:.1f} | {run['rows']} | "
              f"{run['rows_per_s']:.2f} | {run['rows_per_s'] / base:.2f}x |")
    print(f"\nscaling efficiency 1 -> 2 workers: local {efficiency['local']:.0%}, "
          f"ray {efficiency['ray']:.0%}")
    print(f"\nper image: coding {costs['code_s_per_image']:.2f} s (CPU), reading "
          + ", ".join(f"{m} {s:.2f} s" for m, s in costs["predict_s_per_image"].items())
          + f"; {costs['rows_per_image']:.0f} rows")
    columns = [key for key in estimate[0] if key != "workers"]
    print(f"\n1M images, hours, on N workers of {args.cores_per_worker} cores "
          f"(gpu_xS: machines S x one core here, assumed):")
    print("| workers | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for row in estimate:
        print(f"| {row['workers']} | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |")

    result = {"runs": runs, "identical_ledgers": identical, "efficiency": efficiency,
              "costs": costs, "million_images": estimate, "args": {
                  "limit": args.limit, "codecs": args.codecs,
                  "cores_per_worker": args.cores_per_worker, "gpu_speedups": speedups},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_atomic(HERE / "results" / "ray_scaling.json",
                 (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
