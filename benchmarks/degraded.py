"""Coding degraded photos: codec alone vs the three restoration placements (LL-ICM's question).

Kodak photos get every registered degradation at two strengths (``icm bench --degrade``: each
image its own seed). Each degraded image is coded four ways at the same JPEG levels:

* ``codec alone``          ``jpeg``                  the degraded image as it is
* ``restore-then-encode``  ``jpeg+restore=edge``     restored at the camera, then coded
* ``encode-then-restore``  ``jpeg+restore=server``   coded, then the general restorer
* ``joint``                ``jpeg+restore=joint``    coded, then the restorer trained on JPEG's
                                                     decoded images (restore-jpeg)

In all three placements the encoder's recogniser names the damage on the uncoded image; the
server and joint files carry it in their RESTORE field, whose bytes count. Everything is
scored against the *clean* image: PSNR, the machines' agreement with their output on the clean
image (EfficientNet-Lite0 top-1, NanoDet mAP@0.5 when its weights are in ../shared), and
BRISQUE (no reference; lower is better) on the first ``--brisque-images`` photos. BD-rates
compare curves averaged over the images of each degradation and strength; the headline is
joint vs encode-then-restore (LL-ICM reports 22.65% saving). Also: the recogniser's accuracy
on the benchmark's own degraded images. The bench run is resumable (``--out``).

    python benchmarks/degraded.py [--limit 8] [--levels q5,q10,q20,q35,q50,q70] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.grid import default_machines
from icm.bench.ledger import Ledger
from icm.bench.worker import cache_path
from icm.degrade import list_degradations
from icm.fileio import write_atomic
from icm.image.datasets import open_dataset
from icm.metrics import BDWarning, bd_metric, bd_rate
from icm.restore.api import GENERAL, joint_model_name, model_fingerprint, shipped_model_path

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"
STRENGTHS = (0.3, 0.7)
PLACEMENTS = {
    "codec alone": "",
    "restore-then-encode": "+restore=edge",
    "encode-then-restore": "+restore=server",
    "joint": "+restore=joint",
}
MACHINE_SCORES = {"classify:efficientnet-lite0": "top1", "detect:nanodet": "map50"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(KODAK))
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--codec", default="jpeg")
    parser.add_argument("--levels", default="q5,q10,q20,q35,q50,q70")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--brisque-images", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "runs" / "degraded")
    args = parser.parse_args()
    specs = tuple(f"{cls.name}@{s:g}" for cls in list_degradations() for s in STRENGTHS)
    machines = [m for m in default_machines() if m in MACHINE_SCORES]
    config = BenchConfig(
        images=args.images, limit=args.limit, degrade=specs, out=args.out,
        codecs=tuple(args.codec + tool for tool in PLACEMENTS.values()),
        levels=tuple(args.levels.split(",")), machines=tuple(machines), workers=args.workers)
    started = time.perf_counter()
    outcome = run_bench(config, _progress)
    bench_s = time.perf_counter() - started
    with Ledger(ledger_path(args.out)) as ledger:
        rows = ledger.rows()
    curves = {args.codec + tool: name for name, tool in PLACEMENTS.items()}
    table = _points(rows, curves)
    started = time.perf_counter()
    brisque = _brisque(args, curves)
    brisque_s = time.perf_counter() - started
    recogniser = _recogniser_accuracy(args.images, args.limit, specs)
    summary = {
        "command": "python " + " ".join(sys.argv),
        "images": args.images, "limit": args.limit, "codec": args.codec,
        "levels": args.levels.split(","), "degradations": list(specs),
        "machines": machines, "rows": outcome.rows_total,
        "bench_wall_s": round(bench_s, 1), "brisque_wall_s": round(brisque_s, 1),
        "brisque_images": args.brisque_images,
        "bd_joint_vs_server": _bd_table(table, brisque, "joint", "encode-then-restore"),
        "bd_vs_codec_alone": {
            name: _bd_table(table, brisque, name, "codec alone")
            for name in PLACEMENTS if name != "codec alone"},
        "recogniser": recogniser,
        "restorers": {name: model_fingerprint(shipped_model_path(name))
                      for name in (GENERAL, joint_model_name(args.codec))},
        "points": table, "brisque": brisque,
    }
    _print(summary)
    _plot(summary, HERE / "results" / "degraded.png")
    write_atomic(HERE / "results" / "degraded.json",
                 (json.dumps(summary, indent=2) + "\n").encode())


def _progress(stage: str, done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 20) == 0):
        print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)


def _group(image_id: str) -> str:
    return image_id.rpartition("~")[2]


def _points(rows: list[dict], curves: dict[str, str]) -> dict:
    """{group: {placement: {level: {bpp, psnr, <machine score>...}}}}, means over images."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for row in rows:
        placement = curves.get(row["codec"])
        if placement is None or row["machine"] not in MACHINE_SCORES:
            continue
        cell = values[_group(row["image_id"])][placement][row["level"]]
        if row["machine"] == next(iter(MACHINE_SCORES)):  # rate and PSNR once per bitstream
            cell["bpp"].append(row["bpp"])
            cell["psnr"].append(row["psnr"])
        score = json.loads(row["fidelity_json"])[MACHINE_SCORES[row["machine"]]]
        cell[row["machine"]].append(score)
    return {group: {placement: {level: {k: float(np.mean(v)) for k, v in cell.items()}
                                for level, cell in by_level.items()}
                    for placement, by_level in by_placement.items()}
            for group, by_placement in sorted(values.items())}


def _brisque_of(task: tuple[str, str, str, str]) -> tuple[str, str, str, float]:
    from icm.metrics.noreference import brisque
    from icm.pipeline import decode_bytes

    group, placement, level, path = task
    return group, placement, level, brisque(decode_bytes(Path(path).read_bytes()))


def _brisque(args, curves: dict[str, str]) -> dict:
    """Mean BRISQUE of the decoded (and restored) images, first ``--brisque-images`` photos."""
    keep = {image.id for image in open_dataset(args.images).limit(args.brisque_images)}
    with Ledger(ledger_path(args.out)) as ledger:
        found = ledger.db.execute(
            "SELECT DISTINCT image_id, codec, level, cache_key FROM results").fetchall()
    cache = args.out / "cache" / "bitstreams"
    tasks = [(_group(image_id), curves[codec], level, str(cache_path(cache, key)))
             for image_id, codec, level, key in found
             if codec in curves and image_id.rpartition("~")[0] in keep]
    scores: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with ProcessPoolExecutor(args.workers) as pool:
        for group, placement, level, score in pool.map(_brisque_of, tasks, chunksize=8):
            scores[group][placement][level].append(score)
    return {group: {placement: {level: float(np.mean(v)) for level, v in by_level.items()}
                    for placement, by_level in by_placement.items()}
            for group, by_placement in sorted(scores.items())}


def _bd(anchor: dict, test: dict, key: str, sign: float = 1.0) -> dict:
    """BD-rate (%) and BD-metric of ``test`` vs ``anchor`` at equal ``key`` / equal rate (of
    ``sign * key``: BRISQUE falls as quality rises, so it is negated), and
    whether the delta is clean: no BDWarning, i.e. both curves rose monotonically with rate
    and they share at least half the shorter one's range (otherwise the delta describes an
    edge of the curves only). A
    BD-rate is None where the curves share no range of ``key``: one placement then reaches
    a quality the other never reaches at any tested rate, and only BD-metric is defined."""
    levels = sorted(anchor, key=lambda lv: anchor[lv]["bpp"])
    entry: dict = {"bd_rate": None, "bd_metric": None, "clean": False}
    if any(lv not in test or key not in test[lv] or key not in anchor[lv] for lv in levels):
        return entry
    curves = ([anchor[lv]["bpp"] for lv in levels], [sign * anchor[lv][key] for lv in levels],
              [test[lv]["bpp"] for lv in levels], [sign * test[lv][key] for lv in levels])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BDWarning)
        for name, function in (("bd_rate", bd_rate), ("bd_metric", bd_metric)):
            with contextlib.suppress(ValueError):  # curves that share no range
                value = function(*curves)
                entry[name] = round(value, 3)  # BD-metric of -BRISQUE: positive = better
    entry["clean"] = not caught
    return entry


def _pooled(table: dict, brisque: dict, placement: str) -> dict:
    """One curve per placement, averaged over every image and degradation at each level (as
    codec papers average bpp and PSNR over a test set before taking BD-rates)."""
    groups = [g for g in table if placement in table[g]]
    levels = table[groups[0]][placement].keys()
    curve = {}
    for level in levels:
        cells = [table[g][placement][level] for g in groups]
        point = {key: float(np.mean([c[key] for c in cells]))
                 for key in cells[0] if all(key in c for c in cells)}
        scored = [brisque[g][placement][level] for g in brisque if placement in brisque[g]]
        if scored:
            point["brisque"] = float(np.mean(scored))
        curve[level] = point
    return curve


def _bd_table(table: dict, brisque: dict, test: str, anchor: str) -> dict:
    """BD of ``test`` vs ``anchor`` on the pooled curves (the headline) and per degradation
    and strength (where the per-group curves are noisier and may not overlap)."""
    metrics = ["psnr", *MACHINE_SCORES, "brisque"]
    pooled_anchor, pooled_test = (_pooled(table, brisque, p) for p in (anchor, test))
    pooled = {m: _bd(pooled_anchor, pooled_test, m, -1.0 if m == "brisque" else 1.0)
              for m in metrics}
    per_group: dict = {}
    for group, by_placement in table.items():
        if anchor not in by_placement or test not in by_placement:
            continue
        entry = {}
        for metric in metrics:
            if metric == "brisque":
                if group not in brisque:
                    continue
                merged = {p: {lv: {"bpp": by_placement[p][lv]["bpp"], "brisque": s}
                              for lv, s in brisque[group].get(p, {}).items()}
                          for p in (anchor, test)}
                entry[metric] = _bd(merged[anchor], merged[test], "brisque", sign=-1.0)
            else:
                entry[metric] = _bd(by_placement[anchor], by_placement[test], metric)
        per_group[group] = entry
    counts = {}
    for metric in metrics:
        entries = [g[metric] for g in per_group.values() if metric in g]
        rates = [e["bd_rate"] for e in entries if e["bd_rate"] is not None]
        metric_gaps = [e["bd_metric"] for e in entries if e["bd_metric"] is not None]
        counts[metric] = {"groups": len(entries), "bd_rate_defined": len(rates),
                          "median_bd_rate": _median(rates),
                          "test_better_at_equal_rate": sum(v > 0 for v in metric_gaps)}
    return {"pooled": pooled, "groups": counts, "per_group": per_group}


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def _recogniser_accuracy(images: str, limit: int, specs: tuple[str, ...]) -> dict:
    """Share of the benchmark's degraded images whose type the shipped recogniser names."""
    from icm.degrade import recognise_image

    dataset = open_dataset(images).limit(limit).degraded(specs)
    hits: dict[str, list[bool]] = defaultdict(list)
    for image in dataset.images:
        hits[image.degradation.name].append(recognise_image(image.load()).name
                                            == image.degradation.name)
    per_type = {name: round(float(np.mean(v)), 3) for name, v in hits.items()}
    overall = float(np.mean([h for v in hits.values() for h in v]))
    return {"accuracy": round(overall, 4), "images": len(dataset), "per_type": per_type}


def _print(summary: dict) -> None:
    metrics = ("psnr", *MACHINE_SCORES, "brisque")
    print(f"\nDegraded Kodak ({summary['limit']} photos x {len(summary['degradations'])} "
          f"degradations), {summary['codec']} at {', '.join(summary['levels'])}. BD-rate % "
          "(negative saves bits) at equal quality to the clean image, BD-metric at equal "
          "rate (dB, fidelity points, BRISQUE points; positive = better), on curves "
          "averaged over every image and degradation\n")
    print("| test vs anchor | " + " | ".join(metrics) + " |")
    print("| --- |" + " --- |" * len(metrics))
    pairs = [("joint vs encode-then-restore", summary["bd_joint_vs_server"]),
             *((f"{name} vs codec alone", table)
               for name, table in summary["bd_vs_codec_alone"].items())]
    for label, table in pairs:
        print(f"| {label} | " + " | ".join(_cell(table["pooled"][m]) for m in metrics) + " |")
    joint = summary["bd_joint_vs_server"]
    print("\nJoint vs encode-then-restore per degradation (BD-rate %, BD-metric in brackets; "
          "* = a BD warning: a curve not monotonic, or curves sharing under half their range; "
          "n/a = the curves share no quality range)\n")
    print("| degradation | " + " | ".join(metrics) + " |")
    print("| --- |" + " --- |" * len(metrics))
    for group, entry in joint["per_group"].items():
        print(f"| {group} | " + " | ".join(_cell(entry.get(m)) for m in metrics) + " |")
    print("| groups where joint is better at equal rate | " + " | ".join(
        f"{joint['groups'][m]['test_better_at_equal_rate']}/{joint['groups'][m]['groups']}"
        for m in metrics) + " |")
    rec = summary["recogniser"]
    print(f"\nrecogniser: {100 * rec['accuracy']:.1f}% of {rec['images']} degraded images named "
          f"correctly; bench {summary['bench_wall_s']:.0f} s, BRISQUE "
          f"{summary['brisque_wall_s']:.0f} s")


def _cell(entry: dict | None) -> str:
    if not entry:
        return "n/a"
    rate = "n/a" if entry["bd_rate"] is None else f"{entry['bd_rate']:+.1f}"
    gap = "" if entry["bd_metric"] is None else f" [{entry['bd_metric']:+.3g}]"
    return rate + gap + ("" if entry["clean"] else "*")


def _plot(summary: dict, path: Path) -> None:
    """Rate vs each score, averaged over every degradation, one line per placement."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("psnr", "PSNR to clean (dB)"), *((m, f"{m} {s} vs clean")
                                                for m, s in MACHINE_SCORES.items()
                                                if m in summary["machines"]),
              ("brisque", "BRISQUE (lower is better)")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for axis, (key, label) in zip(np.atleast_1d(axes), panels, strict=True):
        for placement in PLACEMENTS:
            levels = summary["levels"]
            source = summary["brisque"] if key == "brisque" else summary["points"]
            groups = [g for g in source if placement in source[g]]
            if not groups:
                continue
            rates = [np.mean([summary["points"][g][placement][lv]["bpp"] for g in groups])
                     for lv in levels]
            values = [np.mean([source[g][placement][lv] if key == "brisque"
                               else source[g][placement][lv][key] for g in groups])
                      for lv in levels]
            axis.plot(rates, values, marker="o", label=placement)
        axis.set_xlabel("bpp")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.suptitle(f"Degraded Kodak, {summary['codec']}: mean over "
                    f"{len(summary['degradations'])} degradations")
    figure.tight_layout()
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


if __name__ == "__main__":
    main()
