"""Training an adapter: distil on coded views, stop on validation, gate what did not help.

Data (:mod:`icm.adapt.views`): every photo gives square views at several scales of the
machine's input side, each coded by every chosen codec and level. A share of the photos
(``val_share``, or the ``val`` images) is held out: training never sees them, and they alone
decide when to stop and where the adapter may act.

Objective: the benchmark reads the machine's output, so the main term is the KL from the
frozen machine's output on the pristine view to the adapted machine's on the decoded one
(``kl_weight``; the cosine distance of embeddings for a machine without classes). Optional
terms: ``feature_weight`` times the MSE between their final feature maps (over the teacher's
variance: the old objective, which matches features the head may not need), and
``anchor_weight`` times the KL from the plain machine to the adapted one on pristine views
shown coded conditions: an adapter should undo artefacts, not shift what the machine thinks
of any photo, and this term forbids the cheap way to lower the training loss on a few dozen
photos (bending the outputs towards their content).

A share of samples (``unknown_rate``) is shown with the codec hidden and the rate kept (half of
those with both hidden), as classifier-free guidance drops its condition: the unknown slot
then learns one adaptation for every codec at each rate, which is what a codec held out of
training gets.

Early stopping: every ``eval_every`` steps the adapter reads a fixed subset of the validation
views; the state with the lowest mean divergence is kept, and training stops after
``patience`` evaluations without a new best. The curve is recorded. Then the gate
(:mod:`icm.adapt.gate`) reads every validation view, and the file records per condition
whether the adapter acts there.

With ``tune_encoder`` the encoder's weights train too: not an adapter but the fine-tuned
reference that estimates how much of the loss any adaptation could recover.

A checkpoint (adapter, optimiser, step, best state, curve) is written atomically every
``checkpoint_every`` steps beside the output; re-running the same command resumes from it.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from icm.adapt.conditioning import BPP_EDGES, INPUT_BPP_EDGES, Condition, Conditioning
from icm.adapt.config import TrainConfig
from icm.adapt.encoders import CNN, AdaptedEncoder, AdapterError, layout_of
from icm.adapt.evaluate import compare
from icm.adapt.files import AdapterInfo, save_adapter
from icm.adapt.gate import GateEntry, decide, gate_key
from icm.adapt.views import Views, build_views, head
from icm.image.datasets import DatasetImage, open_dataset
from icm.machines import get_machine
from icm.training import Outcome, Progress, Settings, TrainedRun, resume, run


@dataclass
class TrainResult(TrainedRun):
    val_before: float | None
    val_after: float | None
    pairs: int
    best_step: int = 0
    curve: list[dict] = field(default_factory=list)
    gate: dict[str, GateEntry] | None = None

    def figures(self) -> dict[str, Any]:
        gate = self.gate
        return {"best_step": self.best_step, "pairs": self.pairs,
                "val_before": self.val_before, "val_after": self.val_after,
                "gate_open": None if gate is None else sorted(k for k, e in gate.items()
                                                              if e.open),
                "gate_shut": None if gate is None else sorted(k for k, e in gate.items()
                                                              if not e.open)}


def train_adapter(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume training) an adapter on ``config.images``; write it to ``config.out``."""
    machine, parts = torch_machine(config.machine)
    train, val = split_photos(config, sorted(machine.kinds))
    views = build_views(parts, train + val, config.jobs(), config.plan(), input_side(machine),
                        machine.fingerprint(), new_adapted(machine, parts, config).cut,
                        config.cache, progress)
    return fit(machine, parts, views, [n for n, _ in train], [n for n, _ in val], config,
               progress)


def new_adapted(machine: Any, parts: Any, config: TrainConfig) -> AdaptedEncoder:
    """A fresh (identity) adapter on a copy of the machine's encoder, as ``config`` asks."""
    conditioning = Conditioning(tuple(config.codecs), INPUT_BPP_EDGES if config.input_buckets
                                else BPP_EDGES, input_side(machine) if config.input_buckets
                                else 0)
    first_stage = config.first_stage if layout_of(parts.module).kind == CNN else 0
    return AdaptedEncoder(copy.deepcopy(parts.module), conditioning,
                          conditioned=config.conditioned, tune_encoder=config.tune_encoder,
                          first_stage=first_stage)


def torch_machine(name: str) -> tuple[Any, Any]:
    machine = get_machine(name)
    parts = machine.torch_parts()
    if parts is None:
        raise AdapterError(f"machine {machine.name} has no torch model to adapt "
                           "(ncnn and ONNX machines have none)")
    return machine, parts


def input_side(machine: Any) -> int:
    """The side the machine resizes images to (the shorter one of a rectangle)."""
    size = machine.profile.size
    if size is None:
        raise AdapterError(f"machine {machine.name} reads images at their own size; adapters "
                           "need a machine with a fixed input size")
    return int(size) if isinstance(size, int) else int(min(size))


def split_photos(config: TrainConfig, kinds: Sequence[str]
                 ) -> tuple[list[tuple[str, DatasetImage]], list[tuple[str, DatasetImage]]]:
    """(training, validation) photos, each named uniquely; without ``config.val``, a seeded
    ``val_share`` of the photos (at least one, when there are two or more) is held out."""
    photos = _photos(config.images, config.limit, kinds, "train")
    if config.val:
        return photos, _photos(config.val, config.limit, kinds, "val")
    count = min(len(photos) - 1, max(1, round(config.val_share * len(photos))))
    if count < 1 or config.val_share <= 0:
        return photos, []
    order = random.Random(config.seed).sample(range(len(photos)), len(photos))
    held = set(order[:count])
    return ([p for i, p in enumerate(photos) if i not in held],
            [p for i, p in enumerate(photos) if i in held])


def _photos(spec: str, limit: int, kinds: Sequence[str], role: str
            ) -> list[tuple[str, DatasetImage]]:
    dataset = open_dataset(spec).of_kind(*kinds)
    if limit:
        dataset = dataset.limit(limit)
    if not len(dataset):
        raise AdapterError(f"no {role}ing images in {spec!r}")
    return [(f"{role}:{image.id}", image) for image in dataset]


def fit(machine: Any, parts: Any, views: Views, train_photos: Sequence[str],
        val_photos: Sequence[str], config: TrainConfig, progress: Progress | None = None,
        watch: dict[str, list[int]] | None = None) -> TrainResult:
    """Train on the views of ``train_photos``, stop and gate on ``val_photos``; write the
    adapter. ``watch`` names further rows (never used to choose anything) whose divergence the
    recorded curve also follows, to show how validation tracks photos never seen."""
    torch.manual_seed(config.seed)
    adapted = new_adapted(machine, parts, config)
    if views.cut != adapted.cut:
        raise AdapterError(f"views store block {views.cut}'s output; this adapter starts at "
                           f"block {adapted.cut}")
    jobs = config.jobs()
    train_rows = views.rows(train_photos, jobs=jobs)
    if not train_rows:
        raise AdapterError(f"no training views in {config.images!r}")
    val_rows = views.rows(val_photos, jobs=jobs) if val_photos else []
    task = _Distillation(parts, adapted, views, config, train_rows, val_rows, watch or {})
    outcome = task.train(progress)
    gate = measure_gate(parts, adapted, views, val_rows, config) if (
        config.gate and val_rows) else None
    info = AdapterInfo(machine.name, machine.fingerprint(), adapted.conditioning,
                       config.conditioned, adapted.layout.kind,
                       task.record(outcome.step, train_photos, val_photos, gate),
                       config.tune_encoder, gate, adapted.first_stage)
    save_adapter(config.out, adapted, info)
    task.settings.checkpoint.unlink(missing_ok=True)
    return TrainResult(config.out, outcome.step, outcome.resumed_from, outcome.new_losses,
                       task.first_val, task.best_val, len(train_rows), task.best_step,
                       task.curve, gate)


def measure_gate(parts: Any, adapted: AdaptedEncoder, views: Views, rows: Sequence[int],
                 config: TrainConfig) -> dict[str, GateEntry]:
    """Read every validation view with and without the adapter; one decision per condition:
    as trained (codec known), and with the codec hidden (what an unseen codec is shown)."""
    showings = [lambda c: c]
    if config.conditioned:
        showings.append(Condition.without_codec)
    keys, photos, gains, top1 = [], [], [], []
    for showing in showings:
        result = compare(parts, adapted, views, rows, showing)
        codec_ids, bucket_ids = adapted.conditioning.ids([showing(views.condition(r))
                                                          for r in rows])
        keys += [gate_key(adapted.conditioning, c, b, config.conditioned)
                 for c, b in zip(codec_ids, bucket_ids, strict=True)]
        photos += [views.photos[views.photo[r]] for r in rows]
        gains.append(result["plain"]["divergence"] - result["adapted"]["divergence"])
        if "top1" in result["plain"]:
            top1.append(result["adapted"]["top1"] - result["plain"]["top1"])
    gate = decide(keys, photos, np.concatenate(gains),
                  np.concatenate(top1) if top1 else None, config.seed)
    adapted.gate = frozenset(k for k, e in gate.items() if e.open)
    return gate


@dataclass
class _Sample:
    """One step's draw: the coded views, the conditions they are shown, and the pristine
    views of the anchor term with theirs."""

    rows: list[int]
    shown: list[Condition]
    anchor_rows: list[int]
    anchor_shown: list[Condition]


class _Distillation:
    """The adapter's task on the shared training loop: batches of coded views, the
    distillation loss, and validation every ``eval_every`` steps keeping the best state."""

    def __init__(self, parts: Any, adapted: AdaptedEncoder, views: Views, config: TrainConfig,
                 train_rows: list[int], val_rows: list[int], watch: dict[str, list[int]]
                 ) -> None:
        self.parts, self.adapted, self.views, self.config = parts, adapted, views, config
        self.train_rows = train_rows
        self.anchor_rows = sorted({views.pristine[r] for r in train_rows})
        self.curve_rows = _spread(val_rows, config.val_rows)
        self.watch = {name: _spread(rows, config.val_rows) for name, rows in watch.items()}
        self.classes = parts.logits is not None
        self.losses: list[float] = []
        self.curve: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step, self.best_val, self.first_val = 0, None, None
        self.settings = Settings(
            steps=config.steps, checkpoint=config.out.with_suffix(config.out.suffix + ".ckpt"),
            identity=config.identity(), learning_rate=lambda _step: config.lr,
            checkpoint_every=config.checkpoint_every, error=AdapterError)

    # -- the loop ---------------------------------------------------------------------------
    def train(self, progress: Progress | None) -> Outcome:
        """Validate the untrained adapter, run the loop, and put the best state back."""
        optimiser = _optimiser(self.adapted, self.config)
        outcome = resume(self.adapted, optimiser, self.settings)
        self._restore(outcome.extra)
        self.losses = outcome.losses
        if outcome.resumed_from or not self._evaluate(0):
            outcome = run(self, self.adapted, optimiser, self.settings, progress,
                          resumed=outcome, extra_state=self._extra_state,
                          after_step=self._after_step)
        if not self.config.patience and outcome.step % self.config.eval_every:
            self._evaluate(outcome.step)  # the last state is the one kept: record where it is
        if self.best_state is not None:
            self.adapted.load_trainable(self.best_state)
        return outcome

    def batch(self, step: int) -> _Sample:
        """The step's views and conditions, drawn from a generator seeded by the step."""
        config, views = self.config, self.views
        rng = random.Random(config.seed * 7919 + step)
        rows = rng.sample(self.train_rows, min(config.batch, len(self.train_rows)))
        shown = [_shown(views.condition(r), rng, config.unknown_rate) for r in rows]
        anchors: list[int] = []
        if config.anchor_weight:
            count = max(1, config.batch // 4)
            anchors = rng.sample(self.anchor_rows, min(count, len(self.anchor_rows)))
        return _Sample(rows, shown, anchors, [rng.choice(shown) for _ in anchors])

    def loss(self, sample: _Sample) -> tuple[torch.Tensor, dict[str, float]]:
        """KL to the pristine output, plus the optional feature and anchor terms."""
        config, views = self.config, self.views
        teacher = views.outputs([views.pristine[r] for r in sample.rows])
        loss = torch.zeros(())
        if config.kl_weight:
            self.adapted.condition(sample.shown)
            student = views.forward(self.adapted.encoder, sample.rows, head(self.parts))
            loss = loss + config.kl_weight * divergence(teacher, student, self.classes)
        if config.feature_weight:
            loss = loss + config.feature_weight * self._feature_loss(sample)
        if config.anchor_weight:
            loss = loss + config.anchor_weight * self._anchor_loss(sample)
        return loss, {}

    def _feature_loss(self, sample: _Sample) -> torch.Tensor:
        views, features = self.views, self.parts.features
        with torch.no_grad():
            target = views.forward(self.parts.module, [views.pristine[r] for r in sample.rows],
                                   features)
        self.adapted.condition(sample.shown)
        student = views.forward(self.adapted.encoder, sample.rows, features)
        return (student - target).pow(2).mean() / target.var().clamp_min(1e-8)

    def _anchor_loss(self, sample: _Sample) -> torch.Tensor:
        """Pristine views told coded conditions must read as the plain machine reads them."""
        self.adapted.condition(sample.anchor_shown)
        student = self.views.forward(self.adapted.encoder, sample.anchor_rows, head(self.parts))
        return divergence(self.views.outputs(sample.anchor_rows), student, self.classes)

    # -- validation -------------------------------------------------------------------------
    def _after_step(self, done: int) -> bool:
        return done % self.config.eval_every == 0 and self._evaluate(done)

    def _evaluate(self, step: int) -> bool:
        """Record the curve point; keep the best state. True when it is time to stop."""
        if not self.curve_rows:
            return False
        point = {"step": step, "train_loss": _recent(self.losses)}
        for name, rows in (("val", self.curve_rows), *self.watch.items()):
            result = compare(self.parts, self.adapted, self.views, rows)
            point[name] = float(result["adapted"]["divergence"].mean())
            point[f"{name}_plain"] = float(result["plain"]["divergence"].mean())
            if "top1" in result["adapted"]:
                point[f"{name}_top1"] = float(result["adapted"]["top1"].mean())
        self.adapted.train()
        self.curve.append(point)
        if self.first_val is None:
            self.first_val = point["val"]
        if self.best_val is None or point["val"] < self.best_val or not self.config.patience:
            self.best_val, self.best_step = point["val"], step
            self.best_state = {k: v.detach().clone()
                               for k, v in self.adapted.trainable_state().items()}
        since = (step - self.best_step) // self.config.eval_every
        return bool(self.config.patience) and since >= self.config.patience

    # -- files ------------------------------------------------------------------------------
    def record(self, steps: int, train_photos: Sequence[str], val_photos: Sequence[str],
               gate: dict[str, GateEntry] | None) -> dict[str, Any]:
        """What the file says about how it was made and chosen."""
        config = self.config
        return {
            "images": config.images, "val": config.val, "pairs": len(self.train_rows),
            "train_photos": len(train_photos), "val_photos": len(val_photos),
            "photos_digest": _digest(train_photos, val_photos),
            "steps": steps, "best_step": self.best_step,
            "val_before": self.first_val, "val_after": self.best_val,
            "curve": [{k: v for k, v in p.items() if k not in self._watched()}
                      for p in self.curve],
            "objective": {"kl": config.kl_weight, "features": config.feature_weight,
                          "anchor": config.anchor_weight},
            "views": config.views, "scales": list(config.scales),
            "levels": {c: list(config.levels_of(c)) for c in config.codecs},
            "gate": "measured on the validation photos" if gate is not None else
                    "none: no validation photos, so the adapter acts everywhere",
        }

    def _watched(self) -> set[str]:
        return {f"{name}{suffix}" for name in self.watch for suffix in ("", "_plain", "_top1")}

    def _extra_state(self) -> dict[str, Any]:
        """What a checkpoint adds to the loop's: the best state so far and the curve."""
        return {"best": self.best_state or {}, "best_step": self.best_step,
                "best_val": self.best_val, "first_val": self.first_val, "curve": self.curve}

    def _restore(self, extra: dict[str, Any]) -> None:
        if not extra:
            return
        self.best_state = extra["best"] or None
        self.best_step, self.best_val = extra["best_step"], extra["best_val"]
        self.first_val, self.curve = extra["first_val"], list(extra["curve"])


def divergence(teacher: torch.Tensor, student: torch.Tensor, classes: bool) -> torch.Tensor:
    """Mean KL(teacher || student) over a batch of logits, or mean cosine distance of
    embeddings: what the benchmark scores, as a loss."""
    if classes:
        return torch.nn.functional.kl_div(student.log_softmax(-1), teacher.log_softmax(-1),
                                          log_target=True, reduction="batchmean")
    return (1 - torch.nn.functional.cosine_similarity(student.flatten(1), teacher.flatten(1))
            ).mean()


def _shown(condition: Condition, rng: random.Random, unknown_rate: float) -> Condition:
    """The condition a training sample is shown: as it is, or (``unknown_rate``) with the codec
    hidden, half of those with the rate hidden too."""
    draw = rng.random()
    if draw < unknown_rate / 2:
        return Condition()
    return condition.without_codec() if draw < unknown_rate else condition


def _spread(rows: Sequence[int], count: int) -> list[int]:
    """At most ``count`` rows, evenly spread (every photo, codec and level represented)."""
    if len(rows) <= count:
        return list(rows)
    return [rows[i] for i in np.linspace(0, len(rows) - 1, count).round().astype(int)]


def _recent(losses: list[float], window: int = 25) -> float | None:
    return float(np.mean(losses[-window:])) if losses else None


def _digest(*groups: Sequence[str]) -> str:
    text = "|".join(",".join(sorted(group)) for group in groups)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _optimiser(adapted: AdaptedEncoder, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; pretrained encoder weights (when tuned) move at a tenth of the adapter's rate,
    the usual fine-tuning precaution against forgetting what the model knew."""
    own = [p for name, p in adapted.named_parameters()
           if p.requires_grad and not name.startswith("encoder.")]
    groups = [{"params": own, "lr": config.lr}]
    if config.tune_encoder:
        groups.append({"params": [p for p in adapted.encoder.parameters() if p.requires_grad],
                       "lr": config.lr * config.encoder_lr_scale,
                       "lr_scale": config.encoder_lr_scale})  # the loop's rate scales by it
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=0.0)
