"""Does a codec-conditional adapter close the generalization gap? (CompressVLMBench, offline)

EfficientNet-Lite0 adapters are trained by feature distillation on CBSD68 + McMaster
(../shared/data) and tested on Kodak through the real ``icm bench`` machinery:

* ``conditioned``: told the codec and bpp bucket, trained on JPEG, HEVC and AVIF;
* ``unconditioned``: one adaptation for all codecs, same data;
* ``held-out``: conditioned, trained on JPEG and HEVC only; AVIF is unseen (it gets the
  "unknown" condition, trained by condition dropout);
* ``reference``: not an adapter but the whole encoder fine-tuned on the same pairs: the
  estimate of the best model for decoded images, so what it recovers is the generalization
  gap and each adapter's recovery is also given as a share of it.

Prints, per codec, the top-1 agreement with the pristine prediction at each level before and
after each adapter, the BD-metric gain (top-1 at equal bpp), and the share of the total gap
recovered by the adapter, and of the gap the fine-tuned reference recovers. Writes
``benchmarks/results/adapters.json``; the bench report (with the gap plot) lands in the run.

    python benchmarks/adapters.py [--steps 250] [--kl 0] [--views 1] [--workers 2]
        [--sides 0,512] [--runs DIR --tag -x]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
import warnings
from pathlib import Path

from icm.adapt import TrainConfig, read_adapter, train_adapter
from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.analysis import (
    current_rows,
    curves,
    gap_table,
    is_reference_row,
    recovered_share,
    recovered_share_interval,
    reference_of,
    with_interval,
)
from icm.bench.grid import with_adapters
from icm.bench.ledger import Ledger
from icm.bench.report import write_report
from icm.fileio import write_atomic
from icm.machines.registry import REFERENCE_MARK
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
    # not an adapter: the whole encoder fine-tuned on the same pairs, the estimate of theta*
    # (the best model for decoded images) that the generalization gap is measured with
    "reference": {"codecs": ("jpeg", "hevc", "avif"), "conditioned": True,
                  "tune_encoder": True},
}


def train_all(runs: Path, defaults: dict, names: list[str]) -> dict[str, dict]:
    """Train (or reuse) each named adapter; ``defaults`` (steps, kl_weight, views, sides) give
    way to an adapter's own settings. A file is named by its settings' digest, so asking for
    other settings trains anew instead of reusing a file made differently."""
    listing = runs / "train.txt"
    paths = sorted(p for name in ("cbsd68", "mcmaster") for p in (SHARED / name).rglob("*")
                   if p.suffix.lower() in (".png", ".tif", ".tiff", ".bmp", ".jpg"))
    write_atomic(listing, "\n".join(str(p) for p in paths).encode())
    trained = {}
    for name in names:
        settings = {**defaults, **ADAPTERS[name]}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        out = runs / f"{name}-{digest[:8]}.safetensors"
        start = time.perf_counter()
        if not out.exists():
            result = train_adapter(TrainConfig(
                machine=MACHINE, images=str(listing), out=out, batch=8, **settings),
                _progress(name))
            print(file=sys.stderr)
            losses = result.losses
            trained[name] = {"path": str(out), "train_s": time.perf_counter() - start,
                             "pairs": result.pairs, "first_loss": losses[0],
                             "last_loss_mean10": sum(losses[-10:]) / len(losses[-10:])}
        else:
            trained[name] = {"path": str(out), "train_s": None,
                             "note": "reused: trained earlier with these settings",
                             "recorded": read_adapter(out)[1].trained}
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
    reference = reference_of(rows, MACHINE)
    # every fine-tuned encoder the run holds competes for theta* (also ones trained by hand
    # with other settings): their shares of the total gap show how the best was chosen
    results["reference_candidates"] = {
        name: recovered_share_interval(rows, name) for name in dict.fromkeys(
            r["machine"] for r in rows if is_reference_row(r))}
    results["best_reference"] = reference
    for name, info in trained.items():
        machine = f"{MACHINE}+adapter={info['path']}"
        adapted = curves(rows, machine)
        gaps = [g for g in gap_table(rows) if g.adapted == machine]
        of_reference = (recovered_share_interval(rows, machine, reference=reference)
                        if reference else None)
        results[name] = {
            "curves": {c: [(p.bpp, p.fidelity) for p in pts] for c, pts in adapted.items()},
            "bd_top1_gain": {c: _bd_gain(plain[c], adapted[c]) for c in adapted if c in plain},
            "generalization_share": {
                c: recovered_share([g for g in gaps if g.curve == c]) for c in TEST_LEVELS},
            "generalization_share_all": recovered_share(gaps),
            "generalization_share_all_ci90": (recovered_share_interval(rows, machine)
                                              or (None, None, None))[1:],
            # the share of the generalization gap as the fine-tuned reference estimates it
            "reference": reference,
            "share_of_reference_gap": of_reference and of_reference[0],
            "share_of_reference_gap_ci90": (of_reference or (None, None, None))[1:],
        }
    return results


def cross_fitted_reference(runs: Path, kodak: Path, trained: dict[str, dict], settings: dict,
                           workers: int) -> dict:
    """theta* estimated in-domain, as a check on the reference trained on other photos.

    Kodak is split into two halves (alternate photos); a reference fine-tuned on the decoded
    photos of one half is tested on the other, and the two folds together give every test
    photo a reference that never saw it. If the references trained on CBSD68 + McMaster
    underestimate what adaptation can recover on Kodak, this one shows it.
    """
    photos = sorted(p for p in kodak.iterdir() if p.suffix.lower() == ".png")
    folds = [photos[0::2], photos[1::2]]
    points = tuple(f"{c}@{lv}" for c, levels in TEST_LEVELS.items() for lv in levels)
    names = []
    for index, fold in enumerate(folds):
        train_list, test_list = runs / f"kodak-fold{index}.txt", runs / f"kodak-test{index}.txt"
        write_atomic(train_list, "\n".join(map(str, fold)).encode())
        write_atomic(test_list, "\n".join(map(str, folds[1 - index])).encode())
        out = runs / f"kodak-fold{index}-reference.safetensors"
        if not out.exists():
            train_adapter(TrainConfig(machine=MACHINE, images=str(train_list), out=out, batch=8,
                                      **settings), _progress(f"fold {index}"))
            print(file=sys.stderr)
        name = f"{MACHINE}+adapter={out}"
        run_bench(BenchConfig(images=str(test_list), codecs=points, out=runs / "kodak",
                              machines=(MACHINE, name), workers=workers), _progress("kodak"))
        print(file=sys.stderr)
        names.append(name)
    with Ledger(ledger_path(runs / "kodak")) as ledger:
        rows = ledger.rows()
    merged = f"{MACHINE}+adapter=kodak-cross-fitted-reference"
    rows = [row for row in rows if row["machine"] not in names] + [
        {**row, "machine": merged, "fingerprint": f"cross-fitted{REFERENCE_MARK}"}
        for name in names for row in current_rows(rows, name)]
    result = {"reference_share_of_total": recovered_share_interval(rows, merged)}
    for adapter, info in trained.items():
        machine = f"{MACHINE}+adapter={info['path']}"
        result[adapter] = recovered_share_interval(rows, machine, reference=merged)
    return result


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
        print(f"{name:14} " + " ".join(cells)
              + f"  {_share(results[name], 'generalization_share_all')}"
              + f"  of reference gap: {_share(results[name], 'share_of_reference_gap')}")


def _share(result: dict, key: str) -> str:
    return with_interval(result.get(key), result.get(f"{key}_ci90"), "{:.0%}")


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
    parser.add_argument("--sides", default="0",
                        help="shorter sides (px) training photos are coded at; 0 = native")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "adapters")
    parser.add_argument("--kodak", type=Path, default=SHARED / "kodak")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--adapters", default=",".join(ADAPTERS), help="which to train")
    parser.add_argument("--cross-fit", action="store_true",
                        help="also estimate theta* in-domain: references fine-tuned on one half "
                             "of Kodak, tested on the other")
    args = parser.parse_args()
    for folder in (args.kodak, SHARED / "cbsd68", SHARED / "mcmaster"):
        if not folder.is_dir():
            print(f"{folder}: no such folder (the datasets live in ../shared/data)",
                  file=sys.stderr)
            return 2
    args.runs = args.runs.resolve()  # adapter machines are named by path in the ledger
    args.runs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    names = [n.strip() for n in args.adapters.split(",") if n.strip()]
    if unknown := [n for n in names if n not in ADAPTERS]:
        print(f"unknown adapter(s) {', '.join(unknown)}; known: {', '.join(ADAPTERS)}",
              file=sys.stderr)
        return 2
    defaults = {"steps": args.steps, "kl_weight": args.kl, "views": args.views,
                "sides": tuple(int(v) for v in args.sides.split(","))}
    trained = train_all(args.runs, defaults, names)
    results = evaluate(args.runs, args.kodak, trained, args.workers)
    print_tables(results)
    if args.cross_fit:
        settings = {**defaults, **ADAPTERS["reference"]}
        results["kodak_cross_fitted_reference"] = crossed = cross_fitted_reference(
            args.runs, args.kodak, trained, settings, args.workers)
        print("\nagainst a reference fine-tuned on the other half of Kodak (cross-fitted):")
        for name, share in crossed.items():
            print(f"  {name:28} " + with_interval(share and share[0], share and share[1:],
                                                  "{:.0%}"))
    report = {"command": "python " + " ".join(sys.argv), "platform": platform.platform(),
              "device": "cpu", "steps": args.steps, "kl_weight": args.kl,
              "views": args.views, "sides": defaults["sides"],
              "wall_s": time.perf_counter() - start,
              "trained": trained, "results": results}
    out = HERE / "results" / f"adapters{args.tag}.json"
    write_atomic(out, json.dumps(report, indent=1, default=str).encode())
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
