"""Does a codec-conditional adapter close the generalization gap? (CompressVLMBench, offline)

EfficientNet-Lite0 adapters are trained by feature distillation on CBSD68 + McMaster
(../shared/data) and tested on Kodak through the real ``icm bench`` machinery:

* ``conditioned``: told the codec and bpp bucket, trained on JPEG, HEVC and AVIF;
* ``unconditioned``: one adaptation for all codecs, same data;
* ``held-out``: conditioned, trained on JPEG and HEVC only; AVIF is unseen (it gets the
  "unknown" condition, trained by condition dropout).

Prints, per codec, the top-1 agreement with the pristine prediction at each level before and
after each adapter, the BD-metric gain (top-1 at equal bpp), and the share of the total gap
that is generalization gap (recovered by the adapter). Writes
``benchmarks/results/adapters.json``; the bench report (with the gap plot) lands in the run.

    python benchmarks/adapters.py [--steps 250] [--kl 0] [--views 1] [--workers 2]
        [--runs DIR --tag -x]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

from icm.adapt import TrainConfig, train_adapter
from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.analysis import curves, gap_table, recovered_share, recovered_share_interval
from icm.bench.grid import with_adapters
from icm.bench.ledger import Ledger
from icm.bench.report import write_report
from icm.fileio import write_atomic
from icm.metrics import bd_metric

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
MACHINE = "classify:efficientnet-lite0"
TEST_LEVELS = {
    "jpeg": ("q3", "q5", "q8", "q12", "q20", "q35"),
    "hevc": ("qp50", "qp47", "qp44", "qp41", "qp37", "qp32"),
    "avif": ("q2", "q5", "q10", "q18", "q28", "q40"),
}
ADAPTERS = {
    "conditioned": {"codecs": ("jpeg", "hevc", "avif"), "conditioned": True},
    "unconditioned": {"codecs": ("jpeg", "hevc", "avif"), "conditioned": False},
    "held-out": {"codecs": ("jpeg", "hevc"), "conditioned": True},
}


def train_all(runs: Path, steps: int, kl_weight: float, names: list[str],
              views: int = 1) -> dict[str, dict]:
    listing = runs / "train.txt"
    paths = sorted(p for name in ("cbsd68", "mcmaster") for p in (SHARED / name).rglob("*")
                   if p.suffix.lower() in (".png", ".tif", ".tiff", ".bmp", ".jpg"))
    write_atomic(listing, "\n".join(str(p) for p in paths).encode())
    trained = {}
    for name in names:
        settings = ADAPTERS[name]
        out = runs / f"{name}.safetensors"
        start = time.perf_counter()
        if not out.exists():
            result = train_adapter(TrainConfig(
                machine=MACHINE, images=str(listing), out=out, steps=steps, batch=8,
                kl_weight=kl_weight, views=views, **settings), _progress(name))
            print(file=sys.stderr)
            losses = result.losses
            trained[name] = {"path": str(out), "train_s": time.perf_counter() - start,
                             "pairs": result.pairs, "first_loss": losses[0],
                             "last_loss_mean10": sum(losses[-10:]) / len(losses[-10:])}
        else:
            trained[name] = {"path": str(out), "train_s": None, "note": "reused"}
        trained[name].update(settings)
    return trained


def evaluate(runs: Path, kodak: Path, trained: dict[str, dict], workers: int) -> dict:
    points = tuple(f"{c}@{lv}" for c, levels in TEST_LEVELS.items() for lv in levels)
    adapters = [Path(t["path"]) for t in trained.values()]
    config = BenchConfig(images=str(kodak), codecs=points, out=runs / "kodak",
                         machines=with_adapters((MACHINE,), adapters), workers=workers)
    run_bench(config, _progress("kodak"))
    print(file=sys.stderr)
    write_report(config.out)
    with Ledger(ledger_path(config.out)) as ledger:
        rows = ledger.rows()
    plain = curves(rows, MACHINE)
    results = {"plain": {c: [(p.bpp, p.fidelity) for p in pts] for c, pts in plain.items()}}
    for name, info in trained.items():
        machine = f"{MACHINE}+adapter={info['path']}"
        adapted = curves(rows, machine)
        gaps = [g for g in gap_table(rows) if g.adapted == machine]
        results[name] = {
            "curves": {c: [(p.bpp, p.fidelity) for p in pts] for c, pts in adapted.items()},
            "bd_top1_gain": {c: _bd_gain(plain[c], adapted[c]) for c in adapted if c in plain},
            "generalization_share": {
                c: recovered_share([g for g in gaps if g.curve == c]) for c in TEST_LEVELS},
            "generalization_share_all": recovered_share(gaps),
            "generalization_share_all_ci90": (recovered_share_interval(rows, machine)
                                              or (None, None, None))[1:],
        }
    return results


def _bd_gain(base, test) -> float | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(bd_metric([p.bpp for p in base], [p.fidelity for p in base],
                                   [p.bpp for p in test], [p.fidelity for p in test],
                                   method="pchip"))
        except ValueError:
            return None


def print_tables(results: dict) -> None:
    adapters = [name for name in ADAPTERS if name in results]
    for codec in TEST_LEVELS:
        print(f"\n## {codec}: top-1 agreement with the pristine prediction (Kodak, 24 photos)")
        names = ["plain", *adapters]
        print(f"{'bpp':>7} " + " ".join(f"{n:>14}" for n in names))
        for index, (bpp, top1) in enumerate(results["plain"][codec]):
            cells = [f"{top1:14.3f}"] + [
                f"{results[n]['curves'][codec][index][1]:14.3f}" for n in adapters]
            print(f"{bpp:7.3f} " + " ".join(cells))
    print(f"\n{'adapter':14} " + " ".join(f"{c + ' BD-top1':>14} {c + ' gen.share':>15}"
                                          for c in TEST_LEVELS) + "  all gen.share")
    for name in adapters:
        cells = []
        for codec in TEST_LEVELS:
            gain = results[name]["bd_top1_gain"].get(codec)
            share = results[name]["generalization_share"].get(codec)
            cells.append(f"{'n/a' if gain is None else f'{gain:+.3f}':>14} "
                         f"{'n/a' if share is None else f'{share:.0%}':>15}")
        share = results[name]["generalization_share_all"]
        low, high = results[name]["generalization_share_all_ci90"]
        print(f"{name:14} " + " ".join(cells)
              + f"  {'n/a' if share is None else f'{share:.0%} [{low:.0%}, {high:.0%}]'}")


def _progress(name: str):
    def show(stage: str, done: int, total: int) -> None:
        print(f"\r{name}: {stage} {done}/{total}   ", end="", file=sys.stderr)
    return show


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--kl", type=float, default=0.0, help="logit KL weight")
    parser.add_argument("--views", type=int, default=1,
                        help="training views per coded image (whole + random crops/flips)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "adapters")
    parser.add_argument("--kodak", type=Path, default=SHARED / "kodak")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="which to train")
    args = parser.parse_args()
    for folder in (args.kodak, SHARED / "cbsd68", SHARED / "mcmaster"):
        if not folder.is_dir():
            print(f"{folder}: no such folder (the datasets live in ../shared/data)",
                  file=sys.stderr)
            return 2
    args.runs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    names = [n.strip() for n in args.adapters.split(",") if n.strip()]
    if unknown := [n for n in names if n not in ADAPTERS]:
        print(f"unknown adapter(s) {', '.join(unknown)}; known: {', '.join(ADAPTERS)}",
              file=sys.stderr)
        return 2
    trained = train_all(args.runs, args.steps, args.kl, names, args.views)
    results = evaluate(args.runs, args.kodak, trained, args.workers)
    print_tables(results)
    report = {"command": "python " + " ".join(sys.argv), "platform": platform.platform(),
              "device": "cpu", "steps": args.steps, "kl_weight": args.kl,
              "views": args.views,
              "wall_s": time.perf_counter() - start,
              "trained": trained, "results": results}
    out = HERE / "results" / f"adapters{args.tag}.json"
    write_atomic(out, json.dumps(report, indent=1, default=str).encode())
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
