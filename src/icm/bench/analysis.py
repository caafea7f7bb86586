"""From ledger rows to answers: rate-fidelity curves, BD tables, worst cases, stability.

Curves average each codec point over the images a machine read, so every codec is compared on
the same images. BD-rate says how many bits a codec saves at equal machine fidelity against the
anchor; BD-metric how much fidelity it gains at equal bits (both from :mod:`icm.metrics.bd`,
akima interpolation). Fidelity curves saturate at 1.0 and can be flat or non-monotonic; a BD
value that cannot be computed honestly is reported as missing with the reason, never guessed.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from icm.metrics import BDWarning, bd_metric, bd_rate


@dataclass(frozen=True)
class CurvePoint:
    point: str
    codec: str
    bpp: float
    fidelity: float
    psnr: float
    images: int
    accuracy: float | None = None


@dataclass
class BDEntry:
    machine: str
    codec: str
    anchor: str
    bd_rate: float | None
    bd_metric: float | None
    notes: list[str] = field(default_factory=list)


def machines_in(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(row["machine"] for row in rows))


def current_rows(rows: list[dict[str, Any]], machine: str) -> list[dict[str, Any]]:
    """The machine's rows from its newest fingerprint (model, weights, fidelity definition).

    A ledger keeps rows of earlier fingerprints (resume never deletes), but averaging two model
    versions into one curve would describe neither.
    """
    mine = [row for row in rows if row["machine"] == machine]
    if not mine:
        return []
    newest = max(mine, key=lambda row: row["created_at"])["fingerprint"]
    return [row for row in mine if row["fingerprint"] == newest]


def curves(rows: list[dict[str, Any]], machine: str) -> dict[str, list[CurvePoint]]:
    """Per codec, the mean (bpp, primary fidelity) of each point over the machine's images."""
    mine = current_rows(rows, machine)
    common = _images_in_every_point(mine)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in mine:
        if row["image_sha"] in common:
            groups[row["point"]].append(row)
    result: dict[str, list[CurvePoint]] = defaultdict(list)
    for point, group in groups.items():
        accuracies = [_accuracy(row) for row in group]
        known = [a for a in accuracies if a is not None]
        result[group[0]["codec"]].append(CurvePoint(
            point=point,
            codec=group[0]["codec"],
            bpp=float(np.mean([r["bpp"] for r in group])),
            fidelity=float(np.mean([r["primary_value"] for r in group])),
            psnr=float(np.mean([r["psnr"] for r in group])),
            images=len(group),
            accuracy=float(np.mean(known)) if known else None,
        ))
    return {codec: sorted(points, key=lambda p: p.bpp) for codec, points in result.items()}


def _images_in_every_point(rows: list[dict[str, Any]]) -> set[str]:
    """Images present at every point, so a half-finished grid does not skew the means."""
    by_point: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_point[row["point"]].add(row["image_sha"])
    sets = list(by_point.values())
    return set.intersection(*sets) if sets else set()


def _accuracy(row: dict[str, Any]) -> float | None:
    """The first score of a row's ground-truth accuracy (e.g. OCR text accuracy), if any."""
    if not row.get("accuracy_json"):
        return None
    scores = json.loads(row["accuracy_json"])
    return float(next(iter(scores.values()))) if scores else None


def bd_table(rows: list[dict[str, Any]], anchor: str) -> list[BDEntry]:
    """BD-rate and BD-metric of every codec against ``anchor``, per machine."""
    table = []
    for machine in machines_in(rows):
        per_codec = curves(rows, machine)
        base = per_codec.get(anchor)
        for codec, curve in per_codec.items():
            if codec == anchor:
                continue
            if base is None:
                table.append(BDEntry(machine, codec, anchor, None, None,
                                     [f"anchor {anchor} is not in this run"]))
                continue
            table.append(_bd_entry(machine, codec, anchor, base, curve))
    return table


def pareto_front(points: list[CurvePoint]) -> list[CurvePoint]:
    """The points no cheaper point matches: fidelity strictly rising with rate.

    Averaged machine fidelity is a step function on a few images (top-1 agreement over four
    photos moves in quarters) and saturates at 1.0, so raw curves are often flat or dip.
    Bjøntegaard interpolation needs a strictly monotonic curve; the Pareto front is the honest
    monotonic curve, being the best fidelity a codec offers at or below each rate.
    """
    front: list[CurvePoint] = []
    for point in sorted(points, key=lambda p: p.bpp):
        if not front or point.fidelity > front[-1].fidelity:
            front.append(point)
    return front


def _bd_entry(machine, codec, anchor, base, curve) -> BDEntry:
    entry = BDEntry(machine, codec, anchor, None, None)
    fronts, pareto_notes = {}, []
    for name, points in (("anchor", base), ("test", curve)):
        fronts[name] = pareto_front(points)
        if len(fronts[name]) < len(points):
            pareto_notes.append(f"{name} curve not monotonic: BD uses its Pareto front "
                                f"({len(fronts[name])} of {len(points)} points)")
    if min(len(front) for front in fronts.values()) < 2:
        entry.notes.append("fewer than 2 points on a Pareto front (fidelity saturated): "
                           "no BD value")
        entry.notes.extend(pareto_notes)
        return entry
    arrays = ([p.bpp for p in fronts["anchor"]], [p.fidelity for p in fronts["anchor"]],
              [p.bpp for p in fronts["test"]], [p.fidelity for p in fronts["test"]])
    for name, function in (("bd_rate", bd_rate), ("bd_metric", bd_metric)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BDWarning)
            try:
                setattr(entry, name, float(function(*arrays, method="pchip")))
            except ValueError as exc:
                entry.notes.append(f"{name}: {exc}")
        entry.notes.extend(f"{name}: {w.message}" for w in caught)
    entry.notes.extend(pareto_notes)  # reasons for a missing value come first
    return entry


def worst_cases(rows: list[dict[str, Any]], machine: str, count: int = 5) -> list[dict]:
    """The (image, point) rows that fell furthest below that point's mean fidelity.

    Ranking by absolute fidelity would always show the lowest bitrates; the shortfall against
    the other images at the same point surfaces the images a codec hurts unusually.
    """
    mine = current_rows(rows, machine)
    means: dict[str, list[float]] = defaultdict(list)
    for row in mine:
        means[row["point"]].append(row["primary_value"])
    average = {point: float(np.mean(values)) for point, values in means.items()}
    return sorted(mine, key=lambda r: (r["primary_value"] - average[r["point"]], r["bpp"]))[
        :count]


def stability(pristine_rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per machine, how many pristine outputs were identical when predicted twice."""
    summary: dict[str, dict[str, int]] = defaultdict(lambda: {"stable": 0, "total": 0})
    for row in pristine_rows:
        summary[row["machine"]]["total"] += 1
        summary[row["machine"]]["stable"] += int(row["stable"])
    return dict(summary)


def pristine_accuracy(pristine_rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per machine, mean ground-truth accuracy on the pristine images (the ceiling)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for row in pristine_rows:
        value = _accuracy(row)
        if value is not None:
            scores[row["machine"]].append(value)
    return {machine: float(np.mean(values)) for machine, values in scores.items()}
