"""``icm restore IN -o OUT`` and ``icm restore train``: parsing and display only.

``restore`` is a command group whose first argument may also be an image: the group class
falls back to its default ``image`` subcommand when that argument is not a subcommand name, so
the common case needs no extra word and training still has its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from icm.cli.views import progress_bar, stage_reporter

DEFAULT_COMMAND = "image"


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


def register(app: typer.Typer, out: Console, err: Console) -> None:
    """Add the ``restore`` command group to the ``icm`` app."""
    restore = typer.Typer(
        cls=DefaultCommandGroup, no_args_is_help=True,
        help="Restore degraded photos with a small degradation-conditioned network: "
             "icm restore IN -o OUT [--degradation auto|NAME] [--strength S]; "
             "icm restore train ...")
    app.add_typer(restore, name="restore")

    @restore.command(DEFAULT_COMMAND)
    def image_command(
        source: Annotated[Path, typer.Argument(help="Degraded image file.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Image file to write.")],
        degradation: Annotated[str, typer.Option(
            "--degradation", "-d", help="What damaged it: auto (ask the recogniser), unknown, "
            "or a name from icm degrade --list.")] = "auto",
        strength: Annotated[float | None, typer.Option(
            "--strength", help="Its strength in [0, 1] (default: not known, or the "
            "recogniser's estimate).")] = None,
        model: Annotated[Path | None, typer.Option(
            "--model", help="Model file (.safetensors); default: the shipped one.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Restore one image (the default command: `icm restore IN -o OUT`)."""
        import time

        from icm.degrade.files import image_file_bytes
        from icm.fileio import refuse_overwriting_input, write_atomic
        from icm.image import load_image
        from icm.metrics import psnr
        from icm.restore import restore_image

        refuse_overwriting_input(source, output)
        pixels = load_image(source)
        started = time.perf_counter()
        restored, record = restore_image(pixels, degradation, strength, model)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        write_atomic(output, image_file_bytes(restored, output))
        result = {"input": str(source), "output": str(output), "condition": record.to_json(),
                  "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
                  "psnr_to_input": round(psnr(pixels, restored), 3),
                  "restore_ms": round(elapsed_ms, 1)}
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
            return
        out.print(f"{source} -> {output}  told {record} ({record.source})  "
                  f"{result['width']}x{result['height']}  changed to "
                  f"{result['psnr_to_input']:.2f} dB of the input  {elapsed_ms:.0f} ms",
                  highlight=False)

    @restore.command("train")
    def train_command(
        out_path: Annotated[Path, typer.Option("--out", help="Model file (.safetensors). "
                                               "Re-running resumes from its checkpoint.")],
        images: Annotated[list[str] | None, typer.Option(
            "--images", help="Clean training photos (folder, list file or 'samples'); "
            "repeat for several.")] = None,
        val: Annotated[str | None, typer.Option("--val", help="Validation photos (their "
                                                "center crops).")] = None,
        degradations: Annotated[str, typer.Option(
            "--degradations", help="Comma-separated degradations (default: all).")] = "",
        strengths: Annotated[str, typer.Option("--strengths", help="LOW,HIGH strength "
                                               "range.")] = "0.2,0.8",
        crop: Annotated[int, typer.Option("--crop", min=8)] = 96,
        batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
        steps: Annotated[int, typer.Option("--steps", min=1)] = 1000,
        lr: Annotated[float, typer.Option("--lr")] = 2e-3,
        mse_weight: Annotated[float, typer.Option("--mse", min=0,
                                                  help="Weight of an MSE term beside L1.")] = 0.0,
        unknown_rate: Annotated[float, typer.Option("--unknown-rate", min=0, max=1)] = 0.2,
        seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
        checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)] = 100,
        limit: Annotated[int, typer.Option("--limit", min=0,
                                           help="Use only the first N images of each.")] = 0,
        val_limit: Annotated[int, typer.Option("--val-limit", min=1)] = 4,
        threads: Annotated[int, typer.Option("--threads", min=0,
                                             help="torch CPU threads (0: torch's default).")] = 0,
        codec: Annotated[str | None, typer.Option(
            "--codec", help="Joint training: code every degraded crop with this codec first, "
            "so the network removes degradation and coding artefacts together.")] = None,
        levels: Annotated[str, typer.Option(
            "--levels", help="Comma-separated levels of --codec (default: its ladder).")] = "",
        init: Annotated[str | None, typer.Option(
            "--init", help="Start from this model file ('shipped': the shipped "
            "restorer).")] = None,
        clean_rate: Annotated[float, typer.Option(
            "--clean-rate", min=0, max=0.99, help="Joint training: share of crops left "
            "undegraded (only coding artefacts to remove).")] = 0.0,
        machine: Annotated[str | None, typer.Option(
            "--machine", help="Also match this machine's multi-level features of the clean "
            "crop (classify:efficientnet-lite0).")] = None,
        machine_weight: Annotated[float, typer.Option(
            "--machine-weight", min=0, help="Weight of that feature term.")] = 0.0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train a restoration network on clean photos with synthetic degradations (with
        --codec: jointly with that codec's artefacts, LL-ICM's second stage)."""
        from icm.errors import IcmError

        try:
            low, high = (float(v) for v in strengths.split(","))
        except ValueError:
            raise IcmError(f"--strengths {strengths!r} is not LOW,HIGH (e.g. 0.2,0.8)") from None
        import torch

        from icm.restore import RestoreTrainConfig, train_restorer
        from icm.restore.api import shipped_model_path
        from icm.restore.train import all_degradations

        if threads:
            torch.set_num_threads(threads)
        chosen = tuple(d.strip() for d in degradations.split(",") if d.strip())
        config = RestoreTrainConfig(
            images=tuple(images or ["samples"]), val=val, out=out_path,
            degradations=chosen or all_degradations(), strengths=(low, high), crop=crop,
            batch=batch, steps=steps, lr=lr, mse_weight=mse_weight, unknown_rate=unknown_rate,
            seed=seed, checkpoint_every=checkpoint_every, limit=limit, val_limit=val_limit,
            codec=codec, levels=tuple(v.strip() for v in levels.split(",") if v.strip()),
            init=shipped_model_path() if init == "shipped" else (Path(init) if init else None),
            clean_rate=clean_rate, machine=machine, machine_weight=machine_weight)
        with progress_bar(err, disable=as_json) as progress:
            result = train_restorer(config, stage_reporter(progress))
        record = {"out": str(result.out), "steps": result.steps,
                  "resumed_from": result.resumed_from, "images": result.images,
                  "parameters": result.parameters, "wall_s": result.wall_s,
                  "first_loss": result.losses[0] if result.losses else None,
                  "last_loss": result.losses[-1] if result.losses else None,
                  "val_before": result.val_before, "val_after": result.val_after}
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2) + "\n")
            return
        before, after = result.val_before, result.val_after
        out.print(f"{result.out}: {result.steps} steps on {result.images} photos in "
                  f"{result.wall_s:.0f} s"
                  + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
                  + (f"; validation PSNR {before['mean']:.2f} -> {after['mean']:.2f} dB"
                     if before and after else ""), highlight=False)
