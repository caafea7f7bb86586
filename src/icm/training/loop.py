"""The one training loop every trainer runs: resume, step, checkpoint, report progress.

A trainer brings its model, its batches and its loss (a :class:`Task`); the loop owns
everything they share, so resuming behaves the same everywhere: a step's batch and noise are
functions of ``(seed, step)`` alone and the learning rate of the step alone, and the
checkpoint (model, optimiser, step, loss history, wall time, and whatever the task adds) is
written atomically, so a run killed at any moment and started again with the same settings
ends with the same weights as one never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from icm.errors import IcmError
from icm.training.checkpoints import load_checkpoint, save_checkpoint

Progress = Callable[[str, int, int], None]


class Task(Protocol):
    """What one trainer supplies to the loop."""

    def batch(self, step: int) -> Any:
        """The batch of ``step``: a pure function of the seed and the step."""

    def loss(self, batch: Any) -> tuple[Any, Mapping[str, float]]:
        """The loss tensor to minimise and the figures to show beside it."""


@runtime_checkable
class PartlyTrained(Protocol):
    """A model that trains only some of its weights (an adapter on a frozen encoder): its
    checkpoints hold those alone, not a copy of the frozen network at every save."""

    def trainable_state(self) -> dict[str, Any]:
        """The trained tensors, by name."""

    def load_trainable(self, state: dict[str, Any], path: str = "") -> None:
        """Put tensors saved by :meth:`trainable_state` back (an error names ``path``)."""


@dataclass
class Settings:
    """How the loop runs: how long, where it checkpoints, and the optional per-step habits.

    ``learning_rate`` gives each step's rate; a parameter group with an ``lr_scale`` entry
    (pretrained weights fine-tuned beside new ones, say) moves at that share of it.
    ``step_seed``: torch's generator is reseeded with ``step_seed * 1_000_003 + step`` before
    each step, so a model whose forward pass draws noise (quantisation proxies) draws the same
    noise on a resumed run. ``clip_norm``: gradients are clipped to that norm.
    ``final_checkpoint``: also checkpoint after the last step (a trainer that keeps its
    checkpoint as the run's record) rather than only between steps.
    """

    steps: int
    checkpoint: Path
    identity: dict[str, Any]
    learning_rate: Callable[[int], float]
    checkpoint_every: int = 100
    step_seed: int | None = None
    clip_norm: float | None = None
    final_checkpoint: bool = False
    error: type[IcmError] = IcmError


@dataclass
class TrainedRun:
    """What every trainer returns: where its model went, its steps, where this run resumed,
    and its losses; each trainer's subclass adds its own figures (:meth:`figures`)."""

    out: Path
    steps: int
    resumed_from: int
    losses: list[float]

    def figures(self) -> dict[str, Any]:
        """The trainer's own figures for :meth:`to_json` (photos, parameters, validation)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        """What ``icm ... train --json`` prints: the run, its figures, and its first and last
        loss rather than every step's."""
        return {"out": str(self.out), "steps": self.steps, "resumed_from": self.resumed_from,
                **self.figures(),
                "first_loss": self.losses[0] if self.losses else None,
                "last_loss": self.losses[-1] if self.losses else None}


@dataclass
class Outcome:
    """What a run of the loop did: where it started, every loss so far, the wall time."""

    resumed_from: int
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    steps_run: int = 0

    @property
    def step(self) -> int:
        """The steps done so far, before and after a resume."""
        return self.resumed_from + self.steps_run

    @property
    def new_losses(self) -> list[float]:
        """The losses of the steps this process ran (not those before a resume)."""
        return self.losses[len(self.losses) - self.steps_run:]


def run(task: Task, model: Any, optimiser: Any, settings: Settings,
        progress: Progress | None = None, *, resumed: Outcome | None = None,
        describe: Callable[[float, Mapping[str, float]], str] | None = None,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        after_step: Callable[[int], bool | None] | None = None) -> Outcome:
    """Train ``model`` with ``optimiser`` on ``task`` from the last checkpoint to the end.

    ``resumed`` is :func:`resume`'s result when the trainer needed to know where it starts
    before training (to validate an untrained model, say); otherwise the loop resumes itself.
    ``extra_state`` adds the task's own state to each checkpoint (an early-stopping best, a
    curve); it comes back in :attr:`Outcome.extra` on resume, for the task to restore.
    ``after_step`` runs after each step's update with the number of steps done (validation
    every k steps, say); when it returns True the run stops there (early stopping), without a
    checkpoint, since the trainer is about to write its result.
    """
    import torch

    outcome = resumed if resumed is not None else resume(model, optimiser, settings)
    began = time.perf_counter()
    model.train()
    for step in range(outcome.resumed_from, settings.steps):
        if settings.step_seed is not None:
            torch.manual_seed(settings.step_seed * 1_000_003 + step)
        batch = task.batch(step)
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate(step) * group.get("lr_scale", 1.0)
        loss, parts = task.loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
        optimiser.step()
        outcome.losses.append(float(loss.detach()))
        outcome.steps_run += 1
        if progress is not None:
            text = describe(outcome.losses[-1], parts) if describe else "training"
            progress(text, step + 1, settings.steps)
        if after_step is not None and after_step(step + 1):
            break
        if _checkpoint_due(step + 1, settings):
            elapsed = outcome.wall_s + time.perf_counter() - began
            save_checkpoint(settings.checkpoint, settings.identity, step + 1, {
                "model": _state_of(model), "optimiser": optimiser.state_dict(),
                "losses": outcome.losses, "wall_s": elapsed,
                **(extra_state() if extra_state else {})})
    outcome.wall_s += time.perf_counter() - began
    return outcome


def _state_of(model: Any) -> dict[str, Any]:
    return model.trainable_state() if isinstance(model, PartlyTrained) else model.state_dict()


def _checkpoint_due(done: int, settings: Settings) -> bool:
    if done == settings.steps:
        return settings.final_checkpoint
    return done % settings.checkpoint_every == 0


def resume(model: Any, optimiser: Any, settings: Settings) -> Outcome:
    """Load a matching checkpoint into ``model`` and ``optimiser``: the outcome so far (a
    fresh start when there is none)."""
    state = load_checkpoint(settings.checkpoint, settings.identity, settings.error)
    if state is None:
        return Outcome(0)
    step = state["step"]
    if step > settings.steps:
        raise settings.error(f"checkpoint is at step {step}, past --steps {settings.steps}",
                             settings.checkpoint)
    try:
        if isinstance(model, PartlyTrained):
            model.load_trainable(state["model"], str(settings.checkpoint))
        else:
            model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise settings.error(f"checkpoint does not fit the network ({first}); delete it to "
                             "start over", settings.checkpoint) from None
    known = ("identity", "step", "model", "optimiser", "losses", "wall_s")
    return Outcome(step, [float(v) for v in state.get("losses", [])],
                   float(state.get("wall_s", 0.0)),
                   {key: value for key, value in state.items() if key not in known})
