"""A frozen torch vision encoder with an adapter hooked into it.

The encoder's own weights never change (``requires_grad`` off, eval mode); forward hooks put
the adapter between its stages (CNNs) or in front of its first layer norm (ViTs), so every
path through the encoder (features, logits) is adapted without copying or editing its code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from icm.adapt.conditioning import Condition, Conditioning
from icm.adapt.gate import gate_key
from icm.adapt.modules import ConditionEmbedding, StageAdapters, TokenAdapter
from icm.errors import IcmError

CNN, VIT = "cnn-stages", "vit-tokens"


class AdapterError(IcmError):
    """An adapter that does not fit its encoder, or a file that is not an adapter."""


@dataclass(frozen=True)
class Layout:
    """Where the adapter goes: stage-end block indices and channels (CNN) or token width."""

    kind: str
    stages: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    width: int = 0


def layout_of(encoder: nn.Module) -> Layout:
    """Find the adapter's place in an encoder: an EfficientNet-style ``_blocks`` list (the last
    block of each run of equal output channels ends a stage) or a ViT with ``ln_pre``."""
    blocks = getattr(encoder, "_blocks", None)
    if blocks is not None:
        outs = [_out_channels(block) for block in blocks]
        ends = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
        return Layout(CNN, tuple(ends), tuple(outs[i] for i in ends))
    ln_pre = getattr(encoder, "ln_pre", None)
    if isinstance(ln_pre, nn.LayerNorm):
        return Layout(VIT, width=int(ln_pre.normalized_shape[0]))
    raise AdapterError(
        f"cannot place an adapter in a {type(encoder).__name__}: expected an EfficientNet-style "
        "_blocks list or a ViT with ln_pre"
    )


def trimmed(layout: Layout, first_stage: int) -> Layout:
    """``layout`` with adapters from stage ``first_stage`` on (CNNs; a ViT has one place)."""
    if layout.kind != CNN:
        if first_stage:
            raise AdapterError("a ViT adapter has one place (before ln_pre): first stage 0")
        return layout
    if not 0 <= first_stage < len(layout.stages):
        raise AdapterError(f"first adapted stage {first_stage} is not one of the encoder's "
                           f"{len(layout.stages)} stages")
    return Layout(CNN, layout.stages[first_stage:], layout.channels[first_stage:])


class _Cut(Exception):
    """Raised by a hook to stop a forward pass once the frozen prefix is computed."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__()
        self.tensor = tensor


def frozen_prefix(encoder: nn.Module, block: int, run: Any, x: torch.Tensor) -> torch.Tensor:
    """The output of ``encoder._blocks[block]`` on ``x`` (before any adapter there), computing
    nothing after it. ``run(encoder, x)`` is the machine's own forward (features or logits).

    Why: the stages before a CNN adapter's first stage are frozen and see the same pixels on
    every step, and at full resolution they are most of a CPU forward pass (about four
    fifths of EfficientNet-Lite0's). Computed once per view, training and reading cost a
    fraction.
    """
    def stop(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        raise _Cut(output)

    handle = encoder._blocks[block].register_forward_hook(stop, prepend=True)
    try:
        run(encoder, x)
    except _Cut as cut:
        return cut.tensor
    finally:
        handle.remove()
    raise AdapterError(f"block {block} never ran: not a prefix of this encoder")


def from_prefix(encoder: nn.Module, block: int, run: Any, prefix: torch.Tensor,
                side: int = 32) -> torch.Tensor:
    """``run(encoder, .)`` continued from a stored :func:`frozen_prefix`: the blocks before
    run on a dummy ``side`` px input (next to nothing), and block ``block``'s output is
    replaced by ``prefix`` before its adapter sees it, so the result equals the full pass."""
    handle = encoder._blocks[block].register_forward_hook(
        lambda _module, _inputs, _output: prefix, prepend=True)
    try:
        dummy = torch.zeros(len(prefix), 3, side, side, dtype=prefix.dtype)
        return run(encoder, dummy)
    finally:
        handle.remove()


def _out_channels(block: nn.Module) -> int:
    project = getattr(block, "_project_conv", None)
    if project is None:
        raise AdapterError(f"block {type(block).__name__} has no _project_conv")
    return int(project.out_channels)


class AdaptedEncoder(nn.Module):
    """``encoder`` (frozen) + condition embedding + adapter, set per batch by
    :meth:`condition`. With ``conditioned=False`` every image gets the "unknown" condition: one
    learned adaptation for all codecs.

    ``gate`` is the set of condition keys (:func:`icm.adapt.gate.gate_key`) the adapter acts
    on; an image of any other condition reads through the frozen encoder unchanged. None (while
    training, and in files made before gates) acts on every condition.

    ``first_stage`` > 0 leaves a CNN's first stages without adapters (see :func:`frozen_prefix`).

    With ``tune_encoder=True`` the encoder's own weights train too (batch-norm statistics stay
    frozen) and belong to the file: not an adapter to ship but the fine-tuned reference that
    estimates the best any adaptation could do (the theta* of CompressVLMBench's gap split).
    """

    def __init__(self, encoder: nn.Module, conditioning: Conditioning, *,
                 conditioned: bool = True, tune_encoder: bool = False,
                 gate: frozenset[str] | None = None, first_stage: int = 0) -> None:
        super().__init__()
        self.gate, self.first_stage = gate, first_stage
        self.encoder = encoder.eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(tune_encoder)
        self.tune_encoder = tune_encoder
        self.conditioning, self.conditioned = conditioning, conditioned
        self.layout = trimmed(layout_of(encoder), first_stage)
        self.embedding = ConditionEmbedding(conditioning.codec_slots, conditioning.bucket_slots)
        if self.layout.kind == CNN:
            self.adapter: nn.Module = StageAdapters(self.layout.channels, self.embedding.size)
        else:
            self.adapter = TokenAdapter(self.embedding.size, self.layout.width)
        self._hooks = self._attach()

    def _attach(self) -> list[Any]:
        if self.layout.kind == CNN:
            blocks = self.encoder._blocks
            return [blocks[index].register_forward_hook(self._stage_hook(stage))
                    for stage, index in enumerate(self.layout.stages)]
        hook = self.encoder.ln_pre.register_forward_pre_hook(
            lambda _module, args: (self.adapter.apply(args[0]), *args[1:]))
        return [hook]

    def _stage_hook(self, stage: int):
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            return self.adapter.apply(stage, output)
        return hook

    @property
    def cut(self) -> int | None:
        """The block whose output the first adapter changes (CNNs): everything up to it is
        the frozen prefix (:func:`frozen_prefix`). None for ViTs."""
        return self.layout.stages[0] if self.layout.kind == CNN else None

    def train(self, mode: bool = True) -> AdaptedEncoder:
        """The encoder stays in eval mode (frozen batch norm) even when its weights train."""
        super().train(mode)
        self.encoder.eval()
        return self

    def condition(self, conditions: Sequence[Condition]) -> None:
        """Set the condition of the next batch (one per image)."""
        if not self.conditioned:
            conditions = [Condition() for _ in conditions]
        codec_ids, bucket_ids = self.conditioning.ids(conditions)
        device = next(self.embedding.parameters()).device
        vector = self.embedding(torch.tensor(codec_ids, device=device),
                                torch.tensor(bucket_ids, device=device))
        opened = [self.acts_on(c, b) for c, b in zip(codec_ids, bucket_ids, strict=True)]
        self.adapter.set_condition(vector, torch.tensor(opened, dtype=vector.dtype,
                                                        device=device))

    def acts_on(self, codec_id: int, bucket_id: int) -> bool:
        """Whether the gate lets the adapter act on this condition."""
        if self.gate is None:
            return True
        return gate_key(self.conditioning, codec_id, bucket_id, self.conditioned) in self.gate

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The adapter's own tensors (what an adapter file holds), by name."""
        state = {f"embedding.{k}": v for k, v in self.embedding.state_dict().items()}
        state.update({f"adapter.{k}": v for k, v in self.adapter.state_dict().items()})
        if self.tune_encoder:
            state.update({f"encoder.{k}": v for k, v in self.encoder.state_dict().items()})
        return state

    def load_trainable(self, state: dict[str, torch.Tensor], path: str = "") -> None:
        mine = self.trainable_state()
        missing, extra = set(mine) - set(state), set(state) - set(mine)
        if missing or extra:
            raise AdapterError(f"adapter tensors do not match this encoder (missing "
                               f"{sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})", path)
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(mine[name].shape):
                raise AdapterError(f"adapter tensor {name} has shape {tuple(tensor.shape)}, "
                                   f"this encoder needs {tuple(mine[name].shape)}", path)
        self.embedding.load_state_dict({k[10:]: v for k, v in state.items()
                                        if k.startswith("embedding.")})
        self.adapter.load_state_dict({k[8:]: v for k, v in state.items()
                                      if k.startswith("adapter.")})
        if self.tune_encoder:
            self.encoder.load_state_dict({k[8:]: v for k, v in state.items()
                                          if k.startswith("encoder.")})
