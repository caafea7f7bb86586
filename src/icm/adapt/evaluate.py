"""Reading views through an adapted encoder, and scoring outputs against the pristine ones.

The scores are the bench's own (``classification_fidelity``): KL(pristine || decoded) in nats
with probabilities floored at 1e-8, top-1 agreement and top-5 overlap, so what training
selects on and what the gate decides by are what a bench report reads. A machine without
classes (CLIP's image tower) is scored by the cosine distance of its embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from icm.adapt.conditioning import Condition
from icm.adapt.views import Views, head

Showing = Callable[[Condition], Condition]
TOP_K = 5
EPS = 1e-8


def as_known(condition: Condition) -> Condition:
    return condition


def read(parts: Any, adapted: Any, views: Views, rows: Sequence[int],
         showing: Showing = as_known, batch: int = 32) -> np.ndarray:
    """The adapted encoder's outputs on ``rows``, each told its condition as ``showing``
    makes it (e.g. with the codec hidden, as a codec not trained on is shown)."""
    import torch

    read_head = head(parts)
    adapted.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            adapted.condition([showing(views.condition(r)) for r in chunk])
            out.append(views.forward(adapted.encoder, chunk, read_head).float()
                       .reshape(len(chunk), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def scores(pristine: np.ndarray, decoded: np.ndarray, classes: bool) -> dict[str, np.ndarray]:
    """Per-sample agreement of ``decoded`` outputs with ``pristine`` ones: ``divergence``
    (KL for classes, else 1 - cosine) and, for classes, ``top1`` and ``top5``."""
    if not classes:
        a = pristine / np.linalg.norm(pristine, axis=1, keepdims=True).clip(1e-12)
        b = decoded / np.linalg.norm(decoded, axis=1, keepdims=True).clip(1e-12)
        return {"divergence": 1.0 - (a * b).sum(axis=1)}
    p, q = _probabilities(pristine), _probabilities(decoded)
    kl = np.maximum(0.0, (p * np.log(p / q)).sum(axis=1))
    top_p = np.argsort(-pristine, axis=1, kind="stable")[:, :TOP_K]
    top_q = np.argsort(-decoded, axis=1, kind="stable")[:, :TOP_K]
    top1 = (top_p[:, 0] == top_q[:, 0]).astype(float)
    top5 = np.array([len(set(a) & set(b)) / TOP_K for a, b in zip(top_p, top_q, strict=True)])
    return {"divergence": kl, "top1": top1, "top5": top5}


def _probabilities(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    p = np.maximum(z / z.sum(axis=1, keepdims=True), EPS)
    return p / p.sum(axis=1, keepdims=True)


def compare(parts: Any, adapted: Any, views: Views, rows: Sequence[int],
            showing: Showing = as_known) -> dict[str, dict[str, np.ndarray]]:
    """Scores of the plain machine (``plain``) and the adapted one (``adapted``) on ``rows``
    against the plain machine's output on each row's pristine view."""
    classes = parts.logits is not None
    reference = views.outputs([views.pristine[r] for r in rows]).numpy()
    plain = views.outputs(rows).numpy()
    return {"plain": scores(reference, plain, classes),
            "adapted": scores(reference, read(parts, adapted, views, rows, showing), classes)}
