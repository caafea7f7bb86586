"""Vision-language models through transformers: short answers to a fixed set of prompts.

Names are ``vlm:<hub id or local folder>[@revision]``: ``vlm:Qwen/Qwen2.5-VL-3B-Instruct``,
``vlm:/models/smolvlm`` (a ``save_pretrained`` folder). Any model that transformers loads with
``AutoProcessor`` + ``AutoModelForImageTextToText`` works; the processor's chat template wraps
each prompt, decoding is greedy so equal inputs give equal answers.

Fidelity is how much the answers on the decoded image agree with the answers on the pristine
image (SQuAD token F1 and exact match, averaged over prompts): it needs no labels, and it
catches what matters to a VLM user (the caption, the object, the text it can still read).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from icm.errors import IcmError
from icm.image.datasets import Truth
from icm.machines.base import InputProfile, Machine, MachineSpec, Output, Scores
from icm.machines.clip import file_identity, offline_cache_miss, torch_device
from icm.machines.registry import MachineUnavailableError, register_machine
from icm.machines.scoring import exact_match, token_f1

#: the default prompt set: a caption, the main object, and the text the model can read
DEFAULT_PROMPTS: tuple[str, ...] = (
    "Describe the image in one sentence.",
    "What is the main object in the image? Answer with one word.",
    "What text is visible in the image? Answer with the text only.",
)
#: which default prompt reads text (scored against a document's ground truth)
DEFAULT_READ_TEXT = 2
MAX_NEW_TOKENS = 32
#: environment variable naming a JSON prompt file (see ``load_prompts``)
PROMPTS_ENV = "ICM_VLM_PROMPTS"


def load_prompts(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A prompt file: a JSON list of prompts, or an object with ``prompts`` and optionally
    ``read_text`` (index of the text-reading prompt) and ``max_new_tokens``."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IcmError(f"cannot read the VLM prompt file: {exc}", path) from exc
    settings = dict(data) if isinstance(data, dict) else {"prompts": data}
    prompts = settings.get("prompts")
    if not (isinstance(prompts, list) and prompts and all(isinstance(p, str) for p in prompts)):
        raise IcmError('expected a JSON list of prompts or {"prompts": [...]}', path)
    read_text = settings.get("read_text")
    if read_text is not None and not (isinstance(read_text, int) and 0 <= read_text < len(prompts)):
        raise IcmError(f"read_text must index the {len(prompts)} prompts", path)
    tokens = settings.get("max_new_tokens", MAX_NEW_TOKENS)
    if not (isinstance(tokens, int) and tokens > 0):
        raise IcmError("max_new_tokens must be a positive integer", path)
    return {"prompts": tuple(prompts), "read_text": read_text, "max_new_tokens": tokens}


def _looks_local(model: str) -> bool:
    """A local folder when it exists or is spelled like a path; hub ids are ``org/name``."""
    spelled_as_path = model.startswith(("/", ".", "~")) or os.sep in model.replace("/", "", 1)
    return spelled_as_path or Path(model).expanduser().exists()


@register_machine("vlm:HuggingFaceTB/SmolVLM-256M-Instruct", "vlm:Qwen/Qwen2.5-VL-3B-Instruct")
class VlmMachine(Machine):
    family = "vlm"
    wants_gpu = True
    primary = "token_f1"
    summary = "image-text-to-text model answering a fixed prompt set (greedy)"
    install_hint = "VLMs need transformers: pip install 'icm[vlm]'"
    default_batch = 4

    def __init__(
        self,
        spec: MachineSpec,
        prompts: Sequence[str] | None = None,
        read_text: int | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> None:
        """``prompts`` default to the file named by ``$ICM_VLM_PROMPTS``, else
        ``DEFAULT_PROMPTS``; ``read_text`` indexes the prompt whose answer is scored against
        ``truth.text`` (None: no accuracy)."""
        super().__init__(spec)
        if prompts is None and os.environ.get(PROMPTS_ENV):
            settings = load_prompts(os.environ[PROMPTS_ENV])
            prompts, read_text = settings["prompts"], settings["read_text"]
            max_new_tokens = settings["max_new_tokens"]
        elif prompts is None:
            prompts, read_text = DEFAULT_PROMPTS, DEFAULT_READ_TEXT
        self.prompts = tuple(prompts)
        self.read_text = read_text
        self.max_new_tokens = max_new_tokens
        self._model: Any = None
        self._processor: Any = None
        self._texts: list[str] = []

    # -- names --------------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        if importlib.util.find_spec("transformers") is None:
            return "transformers is not installed"
        if _looks_local(spec.model):
            folder = Path(spec.model).expanduser()
            if not folder.is_dir():
                return f"no such model folder: {spec.model}"
            if not (folder / "config.json").is_file():
                return f"{spec.model} has no config.json (expected a save_pretrained folder)"
            if spec.variant:
                return f"a local folder takes no '@{spec.variant}' revision"
            return None
        return offline_cache_miss(spec.model, "config.json", spec.variant)

    @property
    def _source(self) -> str:
        model = self.spec.model
        return str(Path(model).expanduser()) if _looks_local(model) else model

    # -- the model ----------------------------------------------------------------------------
    def _load_processor(self) -> Any:
        if self._processor is None:
            from transformers import AutoProcessor

            revision = {"revision": self.spec.variant} if self.spec.variant else {}
            processor = self._guarded(AutoProcessor.from_pretrained, self._source, **revision)
            tokenizer = getattr(processor, "tokenizer", processor)
            tokenizer.padding_side = "left"  # generation continues after the prompt's last token
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._processor = processor
            self._texts = [self._prompt_text(prompt) for prompt in self.prompts]
        return self._processor

    def _load(self) -> Any:
        """Load once, on first use: ``get_machine`` and planning stay cheap."""
        if self._model is None:
            from transformers import AutoModelForImageTextToText
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # per-load bars would garble the bench's progress
            self._load_processor()
            revision = {"revision": self.spec.variant} if self.spec.variant else {}
            model = self._guarded(
                AutoModelForImageTextToText.from_pretrained,
                self._source,
                dtype=self._dtype,
                **revision,
            )
            self._model = model.to(self._device).eval()
        return self._model

    def _guarded(self, load, *args, **kwargs) -> Any:
        """Missing folders, hub ids not in an offline cache, unknown architectures: one line."""
        try:
            return load(*args, **kwargs)
        except (OSError, ValueError, KeyError, ImportError) as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
            raise MachineUnavailableError(f"machine {self.name} did not load: {first}") from exc

    @cached_property
    def _device(self) -> str:
        return torch_device()

    @cached_property
    def _dtype(self) -> Any:
        """float32 on the CPU (bf16 matmuls there are slow or missing), bfloat16 on CUDA,
        float16 on MPS: a fixed rule, so the fingerprint never has to initialise a GPU."""
        import torch

        if self._device.startswith("cuda"):
            return torch.bfloat16
        return torch.float16 if self._device == "mps" else torch.float32

    def _prompt_text(self, prompt: str) -> str:
        """One image then the prompt, through the chat template when the processor has one."""
        processor = self._processor
        if getattr(processor, "chat_template", None):
            content = [{"type": "image"}, {"type": "text", "text": prompt}]
            messages = [{"role": "user", "content": content}]
            return processor.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        return f"{getattr(processor, 'image_token', None) or '<image>'}{prompt}"

    @property
    def profile(self) -> InputProfile:
        """What the image processor does to an image (loads the processor, not the model)."""
        return _profile_of(getattr(self._load_processor(), "image_processor", None))

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        """Each image's prompts run as one left-padded batch.

        Batching per image (not across images) keeps every image's padding and batch shape
        the same whichever batch it arrives in, so a pristine image read alone and its decoded
        copies read together are compared under identical numerics.
        """
        return [{"answers": self._answer(image)} for image in images]

    def _answer(self, image: np.ndarray) -> list[str]:
        import torch
        from PIL import Image

        model, processor = self._load(), self._processor
        picture = Image.fromarray(image)
        inputs = processor(
            text=self._texts,
            images=[[picture] for _ in self._texts],
            padding=True,
            return_tensors="pt",
        ).to(model.device)
        inputs = inputs.to(model.dtype)  # floating tensors only (pixel values)
        tokenizer = getattr(processor, "tokenizer", processor)
        with torch.inference_mode():
            generated = model.generate(
                **inputs,
                do_sample=False,
                num_beams=1,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = generated[:, inputs["input_ids"].shape[1] :]
        return [answer.strip() for answer in processor.batch_decode(new, skip_special_tokens=True)]

    # -- scores -------------------------------------------------------------------------------
    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        """Mean SQuAD token F1 and exact match of decoded answers against pristine answers."""
        pairs = list(zip(decoded["answers"], pristine["answers"], strict=True))
        f1 = [token_f1(answer, reference) for answer, reference in pairs]
        exact = [exact_match(answer, reference) for answer, reference in pairs]
        return {
            "token_f1": float(np.mean(f1)) if f1 else 1.0,
            "exact_match": float(np.mean(exact)) if exact else 1.0,
        }

    def accuracy(self, output: Output, truth: Truth) -> Scores | None:
        """Token F1 and exact match of the text-reading answer against the rendered text."""
        if not truth.text or self.read_text is None:
            return None
        answer = output["answers"][self.read_text]
        return {
            "text_f1": float(token_f1(answer, truth.text)),
            "text_exact": float(exact_match(answer, truth.text)),
        }

    # -- provenance ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Model (and local weights' identity), prompts, decoding length and dtype."""
        parts = [self.name, f"prompts={json.dumps(self.prompts)}"]
        parts += [f"max_new_tokens={self.max_new_tokens}", f"dtype={self._dtype}"]
        if _looks_local(self.spec.model) and Path(self._source).is_dir():
            parts.append(f"weights={file_identity(self._source)}")
        return "|".join(parts)

    def versions(self) -> Mapping[str, str]:
        return {name: metadata.version(name) for name in ("transformers", "torch", "tokenizers")}


def _side(size: Mapping[str, Any]) -> int | tuple[int, int]:
    width, height = int(size["width"]), int(size["height"])
    return width if width == height else (width, height)


def _profile_of(image_processor: Any) -> InputProfile:
    """Best-effort reading of the common image-processor conventions in transformers."""
    if image_processor is None:
        return InputProfile(None, "native", notes="no image processor")
    name = type(image_processor).__name__
    size = dict(getattr(image_processor, "size", None) or {})
    if hasattr(image_processor, "merge_size") and "longest_edge" in size:
        # Qwen-VL style dynamic resolution: size holds min/max *pixel counts*, not sides
        return InputProfile(None, "native", max_pixels=int(size["longest_edge"]), notes=name)
    crop = getattr(image_processor, "crop_size", None)
    if getattr(image_processor, "do_center_crop", False) and crop:
        return InputProfile(_side(crop), "shorter-side+center-crop", notes=name)
    if "height" in size and "width" in size:
        return InputProfile(_side(size), "stretch", notes=name)
    if "longest_edge" in size:
        return InputProfile(int(size["longest_edge"]), "longest-side", notes=name)
    if "shortest_edge" in size:
        return InputProfile(int(size["shortest_edge"]), "shorter-side", notes=name)
    return InputProfile(None, "native", notes=name)
