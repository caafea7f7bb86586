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

import icm.degrade  # noqa: F401  (source_group parses the degradations in image ids with it)
from icm.errors import IcmError
from icm.image.datasets import source_group
from icm.machines.registry import ADAPTER_MARKER, REFERENCE_MARK
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
    bd_rate_ci: tuple[float, float] | None = None  # 90% bootstrap interval by source photo
    bd_metric_ci: tuple[float, float] | None = None


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


def complete_points(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, list[dict]]]:
    """The machine's images, and the points that have a row for every one of them.

    A point missing some images (a bpp target a codec cannot reach on a small page, or a grid
    still running) is left out rather than the images, so every curve averages the same images.
    """
    images = sorted({row["image_sha"] for row in rows})
    by_point: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_point[row["point"]].append(row)
    complete = {point: sorted(group, key=lambda r: r["image_sha"])
                for point, group in by_point.items() if len(group) == len(images)}
    return images, complete


@dataclass
class _Grid:
    """One machine's complete points as per-image arrays (images in sorted order)."""

    points: list[str]
    codecs: list[str]
    groups: list[str]  # each image's source photo (views and degradations share one)
    bpp: np.ndarray  # points x images
    fidelity: np.ndarray
    psnr: np.ndarray
    accuracy: list[float | None]  # mean ground-truth accuracy per point, over all images

    @classmethod
    def of(cls, rows: list[dict[str, Any]], machine: str, metric: str | None = None) -> _Grid:
        """``metric`` picks a fidelity score other than the machine's primary (e.g. the
        smoother ``top5_overlap`` where ``top1`` moves in whole-image steps)."""
        _, complete = complete_points(current_rows(rows, machine))
        points = list(complete)
        groups = [complete[p] for p in points]

        def matrix(key: str) -> np.ndarray:
            return np.array([[_score(r, key) for r in g] for g in groups], dtype=float).reshape(
                len(groups), -1)

        accuracy = []
        for group in groups:
            known = [a for a in (_accuracy(row) for row in group) if a is not None]
            accuracy.append(float(np.mean(known)) if known else None)
        sources = [resampling_group(row) for row in groups[0]] if groups else []
        return cls(points, [g[0]["codec"] for g in groups], sources, matrix("bpp"),
                   matrix(f"fidelity:{metric}" if metric else "primary_value"), matrix("psnr"),
                   accuracy)

    @property
    def image_count(self) -> int:
        return self.bpp.shape[1]

    def curves(self, sample: np.ndarray | None = None) -> dict[str, list[CurvePoint]]:
        columns = slice(None) if sample is None else sample
        result: dict[str, list[CurvePoint]] = defaultdict(list)
        for row, (point, codec) in enumerate(zip(self.points, self.codecs, strict=True)):
            result[codec].append(CurvePoint(
                point=point, codec=codec,
                bpp=float(self.bpp[row, columns].mean()),
                fidelity=float(self.fidelity[row, columns].mean()),
                psnr=float(self.psnr[row, columns].mean()),
                images=self.image_count,
                accuracy=self.accuracy[row] if sample is None else None,
            ))
        return {codec: sorted(pts, key=lambda p: p.bpp) for codec, pts in result.items()}


def resampling_group(row: dict[str, Any]) -> str:
    """What a bootstrap draws whole: the row's own ``group`` where it names one (questions
    about one picture, from ``icm lmms``), else its image's source photo (views and
    degradations of one photo)."""
    return row.get("group") or source_group(row["image_id"])


def _score(row: dict[str, Any], key: str) -> float:
    """A row column, or ``fidelity:<name>`` for one score of its fidelity record;
    ``fidelity:-<name>`` negates a score where lower is better (``-kl``), so that every BD
    curve rises with rate."""
    if key.startswith("fidelity:"):
        name = key.partition(":")[2]
        sign = -1.0 if name.startswith("-") else 1.0
        name = name.removeprefix("-")
        scores = json.loads(row["fidelity_json"])
        if name not in scores:
            raise IcmError(f"machine {row['machine']} has no fidelity score {name!r} "
                           f"(it has {', '.join(scores)})")
        return sign * float(scores[name])
    return float(row[key])


def curves(rows: list[dict[str, Any]], machine: str) -> dict[str, list[CurvePoint]]:
    """Per codec, the mean (bpp, primary fidelity) of each complete point over the images."""
    return _Grid.of(rows, machine).curves()


def _accuracy(row: dict[str, Any]) -> float | None:
    """The first score of a row's ground-truth accuracy (e.g. OCR text accuracy), if any."""
    if not row.get("accuracy_json"):
        return None
    scores = json.loads(row["accuracy_json"])
    return float(next(iter(scores.values()))) if scores else None


def bd_table(rows: list[dict[str, Any]], anchor: str, *, bootstrap: int = 200,
             seed: int = 0, metric: str | None = None) -> list[BDEntry]:
    """BD-rate and BD-metric of every codec against ``anchor``, per machine.

    With ``bootstrap`` > 0 each value gets a 90% interval from resampling the images with
    replacement: on a few images with a discrete fidelity (top-1 agreement over 24 photos moves
    in 4% steps) a BD-rate of +/-50% can be noise, and the interval says so.
    """
    table = []
    for machine in machines_in(rows):
        grid = _Grid.of(rows, machine, metric)
        per_codec = grid.curves()
        base = per_codec.get(anchor)
        samples = _resamples(grid.groups, bootstrap, seed)
        resampled = [grid.curves(sample) for sample in samples]
        for codec, curve in per_codec.items():
            if codec == anchor:
                continue
            if base is None:
                table.append(BDEntry(machine, codec, anchor, None, None,
                                     [f"anchor {anchor} is not in this run"]))
                continue
            entry = _bd_entry(machine, codec, anchor, base, curve)
            if resampled:
                entry.bd_rate_ci, entry.bd_metric_ci = _intervals(
                    machine, codec, anchor, resampled)
            table.append(entry)
    return table


def _resamples(groups: list[str], rounds: int, seed: int) -> list[np.ndarray]:
    """Column indices of ``rounds`` bootstrap samples drawn by source photo: as many groups as
    there are, with replacement, each bringing all its images (so views of one photo move
    together). With one image per group this is the plain image bootstrap."""
    labels = list(dict.fromkeys(groups))
    if rounds <= 0 or len(labels) < 3:
        return []
    members = [np.flatnonzero(np.asarray(groups) == label) for label in labels]
    generator = np.random.default_rng(seed)
    return [np.concatenate([members[g] for g in generator.integers(0, len(labels), len(labels))])
            for _ in range(rounds)]


def _intervals(machine, codec, anchor, resampled):
    """5th-95th percentile of BD-rate and BD-metric over image resamples (None if most fail)."""
    values: dict[str, list[float]] = {"bd_rate": [], "bd_metric": []}
    for per_codec in resampled:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BDWarning)
            entry = _bd_entry(machine, codec, anchor, per_codec[anchor], per_codec[codec])
        for name, found in values.items():
            if getattr(entry, name) is not None:
                found.append(getattr(entry, name))
    return tuple(
        (float(np.percentile(found, 5)), float(np.percentile(found, 95)))
        if len(found) >= len(resampled) // 2 else None
        for found in values.values()
    )


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
    if min(len(points) for points in (base, curve)) < 2:
        entry.notes.append("a curve has a single point: no BD value (run two levels or more)")
        return entry
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


def with_interval(value: float | None, interval: tuple[float, float] | None, fmt: str) -> str:
    """``-39.7% [-52.3%, -31.2%]``, the bare value without an interval, or ``n/a``."""
    if value is None:
        return "n/a"
    if interval is None:
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(interval[0])}, {fmt.format(interval[1])}]"


# -- what a run found, in words -------------------------------------------------------------


def findings(rows: list[dict[str, Any]], anchor: str,
             table: list[BDEntry] | None = None) -> dict[str, str]:
    """One sentence per machine saying what the run found against the anchor, for the first
    screen of the report and the terminal: the codec that saves the most bits at equal primary
    fidelity with its 90% interval, then the others, and which ones these images cannot tell
    apart from the anchor (an interval that spans 0)."""
    table = bd_table(rows, anchor) if table is None else table
    sentences = {}
    for machine in machines_in(rows):
        entries = [e for e in table if e.machine == machine]
        grid = _Grid.of(rows, machine)
        primary = current_rows(rows, machine)[0]["primary_name"]
        sources = len(set(grid.groups))
        scope = (f"{grid.image_count} images" if sources == grid.image_count
                 else f"{grid.image_count} views of {sources} photos")
        sentences[machine] = _finding(machine, primary, scope, anchor, entries)
    return sentences


def _finding(machine: str, primary: str, scope: str, anchor: str,
             entries: list[BDEntry]) -> str:
    head = f"{machine} ({primary}, {scope}): "
    valued = sorted((e for e in entries if e.bd_rate is not None), key=lambda e: e.bd_rate)
    if not valued:
        return head + f"no BD-rate against {anchor} could be read (see the notes)."
    unsure = all(e.bd_rate_ci is None for e in valued)  # too few photos to resample
    clear = valued if unsure else [e for e in valued if e.bd_rate_ci is not None
                                   and (e.bd_rate_ci[1] < 0 or e.bd_rate_ci[0] > 0)]
    if not clear:
        return head + (f"no codec differs from {anchor} beyond its 90% interval on these "
                       "images.")
    best, *others = clear
    text = head + f"at equal fidelity, {_saving(best, anchor)}"
    if others:
        text += "; " + ", ".join(_saving(e) for e in others)
    unclear = [e.codec for e in valued if e not in clear]
    if unclear:
        text += f"; {', '.join(unclear)} cannot be told apart from {anchor} here"
    missing = [e.codec for e in entries if e.bd_rate is None]
    if missing:
        text += f"; no value for {', '.join(missing)}"
    return text + (" (too few photos for an interval)." if unsure else ".")


def _saving(entry: BDEntry, anchor: str | None = None) -> str:
    """``hevc needs 42% [34, 50] fewer bits than jpeg``, or without an anchor the short
    ``vvc 39% [27, 48] fewer`` (``more`` where the codec spends more)."""
    direction = "fewer" if entry.bd_rate < 0 else "more"
    amount = f"{abs(entry.bd_rate):.0f}%"
    if entry.bd_rate_ci is not None:
        low, high = sorted(abs(v) for v in entry.bd_rate_ci)
        amount += f" [{low:.0f}, {high:.0f}]"
    amount += f" {direction}"
    if anchor is None:
        return f"{entry.codec} {amount}"
    return f"{entry.codec} needs {amount} bits than {anchor}"


# -- the information / generalization gap ----------------------------------------------------


@dataclass
class GapEntry:
    """One codec point's loss split (CompressVLMBench): ``total`` = 1 - fidelity of the plain
    machine; ``information`` = 1 - fidelity of the adapted machine (what no adaptation can
    recover: the bits are gone); ``generalization`` = their difference (the model was just
    not used to the artefacts). Means over the images both machines read at this point.

    An adapter only bounds the generalization gap from below. When the run also holds the
    machine's fine-tuned reference (``icm adapt train --tune-encoder``), ``reference`` is that
    reference's 1 - fidelity here: the estimated information gap, so ``total - reference`` is
    the estimated generalization gap an adapter's recovery is judged against.
    """

    machine: str
    adapted: str
    curve: str
    point: str
    bpp: float
    total: float
    information: float
    images: int
    reference: float | None = None

    @property
    def generalization(self) -> float:
        return self.total - self.information


def reference_of(rows: list[dict[str, Any]], machine: str) -> str | None:
    """The fine-tuned reference among ``machine``'s adapted versions in the run, if any; of
    several, the one with the highest mean fidelity, since theta* is the best model for decoded
    images (choosing the best errs towards a larger gap, so adapters look no better). Only those
    that read the most (image, point) pairs compete: a mean over other images says nothing."""
    candidates: dict[str, tuple[int, float]] = {}
    for name in machines_in(rows):
        if name.partition(ADAPTER_MARKER)[0] == machine and ADAPTER_MARKER in name:
            mine = current_rows(rows, name)
            if mine and is_reference_row(mine[0]):
                candidates[name] = (len(mine), float(np.mean([r["primary_value"]
                                                              for r in mine])))
    return max(candidates, key=candidates.__getitem__) if candidates else None


def is_reference_row(row: dict[str, Any]) -> bool:
    """Whether a ledger row was read by a fine-tuned reference (``--tune-encoder``)."""
    return str(row["fingerprint"]).endswith(REFERENCE_MARK)


def gap_table(rows: list[dict[str, Any]]) -> list[GapEntry]:
    """A :class:`GapEntry` per point for every (machine, machine+adapter=...) pair."""
    names = machines_in(rows)
    adapted_names = [n for n in names if ADAPTER_MARKER in n]
    ceilings = {base: _by_key(rows, name) if (name := reference_of(rows, base)) else {}
                for base in {n.partition(ADAPTER_MARKER)[0] for n in adapted_names}}
    entries = []
    for adapted in adapted_names:
        base = adapted.partition(ADAPTER_MARKER)[0]
        if base not in names:
            continue
        plain = _by_key(rows, base)
        tuned = _by_key(rows, adapted)
        reference = ceilings[base]
        by_point: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for key in plain.keys() & tuned.keys():
            by_point[key[1]].append(key)
        for point, keys in sorted(by_point.items()):
            entries.append(GapEntry(
                machine=base, adapted=adapted, curve=plain[keys[0]]["codec"], point=point,
                bpp=float(np.mean([plain[k]["bpp"] for k in keys])),
                total=float(np.mean([1 - plain[k]["primary_value"] for k in keys])),
                information=float(np.mean([1 - tuned[k]["primary_value"] for k in keys])),
                images=len(keys),
                reference=(float(np.mean([1 - reference[k]["primary_value"] for k in keys]))
                           if all(k in reference for k in keys) else None),
            ))
    return sorted(entries, key=lambda e: (e.adapted, e.curve, e.bpp))


def _by_key(rows: list[dict[str, Any]], machine: str) -> dict[tuple[str, str], dict]:
    return {(r["image_sha"], r["point"]): r for r in current_rows(rows, machine)}


def recovered_share(entries: list[GapEntry], *, of_reference: bool = False) -> float | None:
    """What the adapters recovered, summed over the entries, as a share of the total gap, or
    (``of_reference``) of the generalization gap the fine-tuned reference closes. None when
    there is nothing to share (no loss, or no reference at some entry)."""
    if of_reference:
        if any(e.reference is None for e in entries):
            return None
        lost = sum(e.total - e.reference for e in entries)  # type: ignore[operator]
    else:
        lost = sum(e.total for e in entries)
    return None if lost <= 0 else sum(e.generalization for e in entries) / lost


def recovered_share_interval(rows: list[dict[str, Any]], adapted: str, curves: set[str] | None
                             = None, *, reference: str | None = None, bootstrap: int = 1000,
                             seed: int = 0) -> tuple[float, float, float] | None:
    """The share :func:`recovered_share` gives (of the total gap, or of the gap the machine
    ``reference`` closes) with a 90% interval from resampling images: (share, low, high), or
    None when nothing was lost.

    Why images: with two dozen test photos a top-1 agreement moves in 4% steps, so two adapters'
    shares can differ by ten points from which photos happen to be in the set alone.
    """
    base = adapted.partition(ADAPTER_MARKER)[0]
    plain = {key: row for key, row in _by_key(rows, base).items()
             if curves is None or row["codec"] in curves}
    tuned = _by_key(rows, adapted)
    ceiling = _by_key(rows, reference) if reference else None
    keys = plain.keys() & tuned.keys()
    if ceiling is not None:
        keys &= ceiling.keys()
    images = sorted({sha for sha, _ in keys})
    group_of = {sha: source_group(row["image_id"]) for (sha, _), row in plain.items()}
    index = {sha: i for i, sha in enumerate(images)}
    lost, recovered = np.zeros(len(images)), np.zeros(len(images))
    for key in keys:
        base_value = plain[key]["primary_value"]
        best = 1.0 if ceiling is None else ceiling[key]["primary_value"]
        lost[index[key[0]]] += best - base_value
        recovered[index[key[0]]] += tuned[key]["primary_value"] - base_value
    if lost.sum() <= 0:
        return None
    shares = [recovered[s].sum() / lost[s].sum()
              for s in _resamples([group_of[sha] for sha in images], bootstrap, seed)
              if lost[s].sum() > 0]
    low, high = np.percentile(shares, [5, 95]) if shares else (np.nan, np.nan)
    return float(recovered.sum() / lost.sum()), float(low), float(high)
