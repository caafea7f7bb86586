"""``icm adapt train|info``: parsing and display only (the work is in ``icm.adapt``).

Training needs torch, an optional extra that takes seconds to import: it is imported inside
the command, so ``icm --help`` stays fast; the options' defaults come from the torch-free
``icm.adapt.config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from icm.adapt.config import TrainConfig
from icm.adapt.gate import gate_summary
from icm.cli.output import (
    BareJsonFlag,
    comma_list,
    defaults_of,
    emit_json,
    err,
    out,
    progress_bar,
    stage_reporter,
)
from icm.errors import IcmError

if TYPE_CHECKING:
    from icm.adapt import TrainResult

#: the library's defaults, shown and used as the options' own
TRAIN = defaults_of(TrainConfig)
#: the tuple defaults as the comma-separated option texts
CODECS, SCALES = comma_list(TRAIN.codecs), comma_list(TRAIN.scales)

app = typer.Typer(help="Codec-conditional adapters for torch vision encoders.",
                  no_args_is_help=True)

# -- icm adapt train ------------------------------------------------------------------------

OutFile = Annotated[Path, typer.Option("--out", help="Adapter file (.safetensors). Re-running "
                                       "resumes from its checkpoint.")]
Codecs = Annotated[str, typer.Option("--codecs", help="Comma-separated codecs to train on.")]
Images = Annotated[str, typer.Option("--images", help="Training images (folder, list file or "
                                     "'samples').")]
Steps = Annotated[int, typer.Option("--steps", min=1, help="At most this many steps: early "
                                    "stopping on validation picks the state kept.")]
Kl = Annotated[float, typer.Option("--kl", min=0, help="Weight of the KL from the pristine "
                                   "output.")]
Features = Annotated[float, typer.Option("--features", min=0, help="Weight of the feature-map "
                                         "MSE.")]
Anchor = Annotated[float, typer.Option(
    "--anchor", min=0, help="Weight of the term that keeps pristine images reading as the plain "
    "machine reads them.")]
Views = Annotated[int, typer.Option("--views", min=1, help="Square views per photo, spread "
                                    "over --scales.")]
Scales = Annotated[str, typer.Option(
    "--scales", help="Comma-separated view sides as multiples of the machine's input side "
    "(0 = the whole photo). Cover the sizes your images are read at: the machine shrinks them, "
    "and the artefacts with them.")]
ValShare = Annotated[float, typer.Option(
    "--val-share", min=0, max=0.9, help="Without --val: the share of photos held out for early "
    "stopping and the gate.")]
Patience = Annotated[int, typer.Option(
    "--patience", min=0, help="Evaluations without a better validation score before stopping "
    "(0: never stop early).")]
NoGate = Annotated[bool, typer.Option(
    "--no-gate", help="Act on every condition, even where validation showed no gain.")]
Cache = Annotated[Path | None, typer.Option("--cache", help="Folder to keep coded views in "
                                            "between runs.")]
TuneEncoder = Annotated[bool, typer.Option(
    "--tune-encoder", help="Fine-tune the whole encoder too: the reference that estimates the "
    "generalization gap in bench reports, not a small adapter.")]
EncoderLrScale = Annotated[float, typer.Option(
    "--encoder-lr-scale", min=0, help="With --tune-encoder: the encoder's learning rate as a "
    "share of --lr.")]


@app.command("train")
def train_command(
    out_path: OutFile,
    machine: Annotated[str, typer.Option("--machine")] = TRAIN.machine,
    codecs: Codecs = CODECS,
    images: Images = TRAIN.images,
    val: Annotated[str | None, typer.Option("--val", help="Validation images.")] = TRAIN.val,
    steps: Steps = TRAIN.steps,
    batch: Annotated[int, typer.Option("--batch", min=1)] = TRAIN.batch,
    lr: Annotated[float, typer.Option("--lr")] = TRAIN.lr,
    kl_weight: Kl = TRAIN.kl_weight,
    feature_weight: Features = TRAIN.feature_weight,
    anchor_weight: Anchor = TRAIN.anchor_weight,
    unconditioned: Annotated[bool, typer.Option(
        "--unconditioned", help="One adaptation for all codecs (codec unknown).")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Use only the first N images.")
                     ] = TRAIN.limit,
    views: Views = TRAIN.views,
    scales: Scales = SCALES,
    val_share: ValShare = TRAIN.val_share,
    patience: Patience = TRAIN.patience,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = TRAIN.eval_every,
    no_gate: NoGate = False,
    cache: Cache = TRAIN.cache,
    tune_encoder: TuneEncoder = TRAIN.tune_encoder,
    encoder_lr_scale: EncoderLrScale = TRAIN.encoder_lr_scale,
    as_json: BareJsonFlag = False,
) -> None:
    """Train an adapter: machine+adapter on decoded views learns to read them as the frozen
    machine reads the pristine ones; held-out photos pick the step and gate the conditions
    where it did not help."""
    from icm.adapt.train import train_adapter

    config = TrainConfig(
        machine=machine, codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
        images=images, val=val, out=out_path, conditioned=not unconditioned, steps=steps,
        batch=batch, lr=lr, kl_weight=kl_weight, feature_weight=feature_weight,
        anchor_weight=anchor_weight, limit=limit, views=views, scales=_scales(scales),
        val_share=val_share, patience=patience, eval_every=eval_every, gate=not no_gate,
        cache=cache, tune_encoder=tune_encoder, encoder_lr_scale=encoder_lr_scale)
    with progress_bar(err, disable=as_json) as progress:
        result = train_adapter(config, stage_reporter(progress))
    if as_json:
        emit_json(result.to_json())
        return
    out.print(_trained_line(result), highlight=False)
    out.print(_gate_summary(result), highlight=False)


def _trained_line(result: TrainResult) -> str:
    """A finished run as one line: steps, views, the step kept, validation before and after."""
    line = (f"{result.out}: {result.steps} steps on {result.pairs} coded views, kept step "
            f"{result.best_step}")
    if result.resumed_from:
        line += f" (resumed at {result.resumed_from})"
    if result.val_before is not None and result.val_after is not None:
        line += (f"; validation divergence {result.val_before:.4f} -> "
                 f"{result.val_after:.4f}")
    return line


def _gate_summary(result: TrainResult) -> str:
    return gate_summary(result.gate)


def _scales(text: str) -> tuple[float, ...]:
    """``'1,1.5,2'`` -> (1.0, 1.5, 2.0); anything else is a one-line error."""
    try:
        scales = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        scales = ()
    if not scales or any(not 0 <= scale <= 16 for scale in scales):
        raise IcmError(f"--scales {text!r} is not comma-separated multiples of the input side "
                       "(e.g. 1,1.5,2; 0 = the whole photo)")
    return scales


# -- icm adapt info -------------------------------------------------------------------------


@app.command("info")
def info_command(path: Annotated[Path, typer.Argument(help="Adapter file.")]) -> None:
    """What an adapter file was made for, how it was trained, and where it acts (JSON)."""
    from icm.adapt.files import describe_adapter

    emit_json(describe_adapter(path))
