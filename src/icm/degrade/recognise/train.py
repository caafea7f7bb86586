"""Training the recogniser, deterministically: features of clean photos and of their synthetic
degradations (:func:`training_samples`), then a class-balanced softmax fit with scipy's L-BFGS
and one ridge strength regressor per class (:func:`fit_recogniser`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypedDict, Unpack

import numpy as np
from scipy import optimize

from icm.degrade.base import check_strength
from icm.degrade.recognise.features import image_features
from icm.degrade.recognise.model import CLEAN, Z_CLIP, Recogniser
from icm.degrade.registry import DEGRADATIONS, get_degradation
from icm.errors import IcmError
from icm.image.datasets import Dataset, DatasetImage, open_dataset
from icm.image.resample import resize


def fit_recogniser(
    features: np.ndarray,
    labels: Sequence[str],
    strengths: Sequence[float],
    classes: Sequence[str],
    l2: float = 1e-3,
    ridge: float = 1.0,
) -> Recogniser:
    """Fit a :class:`Recogniser` to feature rows, class labels and strengths.

    The classifier minimises class-balanced cross-entropy plus ``l2 / 2 * |W|^2`` (biases free)
    with L-BFGS from zeros, which is deterministic. Balanced, because a training set holds one
    clean copy of each photo but one per strength of each degradation. Each degradation's
    strength regressor is a ridge regression (penalty ``ridge`` per sample) on its own rows.
    """
    x = np.asarray(features, dtype=np.float64)
    classes = tuple(classes)
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    s = np.asarray(strengths, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.clip((x - mean) / scale, -Z_CLIP, Z_CLIP)
    n, n_features = z.shape
    n_classes = len(classes)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sample_weight = (n / (n_classes * np.maximum(counts, 1.0)))[y] / n
    onehot = np.eye(n_classes)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights = theta[:n_classes * n_features].reshape(n_classes, n_features)
        bias = theta[n_classes * n_features:]
        logits = z @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1, keepdims=True))
        log_p = logits - log_norm
        value = -(sample_weight * (log_p * onehot).sum(axis=1)).sum()
        value += 0.5 * l2 * float((weights * weights).sum())
        residual = (np.exp(log_p) - onehot) * sample_weight[:, None]
        grad_w = residual.T @ z + l2 * weights
        return float(value), np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    start = np.zeros(n_classes * (n_features + 1))
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B",
                               options={"maxiter": 3000, "maxcor": 20})
    weights = result.x[:n_classes * n_features].reshape(n_classes, n_features)
    bias = result.x[n_classes * n_features:]
    strength_weights = np.zeros((n_classes, n_features))
    strength_bias = np.zeros(n_classes)
    for c in range(n_classes):
        rows = y == c
        if classes[c] == CLEAN or rows.sum() < 2:
            continue
        zc, sc = z[rows], s[rows]
        centre, target = zc.mean(axis=0), sc.mean()
        gram = (zc - centre).T @ (zc - centre) + ridge * rows.sum() * np.eye(n_features)
        strength_weights[c] = np.linalg.solve(gram, (zc - centre).T @ (sc - target))
        strength_bias[c] = target - centre @ strength_weights[c]
    return Recogniser(classes, mean, scale, weights, bias, strength_weights, strength_bias)


ImageSource = str | os.PathLike[str] | np.ndarray


def _clean_images(images: ImageSource | Iterable[ImageSource]) -> Iterable[tuple[str, Any]]:
    """``(id, loader)`` pairs from a dataset spec, a list of specs or paths, or arrays."""
    items = [images] if isinstance(images, str | os.PathLike | np.ndarray | Dataset) else images
    for number, item in enumerate(items):
        if isinstance(item, np.ndarray):
            yield f"array{number}", (lambda item=item: item)
        elif isinstance(item, DatasetImage):
            yield item.id, item.load
        else:
            dataset = item if isinstance(item, Dataset) else open_dataset(item)
            for image in dataset:
                yield f"{dataset.name}/{image.id}", image.load


def training_samples(
    images: ImageSource | Iterable[ImageSource],
    strengths: Sequence[float] = (0.3, 0.7),
    seed: int = 0,
    names: Sequence[str] | None = None,
    crop: int | None = None,
    crops_per_image: int = 1,
    progress: Callable[[int, int], None] | None = None,
    rescaled_views: int = 0,
) -> tuple[np.ndarray, list[str], list[float]]:
    """Features, labels and strengths of clean and degraded copies of every image.

    Each image (or each of ``crops_per_image`` random ``crop`` x ``crop`` windows of it) gives
    one clean sample and one per degradation in ``names`` (default: all registered) and
    strength. ``rescaled_views`` more copies of each image, downscaled by a random factor in
    [0.5, 0.9], do the same: photos reach a machine at many scales, and downscaling smooths
    away the grain that otherwise marks the few clean training photos (clean Kodak photos,
    smoother than CBSD68's, were read as raindrops). Every random draw (window, scale,
    degradation seed) comes from ``seed`` and the sample's position, so equal arguments give
    equal samples.
    """
    names = _class_names(names)[1:]
    strengths = [check_strength(s) for s in strengths]
    if not strengths or min(strengths) <= 0.0:
        raise IcmError("training strengths must be in (0, 1]")
    sources = list(_rescaled(_clean_images(images), rescaled_views, seed))
    per_view = 1 + len(names) * len(strengths)
    total = len(sources) * crops_per_image * per_view
    rows: list[np.ndarray] = []
    labels: list[str] = []
    values: list[float] = []
    for i, (_, load) in enumerate(sources):
        picture = load()
        for k in range(crops_per_image):
            rng = np.random.default_rng([seed, i, k])
            view = _random_window(picture, crop, rng) if crop else picture
            rows.append(image_features(view))
            labels.append(CLEAN)
            values.append(0.0)
            for c, name in enumerate(names):
                for j, strength in enumerate(strengths):
                    sample_seed = int(np.random.SeedSequence([seed, i, k, c, j]
                                                             ).generate_state(1)[0])
                    damaged = get_degradation(name).apply(view, strength, sample_seed)
                    rows.append(image_features(damaged))
                    labels.append(name)
                    values.append(strength)
            if progress is not None:
                progress(len(rows), total)
    return np.array(rows), labels, values


def _class_names(names: Sequence[str] | None) -> list[str]:
    chosen = sorted(DEGRADATIONS) if names is None else [n.strip().lower() for n in names]
    for name in chosen:
        get_degradation(name)  # an unknown name is a one-line error
    return [CLEAN, *dict.fromkeys(n for n in chosen if n != CLEAN)]


def _rescaled(sources: Iterable[tuple[str, Any]], copies: int,
              seed: int) -> Iterator[tuple[str, Any]]:
    """Each source, then ``copies`` downscaled versions of it (factor drawn in [0.5, 0.9])."""
    for i, (key, load) in enumerate(sources):
        yield key, load
        for copy in range(copies):
            factor = float(np.random.default_rng([seed, i, copy, 7]).uniform(0.5, 0.9))
            yield key, lambda load=load, factor=factor: _downscale(load(), factor)


def _downscale(picture: np.ndarray, factor: float) -> np.ndarray:
    height, width = picture.shape[:2]
    return resize(picture, max(16, round(width * factor)), max(16, round(height * factor)))


def _random_window(picture: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` square at a random place whose corner is on the 16-px grid (or all of it)."""
    height, width = picture.shape[:2]
    top = int(rng.integers(0, max(1, (height - side) // 16 + 1))) * 16
    left = int(rng.integers(0, max(1, (width - side) // 16 + 1))) * 16
    return np.ascontiguousarray(picture[top:top + side, left:left + side])


class Sampling(TypedDict, total=False):
    """:func:`training_samples`' settings, which :func:`train_recogniser` passes on."""

    strengths: Sequence[float]
    seed: int
    names: Sequence[str] | None
    crop: int | None
    crops_per_image: int
    progress: Callable[[int, int], None] | None
    rescaled_views: int


def train_recogniser(images: ImageSource | Iterable[ImageSource], l2: float = 1e-3,
                     **sampling: Unpack[Sampling]) -> Recogniser:
    """Train a recogniser on clean photos and their synthetic degradations; deterministic.

    ``images`` is a dataset spec (a folder, a list file, ``"samples"``), or a list of specs,
    image files, ``DatasetImage``s or arrays. See :func:`training_samples` for what is
    generated from them (``sampling``) and :func:`fit_recogniser` for the fit.
    """
    features, labels, values = training_samples(images, **sampling)
    return fit_recogniser(features, labels, values, _class_names(sampling.get("names")), l2=l2)

