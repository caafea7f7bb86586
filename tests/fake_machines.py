"""Tiny deterministic machines for bench tests, registered like any plugin.

``fake:blocks`` reads an image as the mean colour of an 8x8 grid of blocks: cheap, exactly
repeatable, and it really does lose fidelity when a codec smears the blocks. ``fake:slow``
sleeps per image (to catch a run mid-way); ``fake:dies`` kills its own worker process the first
time it reads an image while a marker file exists (to test a worker dying mid-run).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from icm.machines import InputProfile, Machine, register_machine


def die_once(variable: str) -> None:
    """Kill this process if the marker file named by ``variable`` exists, removing it first;
    of several processes racing for one marker, only the one that removes it dies."""
    marker = os.environ.get(variable)
    if not marker:
        return
    try:
        Path(marker).unlink()
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


@register_machine("fake:blocks", "fake:slow", "fake:dies")
class BlockMeanMachine(Machine):
    family = "fake"
    primary = "agreement"
    summary = "mean colour of an 8x8 block grid (tests only)"

    @property
    def profile(self) -> InputProfile:
        return InputProfile(size=None)

    def predict(self, images):
        outputs = []
        for image in images:
            if self.spec.model == "slow":
                time.sleep(float(os.environ.get("ICM_FAKE_SLEEP", "0.3")))
            if self.spec.model == "dies":
                die_once("ICM_FAKE_DIE_MARKER")
            rows = np.array_split(np.arange(image.shape[0]), 8)
            cols = np.array_split(np.arange(image.shape[1]), 8)
            grid = [[image[r][:, c].mean(axis=(0, 1)).round(3).tolist() for c in cols]
                    for r in rows]
            outputs.append({"grid": grid})
        return outputs

    def fidelity(self, pristine, decoded):
        a, b = np.asarray(pristine["grid"]), np.asarray(decoded["grid"])
        error = float(np.abs(a - b).mean()) / 255.0
        return {"agreement": max(0.0, 1.0 - 20 * error), "mean_abs_error": error}
