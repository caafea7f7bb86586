"""A machine read through a trained adapter: ``classify:efficientnet-lite0+adapter=a.safetensors``.

On a decoded image whose codec and bpp are known (``predict_coded``, which ``icm bench`` calls)
the adapter is told them; its pristine outputs are the frozen machine's, so its fidelity is
"adapted model on the decoded image vs the plain model on the pristine one": one minus it is
the information gap of CompressVLMBench's decomposition. Conditions the adapter's gate keeps
shut (no gain shown on validation) read exactly as the frozen machine does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icm.adapt.conditioning import Condition
from icm.fileio import file_digest
from icm.machines.base import Machine, Output, Scores
from icm.machines.registry import REFERENCE_MARK


class AdaptedMachine(Machine):
    """``base`` with the adapter file at ``path`` on its torch model."""

    def __init__(self, base: Machine, path: str) -> None:
        super().__init__(base.spec)
        self.base, self.path = base, Path(path)
        self.family = base.family
        self.primary = base.primary
        self.kinds = base.kinds
        self._adapted: Any = None
        from icm.adapt.files import read_adapter

        self._info = read_adapter(self.path)[1]  # a bad file fails now, in one line

    @property
    def name(self) -> str:
        return f"{self.base.name}+adapter={self.path}"

    @property
    def profile(self):
        return self.base.profile

    def _model(self) -> Any:
        if self._adapted is None:
            from icm.adapt.encoders import AdapterError
            from icm.adapt.files import load_adapter

            parts = self.base.torch_parts()
            if parts is None or parts.predict is None:
                raise AdapterError(f"machine {self.base.name} has no torch model to adapt",
                                   self.path)
            encoder = copy.deepcopy(parts.module)
            self._adapted = (load_adapter(self.path, encoder, self.base.name,
                                          self.base.fingerprint()), parts)
        return self._adapted

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        """Unknown provenance: the frozen machine (the reference every gap is measured from)."""
        return self.base.predict(images)

    def predict_coded(self, images: Sequence[np.ndarray],
                      coded: Sequence[tuple[str, float]]) -> list[Output]:
        adapted, parts = self._model()
        outputs = []
        for image, (codec, bpp) in zip(images, coded, strict=True):
            adapted.condition([Condition(codec, bpp, image.shape[:2])])
            outputs.append(parts.predict(adapted.encoder, image))
        return outputs

    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        return self.base.fidelity(pristine, decoded)

    def accuracy(self, output, truth):
        return self.base.accuracy(output, truth)

    def prepare(self, truths) -> None:
        self.base.prepare(truths)

    def fingerprint(self) -> str:
        tuned = REFERENCE_MARK if self._info.tuned_encoder else ""
        return f"{self.base.fingerprint()}|adapter={file_digest(str(self.path))}{tuned}"

    def versions(self) -> Mapping[str, str]:
        return self.base.versions()
