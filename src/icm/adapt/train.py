"""Training an adapter by feature distillation, resumable, at CPU scale or on a GPU.

Pairs are made once: every training image is coded by every chosen codec at every chosen
level (real encoders, real decoders) and both versions are prepared for the model. With
``views`` > 1, each coded image also gives random crops (half to all of its area, flipped at
random), cut identically from both versions before preparing: a few dozen training photos then
show the adapter many more contents and artefact positions than they have images. The frozen
teacher is the machine on the pristine image; the student is the same machine plus the adapter
on the decoded image, told (when conditioned) which codec and bpp made it. The loss is the
MSE between their feature maps over the teacher's feature variance, plus ``kl_weight`` times
KL(teacher logits || student logits) when the machine has logits.

With ``sides``, each photo is coded at each of those shorter sides (0 = its own size), so the
machine meets artefacts at the scale test images will show them (it resizes every input).
With ``tune_encoder`` the encoder's weights train too: not an adapter but the fine-tuned
reference that estimates how much of the loss any adaptation could recover.

A share of samples (``unknown_rate``) is shown as "codec unknown", as classifier-free guidance
drops its condition: the unknown slot then learns one adaptation for every codec, which is what
a codec held out of training, or a file with no ``.icm`` header, gets.

A checkpoint (adapter, optimiser, step, random state) is written atomically every
``checkpoint_every`` steps beside the output; re-running the same command resumes from it.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from icm.adapt.conditioning import Condition, Conditioning
from icm.adapt.encoders import AdaptedEncoder, AdapterError
from icm.adapt.files import AdapterInfo, save_adapter
from icm.checkpoints import load_checkpoint, save_checkpoint
from icm.codecs import get_codec
from icm.image import resize
from icm.image.datasets import open_dataset

#: low-rate levels by default: where the generalization gap is
DEFAULT_LEVELS = {
    "jpeg": ("q5", "q10", "q20", "q35"),
    "hevc": ("qp47", "qp42", "qp37", "qp32"),
    "avif": ("q5", "q15", "q25", "q40"),
    "webp": ("q5", "q15", "q30", "q50"),
    "vvc": ("qp50", "qp45", "qp40", "qp35"),
}

Progress = Callable[[str, int, int], None]


@dataclass
class TrainConfig:
    machine: str = "classify:efficientnet-lite0"
    codecs: tuple[str, ...] = ("jpeg", "hevc", "avif")
    images: str = "samples"
    val: str | None = None
    out: Path = Path("adapter.safetensors")
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    conditioned: bool = True
    steps: int = 300
    batch: int = 8
    lr: float = 1e-3
    kl_weight: float = 0.0
    #: share of training samples shown as "codec unknown", so the unknown condition (a codec
    #: not trained on, a file without an .icm header) learns a generic adaptation
    unknown_rate: float = 0.2
    seed: int = 0
    checkpoint_every: int = 50
    limit: int = 0
    #: prepared views per coded image: the whole image, then random crops and flips
    views: int = 1
    #: shorter sides (px) each training image is resampled to before coding; 0 = as it is
    sides: tuple[int, ...] = (0,)
    #: also fine-tune every encoder weight (at ``lr * encoder_lr_scale``): the reference that
    #: estimates the whole generalization gap, against which adapters are judged
    tune_encoder: bool = False
    encoder_lr_scale: float = 0.1

    def levels_of(self, codec: str) -> tuple[str, ...]:
        if codec in self.levels:
            return self.levels[codec]
        if codec in DEFAULT_LEVELS:
            return DEFAULT_LEVELS[codec]
        return tuple(get_codec(codec).ladder[:4])

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        record = asdict(self)
        record["out"] = str(self.out)
        record["levels"] = {c: list(self.levels_of(c)) for c in self.codecs}
        for volatile in ("steps", "checkpoint_every"):
            record.pop(volatile)
        return record


@dataclass
class Pair:
    pristine: torch.Tensor  # prepared input, (3, H, W)
    decoded: torch.Tensor
    condition: Condition


@dataclass
class TrainResult:
    out: Path
    steps: int
    resumed_from: int
    losses: list[float]
    val_before: float | None
    val_after: float | None
    pairs: int


def make_pairs(parts: Any, images: str, config: TrainConfig, kinds: Sequence[str],
               progress: Progress | None = None, views: int = 1) -> list[Pair]:
    """Code every image (of the machine's kinds) with every (codec, level); prepare ``views``
    views of both versions for the model."""
    dataset = open_dataset(images).of_kind(*kinds)
    if config.limit:
        dataset = dataset.limit(config.limit)
    jobs = [(codec, level) for codec in config.codecs for level in config.levels_of(codec)]
    pairs: list[Pair] = []
    sides = config.sides or (0,)
    total, done = len(dataset) * len(jobs) * len(sides), 0
    rng = np.random.default_rng(config.seed)
    for image in dataset:
        original = image.load()
        for side in sides:
            pixels = resample_shorter_side(original, side)
            for codec_name, level in jobs:
                codec = get_codec(codec_name)
                bitstream = codec.encode(pixels, level)
                decoded = codec.decode(bitstream)
                condition = Condition(codec_name, bitstream.bpp)
                for view in _views(pixels.shape[:2], views, rng):
                    pairs.append(Pair(parts.prepare_image(view(pixels))[0],
                                      parts.prepare_image(view(decoded))[0], condition))
                done += 1
                if progress:
                    progress("coding", done, total)
    if not pairs:
        raise AdapterError(f"no training images in {images!r}")
    return pairs


def resample_shorter_side(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` resampled (Lanczos) so its shorter side is ``side`` px; as it is for 0.

    Why: a machine resizes its input to a fixed size, so the scale at which it sees coding
    artefacts depends on the size the image was coded at. Training photos of 321 px magnify
    8 px JPEG blocks 1.6 times more than 512 px test photos; coding them at the test size
    shows the adapter the artefacts it will meet.
    """
    height, width = rgb.shape[:2]
    if not side or side == min(height, width):
        return rgb
    scale = side / min(height, width)
    return resize(rgb, max(1, round(width * scale)), max(1, round(height * scale)))


View = Callable[[np.ndarray], np.ndarray]


def _views(shape: tuple[int, int], count: int, rng: np.random.Generator) -> list[View]:
    """The whole image, then ``count - 1`` random crops of half to all of its area (aspect
    kept within 3:4..4:3 of the image's), each flipped left-right with probability 1/2."""
    height, width = shape
    views: list[View] = [lambda rgb: rgb]
    for _ in range(count - 1):
        area = rng.uniform(0.5, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        h = int(min(height, round(height * np.sqrt(area / aspect))))
        w = int(min(width, round(width * np.sqrt(area * aspect))))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        step = -1 if rng.random() < 0.5 else 1
        box = (slice(top, top + h), slice(left, left + w))
        views.append(lambda rgb, box=box, step=step: rgb[box][:, ::step])
    return views


class Distiller:
    """Teacher (frozen machine) vs student (machine + adapter) on batches of pairs."""

    def __init__(self, parts: Any, adapted: AdaptedEncoder, teacher: Any,
                 kl_weight: float) -> None:
        self.parts, self.adapted, self.teacher = parts, adapted, teacher
        self.kl_weight = kl_weight and (parts.logits is not None)

    def loss(self, batch: Sequence[Pair], conditions: Sequence[Condition] | None = None
             ) -> torch.Tensor:
        pristine = torch.stack([p.pristine for p in batch])
        decoded = torch.stack([p.decoded for p in batch])
        with torch.no_grad():
            target = self.parts.features(self.teacher, pristine)
            target_logits = self.parts.logits(self.teacher, pristine) if self.kl_weight else None
        self.adapted.condition(conditions or [p.condition for p in batch])
        student = self.parts.features(self.adapted.encoder, decoded)
        loss = (student - target).pow(2).mean() / target.var().clamp_min(1e-8)
        if self.kl_weight:
            logits = self.parts.logits(self.adapted.encoder, decoded)
            loss = loss + self.kl_weight * torch.nn.functional.kl_div(
                logits.log_softmax(-1), target_logits.log_softmax(-1), log_target=True,
                reduction="batchmean")
        return loss

    def evaluate(self, pairs: Sequence[Pair], batch: int) -> float:
        self.adapted.eval()
        with torch.no_grad():
            losses = [float(self.loss(pairs[i : i + batch])) * len(pairs[i : i + batch])
                      for i in range(0, len(pairs), batch)]
        self.adapted.train()
        return sum(losses) / len(pairs)


def train_adapter(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train (or resume training) an adapter; write it to ``config.out``."""
    from icm.machines import get_machine

    machine = get_machine(config.machine)
    parts = machine.torch_parts()
    if parts is None:
        raise AdapterError(f"machine {machine.name} has no torch model to adapt "
                           "(ncnn and ONNX machines have none)")
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    teacher = parts.module.eval()
    adapted = AdaptedEncoder(copy.deepcopy(teacher), Conditioning(tuple(config.codecs)),
                             conditioned=config.conditioned, tune_encoder=config.tune_encoder)
    kinds = sorted(machine.kinds)
    train_pairs = make_pairs(parts, config.images, config, kinds, progress, config.views)
    val_pairs = make_pairs(parts, config.val, config, kinds, progress) if config.val else []
    distiller = Distiller(parts, adapted, teacher, config.kl_weight)
    optimiser = _optimiser(adapted, config)
    checkpoint = config.out.with_suffix(config.out.suffix + ".ckpt")
    start = _resume(checkpoint, config, adapted, optimiser)
    val_before = distiller.evaluate(val_pairs, config.batch) if val_pairs and not start else None
    losses: list[float] = []
    adapted.train()
    rng = random.Random(config.seed * 7919 + start)
    for step in range(start, config.steps):
        batch = rng.sample(train_pairs, min(config.batch, len(train_pairs)))
        shown = [Condition() if rng.random() < config.unknown_rate else p.condition
                 for p in batch]
        loss = distiller.loss(batch, shown)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        if progress:
            progress("training", step + 1, config.steps)
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            _checkpoint(checkpoint, config, adapted, optimiser, step + 1)
    val_after = distiller.evaluate(val_pairs, config.batch) if val_pairs else None
    trained = {"steps": config.steps, "images": config.images, "pairs": len(train_pairs),
               "val_before": val_before, "val_after": val_after,
               "levels": {c: list(config.levels_of(c)) for c in config.codecs}}
    info = AdapterInfo(machine.name, machine.fingerprint(), adapted.conditioning,
                       config.conditioned, adapted.layout.kind, trained, config.tune_encoder)
    save_adapter(config.out, adapted, info)
    checkpoint.unlink(missing_ok=True)
    return TrainResult(config.out, config.steps, start, losses, val_before, val_after,
                       len(train_pairs))


def _optimiser(adapted: AdaptedEncoder, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; pretrained encoder weights (when tuned) move at a tenth of the adapter's rate,
    the usual fine-tuning precaution against forgetting what the model knew."""
    own = [p for name, p in adapted.named_parameters()
           if p.requires_grad and not name.startswith("encoder.")]
    groups = [{"params": own, "lr": config.lr}]
    if config.tune_encoder:
        groups.append({"params": [p for p in adapted.encoder.parameters() if p.requires_grad],
                       "lr": config.lr * config.encoder_lr_scale})
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=0.0)


def _checkpoint(path: Path, config: TrainConfig, adapted: AdaptedEncoder,
                optimiser: torch.optim.Optimizer, step: int) -> None:
    save_checkpoint(path, config.identity(), step, {
        "adapter": adapted.trainable_state(), "optimiser": optimiser.state_dict()})


def _resume(path: Path, config: TrainConfig, adapted: AdaptedEncoder,
            optimiser: torch.optim.Optimizer) -> int:
    """The step to start from: a matching checkpoint's, else 0."""
    state = load_checkpoint(path, config.identity(), AdapterError)
    if state is None:
        return 0
    adapted.load_trainable(state["adapter"], str(path))
    optimiser.load_state_dict(state["optimiser"])
    return state["step"]
