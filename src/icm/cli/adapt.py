"""``icm adapt train`` and ``icm adapt info``: parsing and display only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from icm.cli.views import progress_bar, stage_reporter
from icm.errors import IcmError

if TYPE_CHECKING:
    from icm.adapt import AdapterInfo, GateEntry


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
        steps: Annotated[int, typer.Option("--steps", min=1, help="At most this many steps: "
                                           "early stopping on validation picks the state "
                                           "kept.")] = 400,
        batch: Annotated[int, typer.Option("--batch", min=1)] = 16,
        lr: Annotated[float, typer.Option("--lr")] = 1e-3,
        kl_weight: Annotated[float, typer.Option("--kl", help="Weight of the KL from the "
                                                 "pristine output.", min=0)] = 1.0,
        feature_weight: Annotated[float, typer.Option("--features", help="Weight of the "
                                                      "feature-map MSE.", min=0)] = 0.0,
        anchor_weight: Annotated[float, typer.Option(
            "--anchor", help="Weight of the term that keeps pristine images reading as the "
            "plain machine reads them.", min=0)] = 0.5,
        unconditioned: Annotated[bool, typer.Option(
            "--unconditioned", help="One adaptation for all codecs (codec unknown).")] = False,
        limit: Annotated[int, typer.Option("--limit", help="Use only the first N images.",
                                           min=0)] = 0,
        views: Annotated[int, typer.Option("--views", help="Square views per photo, spread "
                                           "over --scales.", min=1)] = 6,
        scales: Annotated[str, typer.Option("--scales", help="Comma-separated view sides as "
                                            "multiples of the machine's input side (0 = the "
                                            "whole photo). Cover the sizes your images are "
                                            "read at: the machine shrinks them, and the "
                                            "artefacts with them.")] = "1,1.5,2",
        val_share: Annotated[float, typer.Option(
            "--val-share", help="Without --val: the share of photos held out for early "
            "stopping and the gate.", min=0, max=0.9)] = 0.2,
        patience: Annotated[int, typer.Option(
            "--patience", help="Evaluations without a better validation score before "
            "stopping (0: never stop early).", min=0)] = 4,
        eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = 25,
        no_gate: Annotated[bool, typer.Option(
            "--no-gate", help="Act on every condition, even where validation showed no "
            "gain.")] = False,
        cache: Annotated[Path | None, typer.Option(
            "--cache", help="Folder to keep coded views in between runs.")] = None,
        tune_encoder: Annotated[bool, typer.Option(
            "--tune-encoder", help="Fine-tune the whole encoder too: the reference that "
            "estimates the generalization gap in bench reports, not a small adapter.")] = False,
        encoder_lr_scale: Annotated[float, typer.Option(
            "--encoder-lr-scale", help="With --tune-encoder: the encoder's learning rate as a "
            "share of --lr.", min=0)] = 0.1,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Train an adapter: machine+adapter on decoded views learns to read them as the frozen
        machine reads the pristine ones; held-out photos pick the step and gate the
        conditions where it did not help."""
        from icm.adapt import TrainConfig, train_adapter

        config = TrainConfig(
            machine=machine, codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
            images=images, val=val, out=out_path, conditioned=not unconditioned, steps=steps,
            batch=batch, lr=lr, kl_weight=kl_weight, feature_weight=feature_weight,
            anchor_weight=anchor_weight, limit=limit, views=views, scales=_scales(scales),
            val_share=val_share, patience=patience, eval_every=eval_every, gate=not no_gate,
            cache=cache, tune_encoder=tune_encoder, encoder_lr_scale=encoder_lr_scale,
        )
        with progress_bar(err, disable=as_json) as progress:
            show = stage_reporter(progress)

            result = train_adapter(config, show)
        gate = result.gate
        record = {
            "out": str(result.out), "steps": result.steps, "best_step": result.best_step,
            "resumed_from": result.resumed_from, "pairs": result.pairs,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "val_before": result.val_before, "val_after": result.val_after,
            "gate_open": None if gate is None else sorted(k for k, e in gate.items() if e.open),
            "gate_shut": None if gate is None else sorted(k for k, e in gate.items()
                                                          if not e.open),
        }
        if as_json:
            sys.stdout.write(json.dumps(record, indent=2) + "\n")
            return
        out.print(f"{result.out}: {result.steps} steps on {result.pairs} coded views, kept "
                  f"step {result.best_step}"
                  + (f" (resumed at {result.resumed_from})" if result.resumed_from else "")
                  + (f"; validation divergence {result.val_before:.4f} -> "
                     f"{result.val_after:.4f}" if result.val_before is not None
                     and result.val_after is not None else ""), markup=False)
        out.print(_gate_line(gate), markup=False)

    @adapt.command("info")
    def info_command(path: Annotated[Path, typer.Argument(help="Adapter file.")]) -> None:
        """What an adapter file was made for."""
        from icm.adapt import read_adapter

        tensors, info = read_adapter(path)
        record = {"machine": info.machine, "fingerprint": info.fingerprint, "kind": info.kind,
                  "conditioned": info.conditioned, "tuned_encoder": info.tuned_encoder,
                  "codecs": list(info.conditioning.codecs),
                  "bpp_edges": list(info.conditioning.edges),
                  "input_side": info.conditioning.input_side,
                  "gate": _gate_record(info), "trained": info.trained,
                  "parameters": int(sum(t.numel() for t in tensors.values()))}
        sys.stdout.write(json.dumps(record, indent=2) + "\n")


def _gate_record(info: AdapterInfo) -> dict:
    """Per condition, what the adapter does there and why: the words a user reads to know
    whether to trust it on their images."""
    if info.gate is None:
        return {"*": "adapted everywhere: no gate (no validation photos, or a file made before "
                     "gates)"}
    from icm.adapt.gate import ALL

    record = {}
    for key, entry in sorted(info.gate.items()):
        codec, _, bucket = key.partition("@")
        label = key if key == ALL else (
            f"{codec} {info.conditioning.bucket_range(int(bucket))}")
        verb = "adapted" if entry.open else "identity (plain machine)"
        bound = "n/a" if entry.gain_low is None else f"{-entry.gain_low:+.4f}"
        what = "cosine distance" if entry.top1_change is None else "KL"
        record[label] = (f"{verb}: on validation, {what} to the pristine output "
                         f"{-entry.gain:+.4f} (90% upper bound {bound})"
                         + ("" if entry.top1_change is None else
                            f", top-1 agreement {entry.top1_change:+.3f}")
                         + f"; {entry.samples} views of {entry.photos} photos")
    record["any other condition"] = "identity (plain machine): not seen on validation"
    return record


def _gate_line(gate: dict[str, GateEntry] | None) -> str:
    if gate is None:
        return "no validation photos: the adapter acts on every condition, ungated"
    shut = sorted(k for k, e in gate.items() if not e.open)
    opened = sorted(k for k, e in gate.items() if e.open)
    return (f"gate: adapts {len(opened)} condition(s) ({', '.join(opened) or 'none'}); "
            f"reads {len(shut)} as the plain machine (no gain on validation)")


def _scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        scales = ()
    if not scales or any(not 0 <= scale <= 16 for scale in scales):
        raise IcmError(f"--scales {text!r} is not comma-separated multiples of the input side "
                       "(e.g. 1,1.5,2; 0 = the whole photo)")
    return scales
