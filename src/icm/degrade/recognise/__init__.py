"""Which degradation is this, and how strong? Recognised from the pixels, without metadata.

Restoration for machines (LL-ICM) needs to know what damaged a picture, and a camera rarely
says. LL-ICM asks DA-CLIP; we need something that runs offline, on a CPU, in milliseconds and
with no weights to download, so the recogniser is a small linear model over hand-crafted
statistics, each chosen because one family of damage moves it in a known direction. Three
modules, each depending only on the ones before it:

* :mod:`~icm.degrade.recognise.features`: the statistics (:func:`image_features`);
* :mod:`~icm.degrade.recognise.model`: the :class:`Recogniser` (a softmax classifier and a
  ridge strength regressor per class, in numpy), its ``.npz`` file, the shipped model
  (:func:`get_recogniser`, :func:`recognise_image`) and :func:`recognise_file`;
* :mod:`~icm.degrade.recognise.train`: fitting one, with numpy and scipy's L-BFGS,
  deterministically (:func:`train_recogniser`).
"""

from icm.degrade.recognise.features import (
    CROP_SIDE,
    FEATURE_VERSION,
    MIN_SIDE,
    VIEW_SIDE,
    feature_names,
    image_features,
)
from icm.degrade.recognise.model import (
    CLEAN,
    SHIPPED_MODEL,
    BadModelError,
    Recogniser,
    Recognition,
    get_recogniser,
    recognise_file,
    recognise_image,
    recogniser_fingerprint,
)
from icm.degrade.recognise.train import (
    ImageSource,
    fit_recogniser,
    train_recogniser,
    training_samples,
)
from icm.lazy import lazy_exports

# FEATURE_NAMES is computed on first use (features.feature_names), not on import
__getattr__ = lazy_exports(__name__, {"FEATURE_NAMES": "icm.degrade.recognise.features"})

__all__ = [
    "CLEAN",
    "CROP_SIDE",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "MIN_SIDE",
    "SHIPPED_MODEL",
    "VIEW_SIDE",
    "BadModelError",
    "ImageSource",
    "Recogniser",
    "Recognition",
    "feature_names",
    "fit_recogniser",
    "get_recogniser",
    "image_features",
    "recognise_file",
    "recognise_image",
    "recogniser_fingerprint",
    "train_recogniser",
    "training_samples",
]
