"""Scores shared by the machine families: text distances, answer overlap, divergence, mAP.

Everything here is plain numpy on plain data (strings, lists, arrays) so a stored output can be
re-scored without loading any model. Conventions for empty inputs are fixed here, once, because
compression can make a machine see nothing at all and the tables must still be comparable.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_SPACE_RUN = re.compile(r"[^\S\n]+")


def normalize_whitespace(text: str) -> str:
    """The form every OCR comparison uses: each line stripped, inner whitespace runs collapsed to
    one space, blank lines dropped, line breaks kept (``\\r\\n`` counts as a break).

    Layout noise (trailing blanks, double spaces, empty lines) is not what compression destroys,
    so it should not count as a character error.
    """
    lines = (_SPACE_RUN.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each cost 1).

    rapidfuzz's C implementation when it is installed; otherwise a row-by-row numpy version whose
    insertion step is a running minimum, so a 2000-character page still takes milliseconds.
    """
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:
        return _levenshtein_numpy(a, b)
    return int(Levenshtein.distance(a, b))


def _levenshtein_numpy(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    target = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    offsets = np.arange(len(b) + 1)
    previous = offsets.copy()
    for i, char in enumerate(a, start=1):
        code = ord(char)
        current = np.empty_like(previous)
        current[0] = i
        # deletion (previous[j] + 1) or substitution (previous[j-1] + cost) ...
        current[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (target != code))
        # ... then insertion: current[j] = min_k<=j current[k] + (j - k), a running minimum
        current = np.minimum.accumulate(current - offsets) + offsets
        previous = current
    return int(previous[-1])


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edit distance / max(1, len(reference)).

    Not clipped: a hypothesis full of invented text can exceed 1. An empty reference scores the
    hypothesis length (0.0 when both are empty).
    """
    return levenshtein(hypothesis, reference) / max(1, len(reference))


def text_agreement(a: str, b: str) -> float:
    """max(0, 1 - CER(a vs b)): 1.0 for identical text, 0.0 once errors reach b's length."""
    return max(0.0, 1.0 - cer(a, b))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1: multiset overlap of normalised tokens; both empty -> 1.0, one -> 0.0."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(a: str, b: str) -> float:
    """1.0 when the two answers are equal after SQuAD normalisation, else 0.0."""
    return float(normalize_answer(a) == normalize_answer(b))


def kl_divergence(
    p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray, eps: float = 1e-8
) -> float:
    """KL(p || q) in nats, after flooring both at ``eps`` and renormalising.

    The floor keeps stored, rounded probabilities (exact zeros) finite. 0 for equal
    distributions, unbounded above: a divergence, lower is better, never a [0, 1] score.
    """
    p_arr = np.maximum(np.asarray(p, dtype=np.float64), eps)
    q_arr = np.maximum(np.asarray(q, dtype=np.float64), eps)
    if p_arr.shape != q_arr.shape:
        raise ValueError(f"distributions differ in shape: {p_arr.shape} vs {q_arr.shape}")
    p_arr /= p_arr.sum()
    q_arr /= q_arr.sum()
    return max(0.0, float(np.sum(p_arr * np.log(p_arr / q_arr))))


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each ``[x0, y0, x1, y1]`` row with one box, continuous coordinates (no +1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64)
    width = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    height = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = width * height
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    own = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    union = area + own - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _rows(rows: Sequence[Sequence[float]] | np.ndarray, width: int) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, width)
    array = array.reshape(len(array), -1)
    if array.shape[1] < width:
        raise ValueError(f"box rows need at least {width} columns, got {array.shape[1]}")
    return array


def average_precision_50(
    detections: Sequence[Sequence[float]] | np.ndarray,
    ground_truth: Sequence[Sequence[float]] | np.ndarray,
    iou_threshold: float = 0.5,
) -> float:
    """AP of one class at IoU >= 0.5, all-point interpolated (VOC 2010+ / COCO style).

    ``detections`` are ``[x0, y0, x1, y1, score]`` rows, ``ground_truth`` ``[x0, y0, x1, y1]``
    rows (extra columns are ignored). Detections are taken by descending score (ties keep input
    order) and each is matched greedily to the still-unmatched truth box it overlaps most; a
    match needs IoU >= ``iou_threshold``. AP is the area under the precision-recall curve after
    making precision monotone (the running maximum from the right).

    Empty sets: both empty -> 1.0 (nothing to find, nothing invented); truth empty but
    detections present -> 0.0; detections empty but truth present -> 0.0.
    """
    dets = _rows(detections, 5)
    truth = _rows(ground_truth, 4)[:, :4]
    if len(truth) == 0 and len(dets) == 0:
        return 1.0
    if len(truth) == 0 or len(dets) == 0:
        return 0.0
    order = np.argsort(-dets[:, 4], kind="stable")
    matched = np.zeros(len(truth), dtype=bool)
    hits = np.zeros(len(order), dtype=bool)
    for rank, index in enumerate(order):
        ious = box_iou(truth, dets[index, :4])
        ious[matched] = -1.0
        best = int(np.argmax(ious))
        if ious[best] >= iou_threshold:
            matched[best] = True
            hits[rank] = True
    true_pos = np.cumsum(hits)
    recall = true_pos / len(truth)
    precision = true_pos / np.arange(1, len(hits) + 1)
    # the precision envelope, then the area under the stepped curve at each recall increase
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def map50(
    pred_boxes: Sequence[Sequence[float]] | np.ndarray,
    true_boxes: Sequence[Sequence[float]] | np.ndarray,
    iou_threshold: float = 0.5,
) -> float:
    """mAP@0.5: the mean of ``average_precision_50`` over classes present in either set.

    Rows are ``[x0, y0, x1, y1, score, class_id]`` (the detector's own output format); truth
    rows may drop the score (``[x0, y0, x1, y1, class_id]``): the class is always the last
    column. A class only one side has scores 0.0, so invented and missed classes both count.
    Both sets empty -> 1.0; exactly one empty -> 0.0.
    """
    preds = [list(row) for row in pred_boxes]
    truths = [list(row) for row in true_boxes]
    if not preds and not truths:
        return 1.0
    classes = sorted({int(row[-1]) for row in preds} | {int(row[-1]) for row in truths})
    scores = []
    for cls in classes:
        dets = [row[:5] for row in preds if int(row[-1]) == cls]
        gts = [row[:4] for row in truths if int(row[-1]) == cls]
        scores.append(average_precision_50(dets, gts, iou_threshold))
    return float(np.mean(scores))
