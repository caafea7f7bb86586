"""Learning-rate schedules as pure functions of the step.

A schedule that depends on the step alone (never on wall time or on how the run was split) is
what makes a resumed run end with the same weights as one never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Warm up linearly over ``warmup`` steps, hold, then decay along a half cosine to
    ``floor`` x ``lr`` over the last ``decay_share`` of ``steps``.

    ``decay_share=1`` decays from the first step (the restorer's schedule); the learned
    codec holds for 80% and decays over the last fifth to a tenth.
    """

    lr: float
    steps: int
    warmup: int = 0
    decay_share: float = 1.0
    floor: float = 0.1

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        start = (1 - self.decay_share) * self.steps
        tail = max(0.0, (step - start) / (self.decay_share * self.steps))
        cosine = 0.5 * (1 + math.cos(math.pi * min(tail, 1.0)))
        return self.lr * warm * (self.floor + (1 - self.floor) * cosine)
