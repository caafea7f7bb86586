"""``icm preedit train|info``: the learned pre-editor's training and model files; parsing and
display only (the work is in ``icm.preedit``).

Training needs torch, an optional extra that takes seconds to import: it is imported inside
the commands, so that ``icm --help`` and every other command stay fast (the options'
defaults come from the torch-free ``icm.preedit.config``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
from icm.preedit.config import PreeditTrainConfig

#: the library's defaults, shown and used as the options' own
TRAIN = defaults_of(PreeditTrainConfig)

app = typer.Typer(
    no_args_is_help=True,
    help="The learned pre-editor that changes a photo for a machine before a standard "
         "codec (the point tool +preedit[=MODEL]): icm preedit train ...; icm preedit info.")

Images = Annotated[list[str] | None, typer.Option(
    "--images", help="Training photos (folder, list file or 'samples'); repeat for several. "
    "Keep the photos you will measure on out of them.")]
Val = Annotated[list[str] | None, typer.Option(
    "--val", help="Held-out photos: the loss on their centre crops before and after.")]


@app.command("train")
def train_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the model "
                                          "(preedit-<hash>.safetensors). Re-running resumes "
                                          "from its checkpoint.")] = TRAIN.out,
    images: Images = None,
    val: Val = None,
    machine: Annotated[str, typer.Option("--machine", help="The machine to keep answers "
                                         "for.")] = TRAIN.machine,
    families: Annotated[str, typer.Option("--families", help="Proxies to train through: "
                                          "jpeg, transform (HEVC, AVC, VVC).")
                        ] = comma_list(TRAIN.families),
    steps: Annotated[int, typer.Option("--steps", min=1)] = TRAIN.steps,
    batch: Annotated[int, typer.Option("--batch", min=1)] = TRAIN.batch,
    crop: Annotated[int, typer.Option("--crop", min=32)] = TRAIN.crop,
    lr: Annotated[float, typer.Option("--lr")] = TRAIN.lr,
    pixel_weight: Annotated[float, typer.Option("--pixel-weight", min=0, help="Weight of the "
                                                "edit's MSE (per 100, 8-bit).")
                            ] = TRAIN.pixel_weight,
    feature_weight: Annotated[float, typer.Option("--feature-weight", min=0, help="Weight of "
                                                  "the multi-level feature distortion beside "
                                                  "the output KL.")] = TRAIN.feature_weight,
    val_every: Annotated[int, typer.Option("--val-every", min=1, help="Held-out loss every "
                                           "N steps (the learning curve).")] = TRAIN.val_every,
    seed: Annotated[int, typer.Option("--seed", min=0)] = TRAIN.seed,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)
                                ] = TRAIN.checkpoint_every,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Use only the first N photos "
                                       "of each --images.")] = TRAIN.limit,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: "
                                         "torch's default).")] = TRAIN.threads,
    as_json: BareJsonFlag = False,
) -> None:
    """Train a pre-editor through the codec proxies on rate + machine distortion."""
    from icm.preedit.train import train_editor

    chosen = tuple(name.strip() for name in families.split(",") if name.strip())
    config = PreeditTrainConfig(
        images=tuple(images or TRAIN.images), out=out_dir, machine=machine, families=chosen,
        steps=steps, batch=batch, crop=crop, lr=lr, pixel_weight=pixel_weight,
        feature_weight=feature_weight, val_every=val_every, seed=seed,
        checkpoint_every=checkpoint_every, limit=limit, threads=threads)
    config.check()  # a bad setting fails before the bar is drawn
    with progress_bar(err, disable=as_json) as progress:
        result = train_editor(config, tuple(val or ()),
                              titled_reporter(progress, "training", steps))
    if as_json:
        emit_json(result.to_json())
        return
    before, after = result.val_before, result.val_after
    out.print(f"{result.out}: {result.steps} steps on {result.images} photos in "
              f"{result.wall_s:.0f} s"
              + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
              + (f"; held-out loss {before['loss']:.4f} -> {after['loss']:.4f}"
                 if before and after else ""), highlight=False)


@app.command("info")
def info_command(
    model: Annotated[str | None, typer.Argument(help="Editor file (default: the shipped "
                                                "one).")] = None,
    as_json: BareJsonFlag = False,
) -> None:
    """Show an editor file: its machine, size, parameters and how it was trained."""
    try:
        from icm.preedit.api import describe_model
    except ImportError as exc:
        raise IcmError(f"the pre-editor needs torch ({exc.name} is missing): "
                       "pip install 'icm[adapt]'") from None
    emit_json(describe_model(model))
