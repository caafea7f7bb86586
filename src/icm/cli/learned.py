"""``icm learned train|eval|info``: our learned codec's training and evaluation; display only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from icm.cli.views import progress_bar


def register(app: typer.Typer, out: Console, err: Console) -> None:
    """Add the ``learned`` command group to the ``icm`` app."""
    learned = typer.Typer(
        no_args_is_help=True,
        help="Our learned codec icm-lic (use it as -c icm-lic@q5): train one with rate + "
             "lambda x (MSE + alpha x machine feature loss), evaluate, inspect model files.")
    app.add_typer(learned, name="learned")

    @learned.command("train")
    def train_command(
        out_dir: Annotated[Path, typer.Option(
            "--out", help="Folder for the model (icm-lic-<hash>.safetensors) and its "
            "checkpoint; re-running the same command resumes.")],
        images: Annotated[list[str] | None, typer.Option(
            "--images", help="Training photos (folder, list file or 'samples'); repeat for "
            "several.")] = None,
        steps: Annotated[int, typer.Option("--steps", min=1)] = 3000,
        crop: Annotated[int, typer.Option("--crop", min=64, help="Crop side (multiple of "
                                          "64).")] = 128,
        batch: Annotated[int, typer.Option("--batch", min=1)] = 8,
        lr: Annotated[float, typer.Option("--lr")] = 5e-4,
        alpha: Annotated[float, typer.Option(
            "--alpha", min=0, help="Weight of the machine's feature distortion (0: pixels "
            "only).")] = 30.0,
        machine: Annotated[str, typer.Option("--machine")] = "classify:efficientnet-lite0",
        spatial_rate: Annotated[float, typer.Option(
            "--spatial-rate", min=0, max=1, help="Share of crops with a spatially varying "
            "quality map.")] = 0.5,
        channels: Annotated[int, typer.Option("--channels", min=8)] = 64,
        latent: Annotated[int, typer.Option("--latent", min=6)] = 192,
        seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
        checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1)] = 100,
        limit: Annotated[int, typer.Option("--limit", min=0, help="Use only the first N "
                                           "images of each.")] = 0,
        threads: Annotated[int, typer.Option("--threads", min=1)] = 1,
        view_scale: Annotated[float, typer.Option(
            "--view-scale", help="Measure distortion as the machine sees the photos: resized "
            "by this factor (its input side over the photos' shorter side, e.g. 224/512 = "
            "0.4375 for Lite0 on Kodak). 1: at full resolution.")] = 1.0,
        init: Annotated[str, typer.Option(
            "--init", help="Start from a model file's weights, or 'shipped' (fine-tuning; "
            "the file's architecture replaces --channels and --latent).")] = "",
        taps: Annotated[str, typer.Option(
            "--taps", help="The machine's feature taps in the loss: Lite0 block indices, "
            "16 for its head (e.g. 2,4,10,15,16).")] = "2,4,10",
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train (or resume) an icm-lic model; writes OUT/icm-lic-<hash>.safetensors."""
        from icm.learned.train import LearnedTrainConfig, train

        config = LearnedTrainConfig(
            images=tuple(images or ["samples"]), out=out_dir, crop=crop, batch=batch,
            steps=steps, lr=lr, alpha=alpha, machine=machine, spatial_rate=spatial_rate,
            seed=seed, checkpoint_every=checkpoint_every, limit=limit, channels=channels,
            latent=latent, threads=threads, view_scale=view_scale, init=init,
            taps=_taps(taps))
        with progress_bar(err, disable=as_json) as progress:
            task = progress.add_task("training", total=steps)

            def show(text: str, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=text)

            result = train(config, show)
        record = {"out": str(result.out), "steps": result.steps,
                  "resumed_from": result.resumed_from, "images": result.images,
                  "parameters": result.parameters, "wall_s": round(result.wall_s, 1),
                  "first_loss": result.losses[0] if result.losses else None,
                  "last_loss": result.losses[-1] if result.losses else None}
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2) + "\n")
            return
        out.print(f"{result.out}: {result.steps} steps on {result.images} photos, "
                  f"{result.parameters:,} parameters, {result.wall_s:.0f} s"
                  + (f" (resumed at {result.resumed_from})" if result.resumed_from else ""),
                  highlight=False)

    @learned.command("eval")
    def eval_command(
        images: Annotated[str, typer.Option("--images", help="Photos to evaluate on "
                                            "(folder, list file or 'samples').")] = "samples",
        model: Annotated[Path | None, typer.Option(
            "--model", help="Model file; default: the shipped one.")] = None,
        levels: Annotated[str, typer.Option("--levels", help="Comma-separated levels.")]
            = "q1,q2.5,q4,q5,q6,q7,q8",
        limit: Annotated[int, typer.Option("--limit", min=0)] = 0,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Rate-distortion of a model through real bitstreams: bpp, PSNR, MS-SSIM, times."""
        from icm.learned.evaluate import evaluate

        chosen = [level.strip() for level in levels.split(",") if level.strip()]
        with progress_bar(err, disable=as_json) as progress:
            task = progress.add_task("evaluating", total=len(chosen))
            results = evaluate(images, chosen, model, limit,
                               lambda _s, done, _t: progress.update(task, completed=done))
        if as_json:
            sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
            return
        table = Table(title=f"icm-lic on {images} ({results[0].images} photos)")
        for column in ("level", "bpp", "PSNR dB", "MS-SSIM", "encode ms", "decode ms"):
            table.add_column(column, justify="right")
        for r in results:
            table.add_row(r.level, f"{r.bpp:.3f}", f"{r.psnr:.2f}", f"{r.ms_ssim:.4f}",
                          f"{r.encode_ms:.0f}", f"{r.decode_ms:.0f}")
        out.print(table)

    @learned.command("info")
    def info_command(
        model: Annotated[Path | None, typer.Argument(help="Model file; default: the "
                                                     "shipped one.")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """A model file's architecture and training record."""
        from icm.errors import IcmError
        from icm.learned.files import load_model, shipped_model
        from icm.learned.network import parameter_count

        path = model or shipped_model()
        if path is None:
            raise IcmError("no icm-lic model ships in this installation; give a file")
        net, info = load_model(path)
        record = {"file": str(path), "bytes": Path(path).stat().st_size,
                  "parameters": parameter_count(net), "architecture": info.arch.to_json(),
                  "trained": info.trained}
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2) + "\n")
            return
        out.print(json.dumps(record, indent=2), highlight=False)


def _taps(text: str) -> tuple[int, ...]:
    """``'2,4,10'`` -> (2, 4, 10); anything else is a one-line error."""
    from icm.errors import IcmError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise IcmError(f"--taps takes comma-separated block indices, got {text!r}") from None
