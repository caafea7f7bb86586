"""Does the embedded default answer its question, and in how long?

Runs ``icm bench`` with no flags (the README's main job: bundled photos as 224 px views,
rendered documents, the default codecs at their default ladders, the default machines) from
scratch in a fresh run folder, as its own process timed whole (interpreter, model loading and
the report included), then reads its BD table: the share of machine x codec entries whose
BD-rate has a 90% interval that excludes 0 (the goal is at least 75%, in under 10 minutes on
two cores). Prints the table and writes ``benchmarks/results/default_bench.json``.

    python benchmarks/default_bench.py [--runs DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from icm.bench.analysis import with_interval
from icm.fileio import write_atomic

HERE = Path(__file__).resolve().parent
GOAL_SHARE = 0.75
GOAL_WALL_S = 600.0


def run_default(out: Path) -> tuple[dict, float, float]:
    """The summary ``icm bench --json`` prints, the whole process's wall seconds and the peak
    memory of its largest process, in GB."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "icm.cli.main", "bench", "--json"],
                            cwd=out, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"icm bench failed ({result.returncode}): {result.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(result.stdout), wall, peak_kb / 1e6


def excludes_zero(entry: dict) -> bool:
    low_high = entry["bd_rate_ci"]
    return low_high is not None and (low_high[1] < 0 or low_high[0] > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "default")
    parser.add_argument("--keep", action="store_true", help="Keep the run folder.")
    args = parser.parse_args()

    summary, wall, peak_gb = run_default(args.runs)
    entries = summary["bd"]
    clear = [entry for entry in entries if excludes_zero(entry)]
    share = len(clear) / len(entries) if entries else 0.0
    print(f"| machine | codec | BD-rate % vs {entries[0]['anchor'] if entries else '-'} "
          "[90% CI] | interval excludes 0 |")
    print("| --- | --- | ---: | --- |")
    for entry in entries:
        rate = with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}")
        print(f"| {entry['machine']} | {entry['codec']} | {rate} | "
              f"{'yes' if excludes_zero(entry) else 'no'} |")
    print(f"\n{len(clear)} of {len(entries)} entries ({share:.0%}) have an interval that "
          f"excludes 0 (goal {GOAL_SHARE:.0%}); {wall:.0f} s for the whole process (goal "
          f"{GOAL_WALL_S:.0f} s), {summary['wall_s']:.0f} s of it the grid; "
          f"{summary['rows']} rows; peak {peak_gb:.2f} GB")
    for sentence in summary.get("findings", []):
        print(f"- {sentence}")
    record = {
        "command": "icm bench",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "process_wall_s": round(wall, 1),
        "grid_wall_s": round(summary["wall_s"], 1),
        "peak_rss_gb": round(peak_gb, 2),
        "rows": summary["rows"],
        "workers": summary["workers"],
        "entries": len(entries),
        "entries_excluding_zero": len(clear),
        "share_excluding_zero": round(share, 3),
        "goals": {"share": GOAL_SHARE, "wall_s": GOAL_WALL_S,
                  "met": share >= GOAL_SHARE and wall <= GOAL_WALL_S},
        "findings": summary.get("findings", []),
        "bd": entries,
    }
    path = HERE / "results" / "default_bench.json"
    write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())
    print(f"\nwrote {path}")
    if not args.keep:
        shutil.rmtree(args.runs, ignore_errors=True)


if __name__ == "__main__":
    main()
