"""How well does the degradation recogniser tell what happened to a photo it has never seen?

Trains ``icm.degrade.recognise`` on CBSD68 + McMaster (``../shared/data``), or with ``--reuse``
loads the model shipped in the package, then recognises the 24 Kodak photos (held out) clean
and under every registered degradation at strengths 0.3 and 0.7, with seeds the training never
used. Prints overall and per-class accuracy, accuracy per strength, a confusion matrix
(markdown) and the strength MAE of correct predictions; writes
``benchmarks/results/recogniser.json`` with the exact command. ``--save FILE`` also writes the
trained model (this is how ``src/icm/degrade/data/recogniser.npz`` is made).

    python benchmarks/recogniser.py --strengths 0.2,0.35,0.5,0.7,0.9 \
        --save src/icm/degrade/data/recogniser.npz
    python benchmarks/recogniser.py --reuse
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from icm.degrade import get_degradation
from icm.degrade.recognise import (
    CLEAN,
    Recogniser,
    get_recogniser,
    image_features,
    train_recogniser,
)
from icm.fileio import write_atomic
from icm.image.datasets import open_dataset

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
TRAIN = ("cbsd68", "mcmaster")
TEST = "kodak"
TEST_STRENGTHS = (0.3, 0.7)
TEST_SEED = 90_001  # training uses small seeds; this keeps the test draws apart


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="Evaluate the shipped model.")
    parser.add_argument("--strengths", default="0.3,0.7",
                        help="Training strengths, comma-separated (default 0.3,0.7).")
    parser.add_argument("--seed", type=int, default=0, help="Training seed.")
    parser.add_argument("--l2", type=float, default=1e-3, help="Classifier L2 penalty.")
    parser.add_argument("--save", type=Path, help="Write the trained model here.")
    parser.add_argument("--rescaled-views", type=int, default=0,
                        help="Extra downscaled copies of each training photo (0.5-0.9x).")
    args = parser.parse_args()
    folders = [DATA / name for name in (*TRAIN, TEST)]
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        print(f"{missing[0]}: no such folder (the benchmark needs ../shared/data)",
              file=sys.stderr)
        return 2

    start = time.perf_counter()
    if args.reuse:
        model, trained = get_recogniser(), "shipped model (--reuse)"
    else:
        strengths = tuple(float(s) for s in args.strengths.split(","))
        model = train_recogniser([str(DATA / name) for name in TRAIN], strengths=strengths,
                                 seed=args.seed, l2=args.l2, progress=_progress("train"),
                                 rescaled_views=args.rescaled_views)
        trained = (f"{' + '.join(TRAIN)} at strengths {list(strengths)}, seed {args.seed}, "
                   f"{args.rescaled_views} rescaled views")
        if args.save:
            model.save(args.save)
            print(f"\nsaved {args.save} ({args.save.stat().st_size} bytes)", file=sys.stderr)
    train_s = time.perf_counter() - start
    rows, feature_ms = evaluate(model)
    summary = summarise(model, rows)
    summary.update({"command": "python " + " ".join(sys.argv), "trained_on": trained,
                    "tested_on": f"{TEST} (24 photos), clean + every degradation at "
                                 f"{list(TEST_STRENGTHS)}, seeds from {TEST_SEED}",
                    "train_s": round(train_s, 1), "feature_ms_mean": round(feature_ms, 1),
                    "rows": rows})
    print(report(summary))
    write_atomic(HERE / "results" / "recogniser.json",
                 (json.dumps(summary, indent=1) + "\n").encode())
    return 0


def _progress(label: str):
    def show(done: int, total: int) -> None:
        print(f"\r{label}: {done}/{total} samples", end="", file=sys.stderr, flush=True)

    return show


def evaluate(model: Recogniser) -> tuple[list[dict], float]:
    """One row per (photo, degradation, strength): truth, prediction, strengths."""
    names = [c for c in model.classes if c != CLEAN]
    dataset = open_dataset(DATA / TEST)
    rows: list[dict] = []
    feature_time = 0.0
    cases = [(CLEAN, 0.0)] + [(n, s) for n in names for s in TEST_STRENGTHS]
    for i, image in enumerate(dataset):
        clean = image.load()
        for c, (name, strength) in enumerate(cases):
            seed = TEST_SEED + 100 * i + c
            pixels = clean if name == CLEAN else get_degradation(name).apply(clean, strength,
                                                                            seed)
            start = time.perf_counter()
            features = image_features(pixels)
            feature_time += time.perf_counter() - start
            result = model.predict_features(features)
            rows.append({"image": image.id, "truth": name, "strength": strength, "seed": seed,
                         "predicted": result.name, "predicted_strength": result.strength,
                         "probability": round(result.probabilities[result.name], 4)})
        print(f"\rtest: {i + 1}/{len(dataset)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return rows, 1e3 * feature_time / max(1, len(rows))


def summarise(model: Recogniser, rows: list[dict]) -> dict:
    classes = list(model.classes)
    truth = np.array([row["truth"] for row in rows])
    predicted = np.array([row["predicted"] for row in rows])
    strength = np.array([row["strength"] for row in rows])
    read = np.array([row["predicted_strength"] for row in rows])
    correct = truth == predicted
    confusion = [[int(((truth == t) & (predicted == p)).sum()) for p in classes]
                 for t in classes]
    degraded = correct & (truth != CLEAN)
    per_class_mae = {c: round(float(np.abs(read - strength)[correct & (truth == c)].mean()), 3)
                     for c in classes if c != CLEAN and (correct & (truth == c)).any()}
    return {
        "classes": classes,
        "samples": len(rows),
        "accuracy": round(float(correct.mean()), 4),
        "chance": round(1 / len(classes), 4),
        "per_class_accuracy": {c: round(float(correct[truth == c].mean()), 3) for c in classes},
        "accuracy_by_strength": {
            f"{s:g}": round(float(correct[(strength == s) & (truth != CLEAN)].mean()), 3)
            for s in TEST_STRENGTHS},
        "strength_mae_correct": round(float(np.abs(read - strength)[degraded].mean()), 3),
        "strength_mae_correct_per_class": per_class_mae,
        "confusion": {"rows_truth_columns_predicted": classes, "counts": confusion},
    }


def report(summary: dict) -> str:
    classes = summary["classes"]
    lines = [f"\naccuracy {summary['accuracy']:.3f} over {summary['samples']} samples "
             f"(chance {summary['chance']:.3f}); by strength "
             + ", ".join(f"{s}: {a:.3f}" for s, a in summary["accuracy_by_strength"].items()),
             f"strength MAE (correct predictions) {summary['strength_mae_correct']:.3f}",
             "", "| class | accuracy | strength MAE |", "| --- | --- | --- |"]
    for c in classes:
        mae = summary["strength_mae_correct_per_class"].get(c)
        lines.append(f"| {c} | {summary['per_class_accuracy'][c]:.3f} | "
                     f"{'' if mae is None else f'{mae:.3f}'} |")
    lines += ["", "confusion (rows: truth, columns: predicted)", "",
              "| truth \\ predicted | " + " | ".join(classes) + " |",
              "| --- |" + " --- |" * len(classes)]
    for c, counts in zip(classes, summary["confusion"]["counts"], strict=True):
        lines.append(f"| {c} | " + " | ".join(str(n) for n in counts) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
