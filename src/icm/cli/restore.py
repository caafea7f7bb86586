"""``icm restore IN -o OUT`` and ``icm restore train``: parsing and display only (the work is
in ``icm.restore.api`` and ``icm.restore.train``).

``restore`` is a command group whose first argument may also be an image: the group class
falls back to its default ``image`` subcommand when that argument is not a subcommand name, so
the common case needs no extra word and training still has its own.

The restorer's modules need torch, an optional extra that takes seconds to import: they are
imported inside the commands, so that ``icm --help`` and every other command stay fast (the
options' defaults come from the torch-free ``icm.restore.config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

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
from icm.restore.config import AUTO, RestoreTrainConfig

if TYPE_CHECKING:
    from icm.restore.train import TrainResult

DEFAULT_COMMAND = "image"
#: the library's defaults, shown and used as the options' own
TRAIN = defaults_of(RestoreTrainConfig)
#: the strength range as --strengths reads it
STRENGTHS = comma_list(TRAIN.strengths)


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``DEFAULT_COMMAND`` when the first argument names no subcommand
    (``icm restore photo.png -o out.png``), and the subcommand when it does."""

    def _wants_default(self, ctx: typer.Context, args: list[str]) -> bool:
        return bool(args) and args[0] not in self.commands \
            and args[0] not in ctx.help_option_names

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if self._wants_default(ctx, args):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True,
    help="Restore degraded photos with a small degradation-conditioned network: "
         "icm restore IN -o OUT [--degradation auto|NAME] [--strength S]; "
         "icm restore train ...")


# -- icm restore IN -o OUT ------------------------------------------------------------------


@app.command(DEFAULT_COMMAND)
def image_command(
    source: Annotated[Path, typer.Argument(help="Degraded image file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file to write.")],
    degradation: Annotated[str, typer.Option(
        "--degradation", "-d", help="What damaged it: auto (ask the recogniser), unknown, "
        "or a name from icm degrade --list.")] = AUTO,
    strength: Annotated[float | None, typer.Option(
        "--strength", help="Its strength in [0, 1] (default: not known, or the "
        "recogniser's estimate).")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model file (.safetensors); default: the shipped one.")] = None,
    as_json: BareJsonFlag = False,
) -> None:
    """Restore one image (the default command: `icm restore IN -o OUT`)."""
    from icm.restore.api import restore_file

    result = restore_file(source, output, degradation, strength, model)
    if as_json:
        emit_json(result.to_json())
        return
    record = result.record
    out.print(f"{source} -> {output}  told {record} ({record.source})  "
              f"{result.width}x{result.height}  changed to "
              f"{result.psnr_to_input:.2f} dB of the input  {result.restore_ms:.0f} ms",
              highlight=False)


# -- icm restore train ----------------------------------------------------------------------

OutPath = Annotated[Path, typer.Option("--out", help="Model file (.safetensors). Re-running "
                                       "resumes from its checkpoint.")]
Images = Annotated[list[str] | None, typer.Option(
    "--images", help="Clean training photos (folder, list file or 'samples'); repeat for "
    "several.")]
Val = Annotated[str | None, typer.Option("--val", help="Validation photos (their center "
                                         "crops).")]
Degradations = Annotated[str, typer.Option("--degradations", help="Comma-separated "
                                           "degradations (default: all).")]
Strengths = Annotated[str, typer.Option("--strengths", help="LOW,HIGH strength range.")]
MseWeight = Annotated[float, typer.Option("--mse", min=0, help="Weight of an MSE term beside "
                                          "L1.")]
Limit = Annotated[int, typer.Option("--limit", min=0, help="Use only the first N images of "
                                    "each.")]
Threads = Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: torch's "
                                      "default).")]
CodecOption = Annotated[str | None, typer.Option(
    "--codec", help="Joint training: code every degraded crop with this codec first, so the "
    "network removes degradation and coding artefacts together.")]
Levels = Annotated[str, typer.Option("--levels", help="Comma-separated levels of --codec "
                                     "(default: its ladder).")]
Init = Annotated[str | None, typer.Option("--init", help="Start from this model file "
                                          "('shipped': the shipped restorer).")]
CleanRate = Annotated[float, typer.Option(
    "--clean-rate", min=0, max=0.99, help="Joint training: share of crops left undegraded "
    "(only coding artefacts to remove).")]
Machine = Annotated[str | None, typer.Option(
    "--machine", help="Also match this machine's multi-level features of the clean crop "
    "(classify:efficientnet-lite0).")]
MachineWeight = Annotated[float, typer.Option("--machine-weight", min=0, help="Weight of that "
                                              "feature term.")]


@app.command("train")
def train_command(
    out_path: OutPath,
    images: Images = None,
    val: Val = TRAIN.val,
    degradations: Degradations = "",
    strengths: Strengths = STRENGTHS,
    crop: Annotated[int, typer.Option("--crop", min=8)] = TRAIN.crop,
    batch: Annotated[int, typer.Option("--batch", min=1)] = TRAIN.batch,
    steps: Annotated[int, typer.Option("--steps", min=1)] = TRAIN.steps,
    lr: Annotated[float, typer.Option("--lr")] = TRAIN.lr,
    mse_weight: MseWeight = TRAIN.mse_weight,
    unknown_rate: Annotated[float, typer.Option("--unknown-rate", min=0, max=1)
                            ] = TRAIN.unknown_rate,
    seed: Annotated[int, typer.Option("--seed", min=0)] = TRAIN.seed,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)
                                ] = TRAIN.checkpoint_every,
    limit: Limit = TRAIN.limit,
    val_limit: Annotated[int, typer.Option("--val-limit", min=1)] = TRAIN.val_limit,
    threads: Threads = TRAIN.threads,
    codec: CodecOption = TRAIN.codec,
    levels: Levels = "",
    init: Init = None,
    clean_rate: CleanRate = TRAIN.clean_rate,
    machine: Machine = TRAIN.machine,
    machine_weight: MachineWeight = TRAIN.machine_weight,
    as_json: BareJsonFlag = False,
) -> None:
    """Train a restoration network on clean photos with synthetic degradations (with
    --codec: jointly with that codec's artefacts, LL-ICM's second stage)."""
    strength_range = _strength_range(strengths)  # a typo fails before torch loads
    from icm.restore.api import start_model_path
    from icm.restore.train import train_restorer

    config = RestoreTrainConfig(
        images=tuple(images or TRAIN.images), val=val, out=out_path,
        strengths=strength_range, crop=crop, batch=batch, steps=steps, lr=lr,
        mse_weight=mse_weight, unknown_rate=unknown_rate, seed=seed,
        checkpoint_every=checkpoint_every, limit=limit, val_limit=val_limit, codec=codec,
        levels=_names(levels), init=start_model_path(init), clean_rate=clean_rate,
        machine=machine, machine_weight=machine_weight, threads=threads,
        **_chosen_degradations(degradations))
    with progress_bar(err, disable=as_json) as progress:
        result = train_restorer(config, stage_reporter(progress))
    if as_json:
        emit_json(result.to_json())
        return
    out.print(_trained_line(result), highlight=False)


def _trained_line(result: TrainResult) -> str:
    """A finished run as one line: steps, photos, time, and validation PSNR before/after."""
    before, after = result.val_before, result.val_after
    return (f"{result.out}: {result.steps} steps on {result.images} photos in "
            f"{result.wall_s:.0f} s"
            + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
            + (f"; validation PSNR {before['mean']:.2f} -> {after['mean']:.2f} dB"
               if before and after else ""))


def _strength_range(text: str) -> tuple[float, float]:
    """``'0.2,0.8'`` -> (0.2, 0.8); anything else is a one-line error."""
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise IcmError(f"--strengths {text!r} is not LOW,HIGH (e.g. 0.2,0.8)") from None
    return low, high


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _chosen_degradations(text: str) -> dict[str, tuple[str, ...]]:
    """``--degradations`` as a config keyword: none given leaves the config's own default
    (every registered degradation)."""
    chosen = _names(text)
    return {"degradations": chosen} if chosen else {}
