"""``icm adapt train`` and ``icm adapt info``: parsing and display only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from icm.cli.views import progress_bar, stage_reporter
from icm.errors import IcmError


def register(app: typer.Typer, out: Console, err: Console) -> None:
    """Add the ``adapt`` command group to the ``icm`` app."""
    adapt = typer.Typer(help="Codec-conditional adapters for torch vision encoders.",
                        no_args_is_help=True)
    app.add_typer(adapt, name="adapt")

    @adapt.command("train")
    def train_command(
        out_path: Annotated[Path, typer.Option("--out", help="Adapter file (.safetensors). "
                                               "Re-running resumes from its checkpoint.")],
        machine: Annotated[str, typer.Option("--machine")] = "classify:efficientnet-lite0",
        codecs: Annotated[str, typer.Option("--codecs", help="Comma-separated codecs to "
                                            "train on.")] = "jpeg,hevc,avif",
        images: Annotated[str, typer.Option("--images", help="Training images (folder, "
                                            "list file or 'samples').")] = "samples",
        val: Annotated[str | None, typer.Option("--val", help="Validation images.")] = None,
        steps: Annotated[int, typer.Option("--steps", min=1)] = 300,
        batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
        lr: Annotated[float, typer.Option("--lr")] = 1e-3,
        kl_weight: Annotated[float, typer.Option("--kl", help="Weight of the logit KL term.",
                                                 min=0)] = 0.0,
        unconditioned: Annotated[bool, typer.Option(
            "--unconditioned", help="One adaptation for all codecs (codec unknown).")] = False,
        limit: Annotated[int, typer.Option("--limit", help="Use only the first N images.",
                                           min=0)] = 0,
        views: Annotated[int, typer.Option("--views", help="Training views per coded image: "
                                           "the whole image plus random crops and flips.",
                                           min=1)] = 1,
        sides: Annotated[str, typer.Option("--sides", help="Comma-separated shorter sides (px) "
                                           "each training image is resampled to before "
                                           "coding; 0 = as it is. Match the size your images "
                                           "are coded at: the machine sees artefacts at that "
                                           "scale.")] = "0",
        tune_encoder: Annotated[bool, typer.Option(
            "--tune-encoder", help="Fine-tune the whole encoder too: the reference that "
            "estimates the generalization gap in bench reports, not a small adapter.")] = False,
        encoder_lr_scale: Annotated[float, typer.Option(
            "--encoder-lr-scale", help="With --tune-encoder: the encoder's learning rate as a "
            "share of --lr.", min=0)] = 0.1,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train an adapter by feature distillation: machine+adapter on decoded images
        learns to match the frozen machine on pristine ones."""
        from icm.adapt import TrainConfig, train_adapter

        config = TrainConfig(
            machine=machine, codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
            images=images, val=val, out=out_path, conditioned=not unconditioned, steps=steps,
            batch=batch, lr=lr, kl_weight=kl_weight, limit=limit, views=views,
            sides=_sides(sides), tune_encoder=tune_encoder, encoder_lr_scale=encoder_lr_scale,
        )
        with progress_bar(err, disable=as_json) as progress:
            show = stage_reporter(progress)

            result = train_adapter(config, show)
        record = {
            "out": str(result.out), "steps": result.steps, "resumed_from": result.resumed_from,
            "pairs": result.pairs, "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "val_before": result.val_before, "val_after": result.val_after,
        }
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2) + "\n")
            return
        out.print(f"{result.out}: {result.steps} steps on {result.pairs} pairs"
                  + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
                  + (f"; validation loss {result.val_before:.4f} -> {result.val_after:.4f}"
                     if result.val_before is not None and result.val_after is not None else ""))

    @adapt.command("info")
    def info_command(path: Annotated[Path, typer.Argument(help="Adapter file.")]) -> None:
        """What an adapter file was made for."""
        from icm.adapt import read_adapter

        tensors, info = read_adapter(path)
        record = {"machine": info.machine, "fingerprint": info.fingerprint, "kind": info.kind,
                  "conditioned": info.conditioned, "tuned_encoder": info.tuned_encoder,
                  "codecs": list(info.conditioning.codecs),
                  "bpp_edges": list(info.conditioning.edges), "trained": info.trained,
                  "parameters": int(sum(t.numel() for t in tensors.values()))}
        sys.stdout.write(json.dumps(record, indent=2) + "\n")


def _sides(text: str) -> tuple[int, ...]:
    try:
        sides = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        sides = ()
    if not sides or any(side < 0 for side in sides):
        raise IcmError(f"--sides {text!r} is not comma-separated shorter sides in px "
                       "(e.g. 0,512)")
    return sides
