"""``fisher=<machine>``: the Fisher diagonal of a differentiable machine, pooled to blocks.

The weights ``for=MACHINE`` allocates by (:mod:`icm.importance.fisher`): how much the machine's
output moves per unit of squared pixel error in each block, at second order. Unlike the other
providers the map is not stretched to [0, 1] by percentiles: it is divided by its largest
block, so ratios between blocks (which the RD rule turns into QP offsets) survive, and blocks
the machine never reads stay exactly 0.
"""

from __future__ import annotations

import numpy as np

from icm.importance.fisher import DEFAULT_PROBES, machine_block_weights
from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap
from icm.importance.providers.sensitivity import DEFAULT_MACHINE, SensitivityProvider
from icm.importance.registry import UnknownImportanceError, register_importance


@register_importance
class FisherProvider(SensitivityProvider):
    name = "fisher"
    summary = "the machine's output curvature per block (Fisher diagonal, second order)"
    argument_help = "MACHINE (a machine with torch parts, e.g. classify:efficientnet-lite0)"
    default_argument = DEFAULT_MACHINE
    install_hint = "pip install 'icm[bench]' (torch + EfficientNet-Lite0)"

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        parts = self.machine().torch_parts()
        if parts is None:
            raise UnknownImportanceError(
                f"importance fisher: machine {self.machine().name} is not differentiable "
                "(torch models are; ncnn/ONNX ones are not)"
            )
        weights = machine_block_weights(parts, image, block)
        peak = float(weights.max())
        values = weights / peak if peak > 0 else np.ones_like(weights)
        height, width = image.shape[:2]
        params = {"machine": self.machine().name, "probes": DEFAULT_PROBES}
        return ImportanceMap(values, block, width, height, self.full_name, params)

    def fingerprint(self) -> str:
        return f"{self.full_name}|{self.machine().fingerprint()}|fisher{DEFAULT_PROBES}"
