"""The gate: an adapter acts only on the conditions where validation showed it helps.

An adapter trained on a few dozen photos can help at one codec and rate and hurt at another,
and a user reading new photos cannot see which. So after training, every validation image is
read with and without the adapter, and each condition (codec x rate bucket; one for an
unconditioned adapter) is opened only when the divergence from the pristine output fell
reliably there: the lower end of a one-sided 90% interval from resampling validation photos
is above zero, and top-1 agreement did not fall on average. Every other condition, including
one validation never showed, reads through the plain machine: where the adapter cannot know it
helps, it does nothing. The decisions and their evidence travel in the adapter file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from icm.adapt.conditioning import Conditioning

#: the gate key of an unconditioned adapter: one decision for every image
ALL = "all"
#: fewer validation photos than this at a condition: too little to know, the gate stays shut
MIN_PHOTOS = 3
BOOTSTRAP = 1000


@dataclass(frozen=True)
class GateEntry:
    """One condition's decision and the validation evidence for it."""

    open: bool
    samples: int
    photos: int
    #: mean fall in divergence from the pristine output (KL, or 1 - cosine), and its 90% low
    gain: float
    #: None when too few photos to resample
    gain_low: float | None
    #: mean change in top-1 agreement (None for machines without classes)
    top1_change: float | None = None

    def record(self) -> dict:
        return asdict(self)


def gate_key(conditioning: Conditioning, codec_id: int, bucket_id: int,
             conditioned: bool = True) -> str:
    """``jpeg@3`` (codec name, bucket id), ``unknown@3`` for a codec not trained on, ``all``
    for an unconditioned adapter."""
    return f"{conditioning.codec_name(codec_id)}@{bucket_id}" if conditioned else ALL


def decide(keys: Sequence[str], photos: Sequence[str], gain: np.ndarray,
           top1_change: np.ndarray | None = None, seed: int = 0) -> dict[str, GateEntry]:
    """A :class:`GateEntry` per key from per-sample validation results: ``gain`` is the
    plain machine's divergence minus the adapted one's (positive: the adapter helped)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key].append(index)
    rng = np.random.default_rng(seed)
    return {key: _entry(np.asarray(rows), photos, gain, top1_change, rng)
            for key, rows in sorted(groups.items())}


def _entry(rows: np.ndarray, photos: Sequence[str], gain: np.ndarray,
           top1_change: np.ndarray | None, rng: np.random.Generator) -> GateEntry:
    names = [photos[i] for i in rows]
    low = cluster_bootstrap(gain[rows], names, rng)[0]
    change = None if top1_change is None else float(top1_change[rows].mean())
    count = len(set(names))
    opened = count >= MIN_PHOTOS and low > 0 and (change is None or change >= 0)
    return GateEntry(bool(opened), len(rows), count, float(gain[rows].mean()),
                     float(low) if np.isfinite(low) else None, change)


def cluster_bootstrap(values: np.ndarray, groups: Sequence[str], rng: np.random.Generator,
                      percentiles: Sequence[float] = (5.0,), rounds: int = BOOTSTRAP
                      ) -> list[float]:
    """Percentiles of the mean of ``values`` over resamples of whole groups (source photos):
    views of one photo share its content, so photos, not samples, are the independent units.
    Fewer than two groups: -inf for every percentile (nothing can be known)."""
    labels, index = np.unique(np.asarray(groups), return_inverse=True)
    if len(labels) < 2:
        return [float("-inf")] * len(percentiles)
    sums = np.bincount(index, weights=values, minlength=len(labels))
    counts = np.bincount(index, minlength=len(labels)).astype(float)
    draws = rng.integers(0, len(labels), size=(rounds, len(labels)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return [float(v) for v in np.percentile(means, list(percentiles))]


def open_keys(gate: Mapping[str, GateEntry]) -> frozenset[str]:
    return frozenset(key for key, entry in gate.items() if entry.open)


def describe_gate(gate: Mapping[str, GateEntry] | None, conditioning: Conditioning
                  ) -> dict[str, str]:
    """Per condition, what the adapter does there and why: the words a user reads to know
    whether to trust it on their images."""
    if gate is None:
        return {"*": "adapted everywhere: no gate (no validation photos, or a file made before "
                     "gates)"}
    record = {}
    for key, entry in sorted(gate.items()):
        codec, _, bucket = key.partition("@")
        label = key if key == ALL else f"{codec} {conditioning.bucket_range(int(bucket))}"
        verb = "adapted" if entry.open else "identity (plain machine)"
        bound = "n/a" if entry.gain_low is None else f"{-entry.gain_low:+.4f}"
        what = "cosine distance" if entry.top1_change is None else "KL"
        record[label] = (f"{verb}: on validation, {what} to the pristine output "
                         f"{-entry.gain:+.4f} (90% upper bound {bound})"
                         + ("" if entry.top1_change is None else
                            f", top-1 agreement {entry.top1_change:+.3f}")
                         + f"; {entry.samples} views of {entry.photos} photos")
    record["any other condition"] = "identity (plain machine): not seen on validation"
    return record


def gate_summary(gate: Mapping[str, GateEntry] | None) -> str:
    """The gate in one line: which conditions the adapter acts on."""
    if gate is None:
        return "no validation photos: the adapter acts on every condition, ungated"
    shut = sorted(k for k, e in gate.items() if not e.open)
    opened = sorted(k for k, e in gate.items() if e.open)
    return (f"gate: adapts {len(opened)} condition(s) ({', '.join(opened) or 'none'}); "
            f"reads {len(shut)} as the plain machine (no gain on validation)")
