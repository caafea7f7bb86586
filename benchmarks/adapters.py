"""Do codec-conditional adapters help on photos they never saw? (CompressVLMBench, offline)

EfficientNet-Lite0 adapters are judged by cross-validation over every photo in ../shared/data
(CBSD68, McMaster, Kodak: 110), in folds by photo. For each fold:

* its photos are the test photos: never trained on, never used to choose anything;
* of the other photos, a seeded fifth (per dataset) is the fold's validation: each candidate
  recipe is trained on the rest with early stopping on it, the candidate with the lowest
  validation KL is kept, and its gate (where it may act) is measured on it too;
* ``baseline`` is the adapter as it was trained before issue 22 (whole photos at their own
  size, feature distillation, 250 steps, file-bpp buckets, no validation, no gate), trained on
  all the non-test photos.

Adapters are trained on JPEG and HEVC; AVIF is held out of training and selection (an adapter
reads it as "codec unknown"). Every photo gives 6 square views at 1x, 1.5x and 2x the
machine's input side, each coded at four low-rate levels per codec (jpeg q5-q20, hevc
qp47-qp37, avif q5-q18) and one mild one. Tables give per codec and rate bucket (bits per
input pixel) top-1 agreement with the pristine prediction, KL to the pristine output and top-5
overlap, plain vs adapted, with 90% intervals from resampling test photos (views of a photo
move together), and the share of the total top-1 gap (1 - plain agreement) the adapter closes.

    python benchmarks/adapters.py [--folds 3] [--candidates kl,kl+anchor] [--diagnose features]
        [--photo-curve] [--cache /tmp/icm-adapters-cache] [--tag -x]

Writes ``benchmarks/results/adapters{tag}.json`` and ``adapters{tag}.png`` (learning curves:
validation and test KL against steps, per fold). Coded views are cached in ``--cache``;
adapters and their curves in ``--runs`` (reused when their settings match).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from icm.adapt import TrainConfig
from icm.adapt.conditioning import INPUT_BPP_EDGES, Conditioning
from icm.adapt.evaluate import compare
from icm.adapt.files import load_adapter
from icm.adapt.gate import cluster_bootstrap
from icm.adapt.train import fit, input_side, new_adapted, torch_machine
from icm.adapt.views import ViewPlan, Views, build_views
from icm.fileio import write_atomic
from icm.image.datasets import open_dataset

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DATASETS = ("cbsd68", "mcmaster", "kodak")
MACHINE = "classify:efficientnet-lite0"
LOW = {"jpeg": ("q5", "q10", "q15", "q20"), "hevc": ("qp47", "qp44", "qp41", "qp37"),
       "avif": ("q5", "q10", "q14", "q18")}
MILD = {"jpeg": ("q40",), "hevc": ("qp32",), "avif": ("q30",)}
TRAINED_CODECS = ("jpeg", "hevc")
#: the pre-issue-22 recipe: its own levels, on whole photos
BASELINE_LEVELS = {"jpeg": ("q5", "q10", "q20", "q35"), "hevc": ("qp47", "qp42", "qp37", "qp32"),
                   "avif": ("q5", "q15", "q25", "q40")}
PLAN = ViewPlan(views=6, scales=(1.0, 1.5, 2.0), seed=0)
WHOLE = ViewPlan(views=1, scales=(0.0,), seed=0)
COMMON = {"codecs": TRAINED_CODECS, "levels": {c: LOW[c] + MILD[c] for c in TRAINED_CODECS},
          "batch": 16, "lr": 1e-3, "eval_every": 30, "patience": 4, "val_rows": 300,
          "views": PLAN.views, "scales": PLAN.scales}
CANDIDATES = {
    "kl": {"kl_weight": 1.0, "feature_weight": 0.0, "anchor_weight": 0.0},
    "kl+anchor": {"kl_weight": 1.0, "feature_weight": 0.0, "anchor_weight": 0.5},
    "features": {"kl_weight": 0.0, "feature_weight": 1.0, "anchor_weight": 0.0},
    "kl+anchor-unconditioned": {"kl_weight": 1.0, "feature_weight": 0.0, "anchor_weight": 0.5,
                                "conditioned": False},
}
#: adapters from the third stage on, as the candidates (so both read the same stored
#: prefixes): the recipe differs, not where the adapter sits
BASELINE = {"codecs": ("jpeg", "hevc", "avif"), "levels": BASELINE_LEVELS, "steps": 250,
            "batch": 8, "kl_weight": 0.0, "feature_weight": 1.0, "anchor_weight": 0.0,
            "views": 1, "scales": (0.0,), "patience": 0, "gate": False, "input_buckets": False,
            "unknown_rate": 0.2}
WATCH_ROWS = 240


# -- data -----------------------------------------------------------------------------------
def photos(limit: int = 0) -> list[tuple[str, Any]]:
    """Every photo of the three sets (the first ``limit`` of each), named ``set/file``."""
    found = []
    for name in DATASETS:
        dataset = open_dataset(SHARED / name)
        found += [(f"{name}/{image.id}", image)
                  for image in (dataset.limit(limit) if limit else dataset)]
    return found


def folds_of(names: list[str], count: int, seed: int = 0) -> list[list[str]]:
    """``count`` folds of photo names, each dataset dealt evenly over them after a shuffle."""
    folds: list[list[str]] = [[] for _ in range(count)]
    for dataset in DATASETS:
        members = sorted(n for n in names if n.startswith(f"{dataset}/"))
        random.Random(f"{seed}|{dataset}").shuffle(members)
        for index, name in enumerate(members):
            folds[index % count].append(name)
    return folds


def split_validation(names: list[str], share: float = 0.2, seed: int = 0
                     ) -> tuple[list[str], list[str]]:
    """(train, validation): a seeded ``share`` of each dataset's photos is validation."""
    val: list[str] = []
    for dataset in DATASETS:
        members = sorted(n for n in names if n.startswith(f"{dataset}/"))
        random.Random(f"val|{seed}|{dataset}").shuffle(members)
        val += members[:max(1, round(share * len(members)))]
    return [n for n in names if n not in set(val)], val


def jobs(levels: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    return [(codec, level) for codec, names in levels.items() for level in names]


# -- training -------------------------------------------------------------------------------
def train(name: str, runs: Path, machine: Any, parts: Any, views: Views, train_photos: list,
          val_photos: list, settings: dict, watch: dict[str, list[int]]) -> dict:
    """Train (or reuse) one adapter; its file, curve and validation score."""
    digest = hashlib.sha256(json.dumps([settings, sorted(train_photos), sorted(val_photos)],
                                       sort_keys=True, default=str).encode()).hexdigest()[:10]
    out = runs / f"{name}-{digest}.safetensors"
    sidecar = out.with_suffix(".json")
    if out.exists() and sidecar.exists():
        return json.loads(sidecar.read_text())
    config = TrainConfig(machine=MACHINE, out=out, images=name, **settings)
    start = time.perf_counter()
    result = fit(machine, parts, views, train_photos, val_photos, config, _progress(name),
                 watch)
    print(file=sys.stderr)
    record = {"path": str(out), "train_s": time.perf_counter() - start, "steps": result.steps,
              "best_step": result.best_step, "val_before": result.val_before,
              "val_after": result.val_after, "curve": result.curve,
              "gate": None if result.gate is None else
              {k: asdict(e) for k, e in result.gate.items()}, "settings": settings}
    write_atomic(sidecar, json.dumps(record, default=str).encode())
    return record


def read_test(path: Path, gated: bool, context: dict, rows: list[int], folder: Path) -> dict:
    """Plain and adapted scores of the test rows, kept beside the adapters (keyed by the
    adapter file's bytes, the gate and the rows) so a rerun reads only what is new."""
    from icm.fileio import file_digest

    key = hashlib.sha256(json.dumps([file_digest(str(path)), gated, rows]).encode())
    cached = folder / f"{key.hexdigest()[:16]}.npz"
    if cached.exists():
        with np.load(cached) as stored:
            found: dict[str, dict] = {"plain": {}, "adapted": {}}
            for name in stored.files:
                side, metric = name.split("/")
                found[side][metric] = stored[name]
            return found
    parts, machine = context["parts"], context["machine"]
    adapted = load_adapter(path, copy.deepcopy(parts.module), machine.name,
                           machine.fingerprint())
    if not gated:
        adapted.gate = None
    scored = compare(parts, adapted, context["views"], rows)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{f"{side}/{m}": v for side, values in scored.items()
                        for m, v in values.items()})
    write_atomic(cached, buffer.getvalue())
    return scored


def validation_score(record: dict) -> dict:
    """A candidate's score on every validation view of the codecs it was trained on, read as
    the gate reads them (codec shown, no gate): mean change in top-1 agreement with the
    pristine prediction and mean fall in KL. The goal is the top-1 gap, with KL not worse."""
    entries = [e for key, e in (record["gate"] or {}).items() if not key.startswith("unknown@")]
    samples = sum(e["samples"] for e in entries)
    if not samples:
        return {"top1_change": 0.0, "kl_fall": 0.0}
    return {"top1_change": sum(e["samples"] * e["top1_change"] for e in entries) / samples,
            "kl_fall": sum(e["samples"] * e["gain"] for e in entries) / samples}


def _rank(score: dict) -> tuple:
    """Candidates that lowered the validation KL first, then by top-1 gained, then KL."""
    return score["kl_fall"] > 0, score["top1_change"], score["kl_fall"]


def run_fold(index: int, test: list[str], rest: list[str], context: dict, args) -> dict:
    """Train the fold's candidates and baseline; read its test photos through each."""
    machine, parts, views, whole = (context[k] for k in ("machine", "parts", "views", "whole"))
    train_photos, val_photos = split_validation(rest, seed=index)
    test_rows = views.rows(test)
    watch = {"test": _spread(views.rows(test, jobs=jobs(COMMON["levels"])), WATCH_ROWS)}
    runs = args.runs / f"fold{index}"
    runs.mkdir(parents=True, exist_ok=True)
    common = {**COMMON, "steps": args.steps}
    names = args.candidates + (args.diagnose if index in args.folds_to_diagnose else [])
    trained = {name: train(name, runs, machine, parts, views, train_photos, val_photos,
                           {**common, **CANDIDATES[name]}, watch) for name in names}
    for name in names:
        trained[name]["val_score"] = validation_score(trained[name])
    chosen = max(args.candidates, key=lambda n: _rank(trained[n]["val_score"]))
    trained["baseline"] = train("baseline", runs, machine, parts, whole, rest, [], BASELINE, {})
    readers = {"adapted": (trained[chosen]["path"], True),
               "ungated": (trained[chosen]["path"], False),
               "baseline": (trained["baseline"]["path"], True)}
    readers.update({f"diag-{d}": (trained[d]["path"], True) for d in args.diagnose
                    if d in trained})
    curve = photo_curve(index, chosen, train_photos, val_photos, context, args, watch)
    readers.update({f"photos-{n}{'' if g else '-ungated'}": (t["path"], g)
                    for n, t in curve.items() for g in (True, False)})
    trained.update({f"photos-{n}": t for n, t in curve.items()})
    rows = test_rows
    result = {"plain": None}
    for label, (path, gated) in readers.items():
        scored = read_test(Path(path), gated, context, rows, runs / "reads")
        result["plain"] = scored["plain"]
        result[label] = scored["adapted"]
        print(f"\rfold {index}: read test photos through {label}   ", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {"fold": index, "test": test, "train": train_photos, "val": val_photos,
            "chosen": chosen, "trained": trained, "rows": rows, "scores": result}


def photo_curve(index: int, recipe: str, train_photos: list[str], val_photos: list[str],
                context: dict, args, watch: dict) -> dict[int, dict]:
    """The chosen recipe trained on a seeded quarter and half of the fold's training photos
    (same validation): how the gain on test photos grows with the photos trained on."""
    if index not in args.photo_curve_folds:
        return {}
    out = {}
    for share in (0.25, 0.5):
        subset = sorted(random.Random(f"curve|{share}").sample(
            sorted(train_photos), round(share * len(train_photos))))
        settings = {**COMMON, "steps": args.steps, **CANDIDATES[recipe]}
        out[len(subset)] = train(f"photos{len(subset)}", args.runs / f"fold{index}",
                                 context["machine"], context["parts"], context["views"],
                                 subset, val_photos, settings, watch)
    return out


def curve_summary(fold: dict, views: Views, chosen_photos: int) -> list[dict]:
    """Gap closed and KL change on the fold's JPEG+HEVC low-rate test views, per number of
    training photos (gated and not)."""
    rows = fold["rows"]
    low = np.array([views.codec[r] in TRAINED_CODECS and views.level[r] in
                    LOW.get(views.codec[r], ()) for r in rows])
    photos = [views.photos[views.photo[r]] for r, keep in zip(rows, low, strict=True) if keep]
    plain = fold["scores"]["plain"]
    out = []
    sizes = sorted({int(k.split("-")[1]) for k in fold["scores"] if k.startswith("photos-")})
    for count in [*sizes, chosen_photos]:
        entry: dict[str, Any] = {"train_photos": count}
        for gated in (True, False):
            label = (f"photos-{count}" if count != chosen_photos else "adapted") + (
                "" if gated else "-ungated")
            label = "ungated" if label == "adapted-ungated" else label
            mine = fold["scores"][label]
            key = "gated" if gated else "ungated"
            entry[key] = {
                "gap_closed": _share(plain["top1"][low], mine["top1"][low], photos),
                "kl_change": _interval(mine["divergence"][low] - plain["divergence"][low],
                                       photos)}
        out.append(entry)
    return out


# -- analysis -------------------------------------------------------------------------------
def table(folds: list[dict], views: Views, labels: list[str], side: int) -> list[dict]:
    """Per codec x rate bucket (and per codec, low rates only; and mild): plain vs each
    label's scores with photo-resampled intervals."""
    conditioning = Conditioning((), INPUT_BPP_EDGES, side)
    columns = _columns(folds, views, labels, conditioning)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (codec, level, bucket) in enumerate(zip(columns["codec"], columns["level"],
                                                   columns["bucket"], strict=True)):
        rate = "mild" if level in MILD[codec] else conditioning.bucket_range(bucket)
        groups.setdefault((codec, rate), []).append(i)
        if level in LOW[codec]:
            groups.setdefault((codec, "all low rates"), []).append(i)
            if codec in TRAINED_CODECS:
                groups.setdefault(("+".join(TRAINED_CODECS), "all low rates"), []).append(i)
    return [_entry(codec, rate, np.asarray(idx), columns, labels)
            for (codec, rate), idx in sorted(groups.items(), key=_order)]


def _order(item: tuple[tuple[str, str], list[int]]) -> tuple:
    (codec, rate), _ = item
    head = {"jpeg": 0, "hevc": 1, "avif": 2}.get(codec, 3)
    tail = 2 if rate == "mild" else 1 if rate == "all low rates" else 0
    low = rate.split("-")[0].split()[0]
    number = 0.0 if tail or low.startswith("<") else float(low.lstrip(">="))
    return head, tail, number


def _columns(folds: list[dict], views: Views, labels: list[str],
             conditioning: Conditioning) -> dict[str, Any]:
    columns: dict[str, Any] = {"codec": [], "level": [], "bucket": [], "photo": []}
    metrics: dict[str, dict[str, list]] = {label: {} for label in ["plain", *labels]}
    for fold in folds:
        for row in fold["rows"]:
            columns["codec"].append(views.codec[row])
            columns["level"].append(views.level[row])
            columns["bucket"].append(conditioning.bucket_id(views.condition(row)))
            columns["photo"].append(views.photos[views.photo[row]])
        for label in metrics:
            for metric, values in fold["scores"][label].items():
                metrics[label].setdefault(metric, []).extend(values)
    columns.update({label: {m: np.asarray(v) for m, v in values.items()}
                    for label, values in metrics.items()})
    return columns


def _entry(codec: str, rate: str, idx: np.ndarray, columns: dict, labels: list[str]) -> dict:
    photos = [columns["photo"][i] for i in idx]
    plain = columns["plain"]
    entry = {"codec": codec, "rate": rate, "views": len(idx), "photos": len(set(photos)),
             "plain": {m: float(v[idx].mean()) for m, v in plain.items()}}
    for label in labels:
        mine = columns[label]
        entry[label] = {m: float(v[idx].mean()) for m, v in mine.items()}
        entry[label]["change"] = {
            m: _interval(mine[m][idx] - plain[m][idx], photos) for m in ("top1", "divergence",
                                                                       "top5")}
        entry[label]["gap_closed"] = _share(plain["top1"][idx], mine["top1"][idx], photos)
    return entry


def _interval(values: np.ndarray, photos: list[str]) -> list[float]:
    """[mean, 5th, 95th percentile] of the mean over photo resamples."""
    low, high = cluster_bootstrap(values, photos, np.random.default_rng(0), (5.0, 95.0))
    return [float(values.mean()), low, high]


def _share(plain: np.ndarray, adapted: np.ndarray, photos: list[str], rounds: int = 1000
           ) -> list[float] | None:
    """Share of the total top-1 gap closed, sum(adapted - plain) / sum(1 - plain), with its
    90% interval over photo resamples."""
    lost = 1.0 - plain
    if lost.sum() <= 0:
        return None
    labels, index = np.unique(np.asarray(photos), return_inverse=True)
    gained = np.bincount(index, weights=adapted - plain, minlength=len(labels))
    missing = np.bincount(index, weights=lost, minlength=len(labels))
    draws = np.random.default_rng(0).integers(0, len(labels), size=(rounds, len(labels)))
    totals = missing[draws].sum(axis=1)
    shares = gained[draws].sum(axis=1)[totals > 0] / totals[totals > 0]
    low, high = np.percentile(shares, [5, 95])
    return [float(gained.sum() / missing.sum()), float(low), float(high)]


# -- output ---------------------------------------------------------------------------------
def print_table(rows: list[dict], labels: list[str]) -> None:
    for label in labels:
        print(f"\n## {label} vs plain (test photos; 90% intervals over photos)")
        print(f"{'codec':16} {'rate':22} {'views':>5} {'top1':>13} {'KL':>13} {'top5':>13}"
              f"  {'gap closed':>20}  {'dtop1 / dKL':>34}")
        for row in rows:
            mine, plain = row[label], row["plain"]
            share = mine["gap_closed"]
            change = mine["change"]
            flag = " WORSE" if _worse(change) else ""
            print(f"{row['codec']:16} {row['rate']:22} {row['views']:5} "
                  f"{plain['top1']:.3f}->{mine['top1']:.3f} "
                  f"{plain['divergence']:.3f}->{mine['divergence']:.3f} "
                  f"{plain['top5']:.3f}->{mine['top5']:.3f}  "
                  f"{_fmt(share, '{:+.0%}'):>20}  "
                  f"{_fmt(change['top1'], '{:+.3f}'):>16} "
                  f"{_fmt(change['divergence'], '{:+.3f}'):>17}{flag}")


def _worse(change: dict) -> bool:
    """Worse beyond its interval: top-1 falls or KL rises with the whole 90% interval."""
    return change["top1"][2] < 0 or change["divergence"][1] > 0


def _fmt(value: list[float] | None, fmt: str) -> str:
    if value is None:
        return "n/a"
    return f"{fmt.format(value[0])} [{fmt.format(value[1])}, {fmt.format(value[2])}]"


def plot_curves(folds: list[dict], path: Path) -> None:
    """Per candidate: validation and test KL (over the plain machine's) and share of the top-1
    gap closed against training steps, per fold; the kept step dotted. Test points are
    recorded for this plot only: nothing is chosen by them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for f in folds for n, t in f["trained"].items() if t.get("curve")})
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 7), squeeze=False)
    for column, name in enumerate(names):
        for fold in folds:
            curve = fold["trained"].get(name, {}).get("curve") or []
            if not curve:
                continue
            steps = [p["step"] for p in curve]
            colour = f"C{fold['fold']}"
            for key, style in (("val", "-"), ("test", "--")):
                label = f"fold {fold['fold']} {'validation' if key == 'val' else 'test'}"
                axes[0][column].plot(steps, [p[key] / p[f"{key}_plain"] for p in curve],
                                     style, color=colour, label=label)
                start = curve[0][f"{key}_top1"]
                axes[1][column].plot(steps, [(p[f"{key}_top1"] - start) / (1 - start)
                                             for p in curve], style, color=colour, label=label)
            for row in axes:
                row[column].axvline(fold["trained"][name]["best_step"], color=colour, lw=0.8,
                                    ls=":")
        axes[0][column].axhline(1.0, color="black", lw=0.8)
        axes[1][column].axhline(0.0, color="black", lw=0.8)
        axes[1][column].axhline(0.25, color="grey", lw=0.8, ls="-.")
        axes[0][column].set_title(f"{name}: KL to pristine, / plain machine's")
        axes[1][column].set_title(f"{name}: share of the top-1 gap closed")
        axes[1][column].set_xlabel("training step")
        axes[0][column].legend(fontsize=6)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())


def gate_summary(folds: list[dict]) -> dict:
    """Per fold: the chosen candidate's open and shut conditions."""
    out = {}
    for fold in folds:
        gate = fold["trained"][fold["chosen"]]["gate"] or {}
        out[f"fold {fold['fold']}"] = {
            "open": sorted(k for k, e in gate.items() if e["open"]),
            "shut": sorted(k for k, e in gate.items() if not e["open"])}
    return out


def _spread(rows: list[int], count: int) -> list[int]:
    if len(rows) <= count:
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]


def _progress(name: str):
    def show(stage: str, done: int, total: int) -> None:
        print(f"\r{name}: {stage} {done}/{total}   ", end="", file=sys.stderr)
    return show


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--only-folds", default="", help="run only these folds (comma list)")
    parser.add_argument("--candidates", default="kl+anchor,features",
                        help=f"recipes chosen between on validation ({', '.join(CANDIDATES)})")
    parser.add_argument("--diagnose", default="",
                        help="recipes also trained and tested, never chosen (diagnosis)")
    parser.add_argument("--diagnose-folds", default="0")
    parser.add_argument("--steps", type=int, default=300, help="most steps per adapter")
    parser.add_argument("--photo-curve", default="",
                        help="folds where the recipe is also trained on a quarter and a half "
                             "of the training photos (how gains grow with photos)")
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "adapters-cv")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/icm-adapters-cache"))
    parser.add_argument("--tag", default="")
    parser.add_argument("--prepare-only", action="store_true", help="code the views and stop")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the plot from the results file and stop")
    parser.add_argument("--limit", type=int, default=0,
                        help="only the first N photos of each set (a quick check)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: the machine's cores are shared)")
    parser.add_argument("--first-stage", type=int, default=None,
                        help="the first Lite0 stage with an adapter for every recipe and the "
                             "baseline (default: TrainConfig's, 2); earlier stages cost CPU "
                             "time and larger stored views")
    args = parser.parse_args()
    if args.first_stage is not None:  # only when asked: the runs' digests stay as they were
        COMMON["first_stage"] = BASELINE["first_stage"] = args.first_stage
    if args.replot:
        report = json.loads((HERE / "results" / f"adapters{args.tag}.json").read_text())
        plot_curves(report["folds"], HERE / "results" / f"adapters{args.tag}.png")
        return 0
    for name in DATASETS:
        if not (SHARED / name).is_dir():
            print(f"{SHARED / name}: no such folder (the datasets live in ../shared/data)",
                  file=sys.stderr)
            return 2
    args.candidates = [c for c in args.candidates.split(",") if c]
    args.diagnose = [c for c in args.diagnose.split(",") if c]
    args.folds_to_diagnose = {int(v) for v in args.diagnose_folds.split(",") if v}
    args.photo_curve_folds = {int(v) for v in args.photo_curve.split(",") if v}
    if unknown := [c for c in args.candidates + args.diagnose if c not in CANDIDATES]:
        print(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    machine, parts = torch_machine(MACHINE)
    side = input_side(machine)
    cut = new_adapted(machine, parts, TrainConfig(**COMMON)).cut
    named = photos(args.limit)
    all_jobs = jobs({c: LOW[c] + MILD[c] for c in LOW})
    views = build_views(parts, named, all_jobs, PLAN, side, machine.fingerprint(), cut,
                        args.cache, _progress("views"))
    print(file=sys.stderr)
    whole = build_views(parts, named, jobs(BASELINE_LEVELS), WHOLE, side,
                        machine.fingerprint(), cut, args.cache, _progress("whole photos"))
    print(file=sys.stderr)
    if args.prepare_only:
        return 0
    context = {"machine": machine, "parts": parts, "views": views, "whole": whole}
    names = [n for n, _ in named]
    folds = folds_of(names, args.folds)
    wanted = {int(v) for v in args.only_folds.split(",") if v} or set(range(args.folds))
    results = []
    for index, test in enumerate(folds):
        if index in wanted:
            rest = [n for n in names if n not in set(test)]
            results.append(run_fold(index, test, rest, context, args))
    labels = ["adapted", "ungated", "baseline"] + [f"diag-{d}" for d in args.diagnose
                                                    if all(f"diag-{d}" in f["scores"]
                                                           for f in results)]
    rows = table(results, views, labels, side)
    print_table(rows, labels)
    gates = gate_summary(results)
    curves = {f"fold {f['fold']}": curve_summary(f, views, len(f["train"])) for f in results
              if f["fold"] in args.photo_curve_folds}
    for name, points in curves.items():
        print(f"\n{name}: JPEG+HEVC low rates by training photos (gap closed; KL change)")
        for point in points:
            print(f"  {point['train_photos']:3} photos: gated "
                  f"{_fmt(point['gated']['gap_closed'], '{:+.0%}')} "
                  f"{_fmt(point['gated']['kl_change'], '{:+.3f}')}; ungated "
                  f"{_fmt(point['ungated']['gap_closed'], '{:+.0%}')} "
                  f"{_fmt(point['ungated']['kl_change'], '{:+.3f}')}")
    print("\nchosen per fold:", {f"fold {f['fold']}": f["chosen"] for f in results})
    print("gate:", json.dumps(gates, indent=1))
    plot = HERE / "results" / f"adapters{args.tag}.png"
    plot_curves(results, plot)
    report = {
        "command": "python " + " ".join(sys.argv), "platform": platform.platform(),
        "device": "cpu", "wall_s": time.perf_counter() - start, "machine": MACHINE,
        "plan": asdict(PLAN), "levels": {"low": LOW, "mild": MILD}, "trained_codecs":
        TRAINED_CODECS, "candidates": {c: CANDIDATES[c] for c in args.candidates},
        "common": {k: v for k, v in COMMON.items()}, "baseline": BASELINE,
        "folds": [{k: f[k] for k in ("fold", "test", "val", "chosen")} | {
            "trained": {n: {k: v for k, v in t.items() if k != "gate"}
                        for n, t in f["trained"].items()}} for f in results],
        "gate": gates, "table": rows, "photo_curve": curves,
        "plot": str(plot.relative_to(HERE.parent)),
    }
    out = HERE / "results" / f"adapters{args.tag}.json"
    write_atomic(out, json.dumps(report, indent=1, default=str).encode())
    print(f"\nwrote {out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
