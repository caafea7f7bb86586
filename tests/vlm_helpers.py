"""A tiny random-initialised LLaVA (CLIP vision tower + Llama decoder) saved like a user's
weights, for the offline VLM tests and the lmms-eval wrapper's tests: real classes, a few
thousand parameters."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# LLaVA's chat format, reduced: the processor expands <image> to one token per vision patch
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %} <image>"
    "{% else %} {{ part['text'] }}{% endif %}{% endfor %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def tiny_tokenizer(texts: Iterable[str]):
    """A word-level tokenizer over the words of ``texts``, built offline with ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = re.findall(r"\w+|[^\w\s]", " ".join(texts).lower())
    vocab = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "user", "assistant", ":"]
    vocab += sorted(set(words) - set(vocab))
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tokenizer, len(vocab)


def save_tiny_llava(folder: Path, texts: Iterable[str], seed: int = 0) -> Path:
    """Save a seeded random tiny LLaVA and its processor (32 px images) to ``folder``."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer, vocab_size = tiny_tokenizer(texts)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,  # the vision tower's CLS token
        chat_template=CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
