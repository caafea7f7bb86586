"""Fuzz the decoder with hostile files: family x outcome counts, and every failing case.

The families and the judgement are in ``tests/hostile_cases.py`` (splices of every codec's
payload, truncations, size lies, fields naming paths, format lies, edited ``icm-lic``
streams). Each case is decoded by the real ``icm decode FILE -o out.png`` in a fresh process
with a memory limit and a timeout (``--no-subprocess``: in this process, except the cases that
declare huge pictures). Prints a table; writes ``benchmarks/results/fuzz_decode.json`` with
the exact command and every case's outcome.

    python benchmarks/fuzz_decode.py [--cases-per-family 200] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.hostile_cases

from tests.hostile_cases import (  # noqa: E402
    FAMILIES,
    Canary,
    cases,
    failures_text,
    fuzzed_codecs,
    results_json,
    run_cases,
    summary_table,
)

from icm.fileio import write_atomic  # noqa: E402


def progress(done: int, total: int) -> None:
    print(f"\r{done}/{total} cases", end="", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases-per-family", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default="", help="comma-separated (default: all)")
    parser.add_argument("--codecs", default="", help="comma-separated (default: all that "
                        "encode here, CompressAI's downloaded zoo excepted)")
    parser.add_argument("--subprocess", action=argparse.BooleanOptionalAction, default=True,
                        help="decode each case with the real command in a fresh process")
    parser.add_argument("--workers", type=int, default=2, help="concurrent decode processes")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per decode")
    parser.add_argument("--memory-gb", type=float, default=2.5,
                        help="data-size limit per decode (RLIMIT_DATA)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_decode.json")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f] or list(FAMILIES)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        print(f"unknown families {', '.join(sorted(unknown))}; known: {', '.join(FAMILIES)}",
              file=sys.stderr)
        return 2
    wanted = [c for c in args.codecs.split(",") if c] or None
    codecs = fuzzed_codecs(wanted)
    if not codecs:
        print("no codec encodes here", file=sys.stderr)
        return 2

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="icm-fuzz-") as workdir:
        canary = Canary(Path(workdir), args.seed)
        todo = [case for family in families
                for case in cases(family, args.cases_per_family, args.seed, canary, codecs)]
        made = time.perf_counter() - started
        print(f"{len(todo)} cases over {len(codecs)} codecs ({made:.0f} s to make); "
              f"canary reads seen by atime: {canary.atime_works}", file=sys.stderr)
        results = run_cases(todo, canary, in_process=not args.subprocess,
                            workers=args.workers, timeout=args.timeout,
                            memory_gb=args.memory_gb, progress=progress)
        print(file=sys.stderr)
    wall = time.perf_counter() - started

    print(summary_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\n{len(failed)} failing cases:")
        print(failures_text(failed, limit=60))
    report = results_json(
        results,
        what="decoder fuzzing: hostile files per family, each decode's outcome against what "
             "its family allows (tests/hostile_cases.py)",
        command="python " + " ".join(sys.argv),
        seed=args.seed,
        cases_per_family=args.cases_per_family,
        runner="subprocess" if args.subprocess else "in-process (risky cases in subprocesses)",
        timeout_s=args.timeout,
        memory_gb=args.memory_gb,
        codecs=list(codecs),
        machine={"platform": platform.platform(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        wall_s=round(wall, 1),
    )
    write_atomic(args.out, report)
    print(f"\nwrote {args.out} ({len(results)} cases, {len(failed)} failing, {wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
