"""``icm learned train|eval|info``: our learned codec's training and evaluation; parsing and
display only (the work is in ``icm.learned``).

Training and model files need torch, an optional extra that takes seconds to import: those
modules are imported inside the commands, so that ``icm --help`` and every other command stay
fast (the options' defaults come from the torch-free ``icm.learned.config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from icm.cli.output import (
    BareJsonFlag,
    comma_list,
    defaults_of,
    emit_json,
    err,
    out,
    progress_bar,
    titled_reporter,
)
from icm.errors import IcmError
from icm.learned.config import LearnedTrainConfig
from icm.learned.evaluate import LevelResult, evaluate

if TYPE_CHECKING:
    from icm.learned.train import TrainResult

#: the library's defaults, shown and used as the options' own
TRAIN = defaults_of(LearnedTrainConfig)
#: the feature taps as --taps reads them
TAPS = comma_list(TRAIN.taps)

app = typer.Typer(
    no_args_is_help=True,
    help="Our learned codec icm-lic (use it as -c icm-lic@q5): train one with rate + "
         "lambda x (MSE + alpha x machine feature loss), evaluate, inspect model files.")


# -- icm learned train ----------------------------------------------------------------------

OutDir = Annotated[Path, typer.Option(
    "--out", help="Folder for the model (icm-lic-<hash>.safetensors) and its checkpoint; "
    "re-running the same command resumes.")]
Images = Annotated[list[str] | None, typer.Option(
    "--images", help="Training photos (folder, list file or 'samples'); repeat for several.")]
Crop = Annotated[int, typer.Option("--crop", min=64, help="Crop side (multiple of 64).")]
Alpha = Annotated[float, typer.Option(
    "--alpha", min=0, help="Weight of the machine's feature distortion (0: pixels only).")]
SpatialRate = Annotated[float, typer.Option(
    "--spatial-rate", min=0, max=1, help="Share of crops with a spatially varying quality "
    "map.")]
Limit = Annotated[int, typer.Option("--limit", min=0, help="Use only the first N images of "
                                    "each.")]
ViewScale = Annotated[float, typer.Option(
    "--view-scale", help="Measure distortion as the machine sees the photos: resized by this "
    "factor (its input side over the photos' shorter side, e.g. 224/512 = 0.4375 for Lite0 on "
    "Kodak). 1: at full resolution.")]
Init = Annotated[str, typer.Option(
    "--init", help="Start from a model file's weights, or 'shipped' (fine-tuning; the file's "
    "architecture replaces --channels and --latent).")]
Taps = Annotated[str, typer.Option(
    "--taps", help="The machine's feature taps in the loss: Lite0 block indices, 16 for its "
    "head (e.g. 2,4,10,15,16).")]


@app.command("train")
def train_command(
    out_dir: OutDir,
    images: Images = None,
    steps: Annotated[int, typer.Option("--steps", min=1)] = TRAIN.steps,
    crop: Crop = TRAIN.crop,
    batch: Annotated[int, typer.Option("--batch", min=1)] = TRAIN.batch,
    lr: Annotated[float, typer.Option("--lr")] = TRAIN.lr,
    alpha: Alpha = TRAIN.alpha,
    machine: Annotated[str, typer.Option("--machine")] = TRAIN.machine,
    spatial_rate: SpatialRate = TRAIN.spatial_rate,
    channels: Annotated[int, typer.Option("--channels", min=8)] = TRAIN.channels,
    latent: Annotated[int, typer.Option("--latent", min=6)] = TRAIN.latent,
    seed: Annotated[int, typer.Option("--seed", min=0)] = TRAIN.seed,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)
                                ] = TRAIN.checkpoint_every,
    limit: Limit = TRAIN.limit,
    threads: Annotated[int, typer.Option("--threads", min=1)] = TRAIN.threads,
    view_scale: ViewScale = TRAIN.view_scale,
    init: Init = TRAIN.init,
    taps: Taps = TAPS,
    as_json: BareJsonFlag = False,
) -> None:
    """Train (or resume) an icm-lic model; writes OUT/icm-lic-<hash>.safetensors."""
    from icm.learned.train import train

    config = LearnedTrainConfig(
        images=tuple(images or TRAIN.images), out=out_dir, crop=crop, batch=batch,
        steps=steps, lr=lr, alpha=alpha, machine=machine, spatial_rate=spatial_rate,
        seed=seed, checkpoint_every=checkpoint_every, limit=limit, channels=channels,
        latent=latent, threads=threads, view_scale=view_scale, init=init,
        taps=_taps(taps))
    with progress_bar(err, disable=as_json) as progress:
        result = train(config, titled_reporter(progress, "training", steps))
    if as_json:
        emit_json(result.to_json())
        return
    out.print(_trained_line(result), highlight=False)


def _trained_line(result: TrainResult) -> str:
    """A finished run as one line: steps, photos, parameters, time."""
    return (f"{result.out}: {result.steps} steps on {result.images} photos, "
            f"{result.parameters:,} parameters, {result.wall_s:.0f} s"
            + (f" (resumed at {result.resumed_from})" if result.resumed_from else ""))


def _taps(text: str) -> tuple[int, ...]:
    """``'2,4,10'`` -> (2, 4, 10); anything else is a one-line error."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise IcmError(f"--taps takes comma-separated block indices, got {text!r}") from None


# -- icm learned eval, info -----------------------------------------------------------------


@app.command("eval")
def eval_command(
    images: Annotated[str, typer.Option("--images", help="Photos to evaluate on (folder, list "
                                        "file or 'samples').")] = "samples",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Model file; default: the shipped one.")] = None,
    levels: Annotated[str, typer.Option("--levels", help="Comma-separated levels.")
                      ] = "q1,q2.5,q4,q5,q6,q7,q8",
    limit: Annotated[int, typer.Option("--limit", min=0)] = 0,
    as_json: BareJsonFlag = False,
) -> None:
    """Rate-distortion of a model through real bitstreams: bpp, PSNR, MS-SSIM, times."""
    chosen = [level.strip() for level in levels.split(",") if level.strip()]
    with progress_bar(err, disable=as_json) as progress:
        task = progress.add_task("evaluating", total=len(chosen))
        results = evaluate(images, chosen, model, limit,
                           lambda _s, done, _t: progress.update(task, completed=done))
    if as_json:
        emit_json([result.to_json() for result in results])
        return
    out.print(_eval_table(images, results))


def _eval_table(images: str, results: list[LevelResult]) -> Table:
    table = Table(title=f"icm-lic on {images} ({results[0].images} photos)")
    for column in ("level", "bpp", "PSNR dB", "MS-SSIM", "encode ms", "decode ms"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.level, f"{r.bpp:.3f}", f"{r.psnr:.2f}", f"{r.ms_ssim:.4f}",
                      f"{r.encode_ms:.0f}", f"{r.decode_ms:.0f}")
    return table


@app.command("info")
def info_command(
    model: Annotated[Path | None, typer.Argument(help="Model file; default: the shipped "
                                                 "one.")] = None,
    as_json: BareJsonFlag = False,
) -> None:
    """A model file's architecture and training record (JSON with or without --json: the
    record is nested, and indented JSON is its readable form too, as for ``icm adapt info``)."""
    from icm.learned.files import describe_model

    emit_json(describe_model(model))
