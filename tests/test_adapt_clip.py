"""Adapters on a CLIP ViT (open_clip, random init: no weights are reachable offline): the
same training, early stopping, gate and machine path as on a CNN, scored by embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from tests.clip_helpers import random_clip_checkpoint  # noqa: E402

from icm.adapt import TrainConfig, read_adapter, train_adapter  # noqa: E402

TINY = "icm-test-adapt-clip"
CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


@pytest.fixture(scope="module")
def clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    weights = random_clip_checkpoint(tmp_path_factory.mktemp("adapt-clip"), TINY, CONFIG)
    return f"clip:{TINY}@{weights}"


@pytest.fixture(scope="module")
def vit_adapter(clip_name: str, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("vit") / "vit.safetensors"
    result = train_adapter(TrainConfig(
        machine=clip_name, codecs=("jpeg",), levels={"jpeg": ("q5", "q40")}, images="samples",
        limit=4, views=3, scales=(1.0, 2.0), val_share=0.5, steps=6, eval_every=2, batch=4,
        lr=3e-2, out=out))
    return out, result


def test_a_vit_adapter_trains_on_embeddings_and_stops_on_validation(vit_adapter):
    out, result = vit_adapter
    info = read_adapter(out)[1]
    assert info.kind == "vit-tokens" and info.first_stage == 0
    assert info.conditioning.input_side == 32  # buckets per input pixel of a 32 px model
    assert info.trained["train_photos"] == 2 and info.trained["val_photos"] == 2
    assert [p["step"] for p in result.curve] == [0, 2, 4, 6]
    assert all(0 <= p["val"] <= 2 for p in result.curve)  # cosine distances
    assert result.val_after == min(p["val"] for p in result.curve)
    assert result.best_step in (0, 2, 4, 6)
    assert info.gate == result.gate
    assert {key.split("@")[0] for key in result.gate} == {"jpeg", "unknown"}
    assert all(entry.top1_change is None for entry in result.gate.values())  # no classes


def test_the_clip_machine_reads_through_the_gated_adapter(vit_adapter, clip_name, photo):
    from icm.machines import get_machine

    out, _ = vit_adapter
    machine = get_machine(f"{clip_name}+adapter={out}")
    adapted, parts = machine._model()
    plain = parts.predict(parts.module, photo)["embedding"]
    bpp = 0.3
    key = f"jpeg@{adapted.conditioning.bucket_id(_condition(bpp, photo))}"
    adapted.gate = frozenset()  # every condition shut: the plain tower, exactly
    assert machine.predict_coded([photo], [("jpeg", bpp)])[0]["embedding"] == plain
    adapted.gate = frozenset({key})
    torch.nn.init.normal_(adapted.adapter.project.bias)  # a trained adapter acts
    opened = machine.predict_coded([photo], [("jpeg", bpp)])[0]["embedding"]
    assert not np.allclose(opened, plain)
    other = machine.predict_coded([photo], [("hevc", bpp)])[0]["embedding"]
    assert other == plain  # a codec it never saw, at a rate validation never opened
    assert Path(out).exists()


def _condition(bpp: float, photo: np.ndarray):
    from icm.adapt import Condition

    return Condition("jpeg", bpp, photo.shape[:2])
