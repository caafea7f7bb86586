"""Resumable training checkpoints, shared by every trainer (adapters, restoration, ...).

A checkpoint is the run's identity (the settings that must match to resume), its step, and
named torch states (model, optimiser), written atomically so a kill never leaves half a file.
Resuming from a checkpoint made with other settings is an error rather than a silent restart:
starting over would quietly waste the run that made it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from icm.errors import IcmError
from icm.fileio import write_atomic


def save_checkpoint(path: Path, identity: dict[str, Any], step: int,
                    states: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"identity": identity, "step": step, **states}, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, identity: dict[str, Any],
                    error: type[IcmError] = IcmError) -> dict[str, Any] | None:
    """The checkpoint's contents (``step`` as an int), or None when there is none; a torn,
    foreign or mismatched file raises ``error`` naming it."""
    import torch

    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["step"] = int(state["step"])
        found = state["identity"]
    except Exception as exc:  # a torn or foreign file: say which and stop
        raise error(f"checkpoint does not load ({type(exc).__name__}); delete it to start "
                    "over", path) from None
    if found != identity:
        raise error("checkpoint was made with other settings; delete it to start over or "
                    "rerun with the same ones", path)
    return state
