"""Resumable training checkpoints, shared by every trainer (adapters, restoration, ...).

A checkpoint is the run's identity (the settings that must match to resume), its step, and
named torch states (model, optimiser), written atomically so a kill never leaves half a file.
Resuming from a checkpoint made with other settings is an error rather than a silent restart:
starting over would quietly waste the run that made it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from icm.errors import IcmError
from icm.fileio import write_atomic
from icm.training.weights import MAX_DEPTH, shown, tensor_problem

#: settings that may change between a run and its resume: training longer, checkpointing more
#: often, more threads
VOLATILE = ("steps", "checkpoint_every", "threads")


def identity_of(config: Any, **fixed: Any) -> dict[str, Any]:
    """What a checkpoint of a run with the dataclass ``config`` must match to be resumed:
    every setting but the :data:`VOLATILE` ones, as plain values (paths as text, tuples as
    lists, so a checkpoint compares equal whichever way it was written). ``fixed`` replaces
    fields whose stored value is not what decides the run (a cache folder, levels filled in).
    """
    record = {name: _plain(value) for name, value in asdict(config).items()
              if name not in VOLATILE}
    record.update(fixed)
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def save_checkpoint(path: Path, identity: dict[str, Any], step: int,
                    states: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"identity": identity, "step": step, **states}, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, identity: dict[str, Any],
                    error: type[IcmError] = IcmError) -> dict[str, Any] | None:
    """The checkpoint's contents (``step`` as an int), or None when there is none; a torn,
    foreign, hostile or mismatched file raises ``error`` naming it.

    ``weights_only=True`` is what makes reading a checkpoint from outside safe: torch's full
    unpickler would run any code the file names. What the restricted one returns is then
    walked before anyone uses it: nesting is bounded (comparing the identity recurses) and
    every tensor and number must be finite, or training would resume into NaN.
    """
    import torch

    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file (or one asking for code): say which
        raise error(f"checkpoint does not load ({type(exc).__name__}); delete it to start "
                    "over", path) from None
    problem = _state_problem(state)
    if problem:
        raise error(f"checkpoint {problem}; delete it to start over", path)
    if state["identity"] != identity:
        raise error("checkpoint was made with other settings; delete it to start over or "
                    "rerun with the same ones", path)
    return state


def _state_problem(state: Any) -> str:
    """Why a loaded checkpoint cannot be resumed from ('' when it can)."""
    if not isinstance(state, dict) or "identity" not in state:
        return "is not an icm checkpoint"
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"step is {shown(step)}, not a count of steps"
    for name, value in _leaves(state):
        if name is None:
            return f"is nested deeper than {MAX_DEPTH} levels"
        problem = _leaf_problem(value)
        if problem:
            return f"value {shown(name)} {problem}"
    return ""


def _leaf_problem(value: Any) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return tensor_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "is NaN or infinite"
    return ""


def _leaves(state: Any) -> Iterator[tuple[str | None, Any]]:
    """(dotted name, value) of everything in nested dicts, lists and tuples, iteratively; a
    ``None`` name means the nesting went deeper than :data:`MAX_DEPTH`."""
    pending: list[tuple[str, Any, int]] = [("", state, 0)]
    while pending:
        name, value, depth = pending.pop()
        if depth > MAX_DEPTH:
            yield None, value
            return
        if isinstance(value, dict):
            pending.extend((f"{name}.{key}".lstrip("."), item, depth + 1)
                           for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{name}[{index}]", item, depth + 1)
                           for index, item in enumerate(value))
        else:
            yield name, value
