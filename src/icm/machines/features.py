"""A machine's multi-level features as a training loss (CoTAM's multi-level feature loss).

Pixel losses (MSE, L1) reward smoothing, and smoothing is what costs a machine its answers. A
codec or restorer trained for a machine also matches the machine's intermediate features of the
clean image: shallow taps keep edges and textures, deeper ones keep what the classifier builds
from them. Used by learned-codec training (``icm.learned``) and restorer training
(``icm.restore``).
"""

from __future__ import annotations

import torch

from icm.errors import IcmError
from icm.machines import get_machine
from icm.machines.classify import LITE0_TAPS

#: tap index of Lite0's head: the 1280 features the classifier pools (after its 16 blocks)
LITE0_HEAD = 16
SUPPORTED = ("classify:efficientnet-lite0",)


class MachineFeatures:
    """A frozen machine's multi-level features of images in [0, 1] (differentiable).

    ``taps`` are block indices (0-15) and :data:`LITE0_HEAD`. Shallow taps alone can be matched
    while the head is not: a codec tuned on blocks 2, 4 and 10 may keep them as close as HEVC
    does and still move the head, and with it the class scores, nearly four times as far.
    (Training on the deep taps too did not close that at a CPU budget: see docs/learned.md.)
    """

    def __init__(self, machine: str, taps: tuple[int, ...] = LITE0_TAPS) -> None:
        if machine not in SUPPORTED:
            raise IcmError(f"the machine feature loss supports {', '.join(SUPPORTED)}, "
                           f"not {machine!r}")
        if not taps or any(not 0 <= tap <= LITE0_HEAD for tap in taps):
            raise IcmError(f"feature taps must be block indices 0-{LITE0_HEAD - 1} or "
                           f"{LITE0_HEAD} (the head), got {list(taps)}")
        self.taps = tuple(sorted(set(taps)))
        self.module = get_machine(machine).torch_parts().module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.module
        h = net._swish(net._bn0(net._conv_stem((x * 255.0 - 127.0) / 128.0)))
        taps = []
        for index, block in enumerate(net._blocks[: max(self.taps) + 1]):
            h = block(h)
            if index in self.taps:
                taps.append(h)
        if LITE0_HEAD in self.taps:
            taps.append(net._swish(net._bn1(net._conv_head(h))))
        return taps


def feature_distortion(features: MachineFeatures, x_hat: torch.Tensor,
                       x: torch.Tensor) -> torch.Tensor:
    """Per image, the mean over taps of ||f(x_hat) - f(x)||^2 / ||f(x)||^2: relative, so each
    tap weighs the same whatever its activation scale."""
    with torch.no_grad():
        reference = features(x)
    return relative_distance(features(x_hat), reference)


def relative_distance(taps: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """Per image, the mean over taps of ||tap - reference||^2 / ||reference||^2."""
    terms = [(a - r).pow(2).mean(dim=(1, 2, 3)) / r.pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-8)
             for a, r in zip(taps, reference, strict=True)]
    return torch.stack(terms).mean(dim=0)
