"""``clip-attention`` and ``prompt`` on tiny open_clip ViTs saved as local weight files.

As in ``test_machines_clip_vlm.py``, nothing downloads: a miniature architecture is registered
with open_clip, saved as a bare state dict and loaded back through the provider's public name,
the path real weights take. One model is random (shape, determinism, dependence on the input);
the other has its attention set by hand so that the brightest patch draws every query, which
pins down the aggregation (received, not given), the patch order and the crop geometry.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from icm.errors import IcmError
from icm.importance import get_importance
from icm.importance.providers.clip import grid_to_pixels, input_box

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

TINY = "icm-test-tiny-clip-importance"
# 64-px input in 8-px patches: an 8x8 grid, enough for geometry to matter, still milliseconds
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_RESNET = "icm-test-tiny-clip-resnet"
TINY_RESNET_CONFIG = {
    **TINY_CONFIG,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip-importance")
    for name, settings in ((TINY, TINY_CONFIG), (TINY_RESNET, TINY_RESNET_CONFIG)):
        config = folder / f"{name}.json"
        config.write_text(json.dumps(settings))
        open_clip.add_model_config(config)
    return folder


def _save(model, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_weights(tiny_dir: Path) -> Path:
    torch.manual_seed(0)
    return _save(open_clip.create_model(TINY, pretrained=None), tiny_dir / "random.bin")


@pytest.fixture(scope="module")
def bright_weights(tiny_dir: Path) -> Path:
    """Every query attends by one feature: how bright a token's patch is.

    The patch embedding keeps only the patch's mean (channel 0) next to a constant (channel
    1, via the position embedding) so LayerNorm does not erase it; queries are a constant and
    keys read channel 0; attention and MLP outputs are zeroed so the second block sees the
    same tokens as the first.
    """
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    visual, width = model.visual, TINY_CONFIG["vision_cfg"]["width"]
    with torch.no_grad():
        visual.conv1.weight.zero_()
        visual.conv1.weight[0] = 1.0 / visual.conv1.weight[0].numel()
        visual.class_embedding.zero_()
        visual.positional_embedding.zero_()
        visual.positional_embedding[:, 1] = 1.0
        for block in visual.transformer.resblocks:
            block.attn.in_proj_weight.zero_()
            block.attn.in_proj_bias.zero_()
            block.attn.in_proj_bias[:width] = 1.0  # q = 1
            block.attn.in_proj_weight[width : 2 * width, 0] = 4.0  # k = 4 * brightness
            for linear in (block.attn.out_proj, block.mlp.c_proj):
                linear.weight.zero_()
                linear.bias.zero_()
    return _save(model, tiny_dir / "bright.bin")


@pytest.fixture(scope="module")
def attention(random_weights: Path):
    return get_importance(f"clip-attention={TINY}@{random_weights}")


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """Two different 203x157 pictures (odd, wider than tall: the crop drops the sides)."""
    rng = np.random.default_rng(3)
    smooth = np.linspace(0, 255, 203)[None, :, None] * np.ones((157, 1, 3))
    noise = rng.integers(0, 256, (157, 203, 3))
    return smooth.astype(np.uint8), noise.astype(np.uint8)


def test_attention_map_shape_range_and_determinism(attention, images):
    first = attention.compute(images[0], block=16)
    again = attention.compute(images[0], block=16)
    assert first.shape == (10, 13) and (first.width, first.height) == (203, 157)
    assert first.values.min() >= 0.0 and first.values.max() <= 1.0
    assert np.array_equal(first.values, again.values)
    assert first.provider == attention.full_name
    assert first.params["grid"] == "8x8"
    assert attention.compute(images[0], block=8).shape == (20, 26)


def test_attention_map_depends_on_the_image(attention, images):
    smooth, noise = (attention.compute(image).values for image in images)
    assert not np.allclose(smooth, noise, atol=1e-3)


def test_pixels_outside_the_crop_get_the_minimum(attention, images):
    # 157 high: the centre crop spans columns 23..180; the first block column (0..15) is
    # outside it and must be at the map's floor
    values = attention.compute(images[1]).values
    assert np.all(values[:, 0] == 0.0) and np.all(values[:, -1] == 0.0)
    assert values[:, 2:-2].max() == 1.0


def test_fingerprint_names_the_weights(attention, random_weights):
    fingerprint = attention.fingerprint()
    assert fingerprint.startswith(f"clip-attention={TINY}@{random_weights}")
    assert "layers=3" in fingerprint and "weights=" in fingerprint


def test_peak_lands_on_the_patch_every_token_attends_to(bright_weights):
    provider = get_importance(f"clip-attention={TINY}@{bright_weights}")
    # 200x120: the model sees the centred 120x120 square (columns 40..159) in 15-px patches
    image = np.zeros((120, 200, 3), dtype=np.uint8)
    image[30:45, 115:130] = 255  # patch row 2, column 5 of the 8x8 grid
    image[60:120, 0:30] = 255  # bigger, but outside the crop: CLIP never sees it
    values = provider.compute(image, block=8).values
    top = np.argwhere(values == 1.0)
    assert len(top) and top.min(axis=0).tolist() >= [3, 14] and top.max(axis=0).tolist() <= [5, 16]
    assert _centroid(values, 8) == pytest.approx((37.5, 122.5), abs=3)  # the patch's centre
    assert values[7:, :4].max() == 0.0
    mirrored = provider.compute(np.ascontiguousarray(image[:, ::-1]), block=8).values
    assert _centroid(mirrored, 8) == pytest.approx((37.5, 200 - 122.5), abs=3)


def _centroid(values: np.ndarray, block: int) -> tuple[float, float]:
    """Value-weighted centre of the map, in pixels (block centres)."""
    rows, cols = np.indices(values.shape)
    total = values.sum()
    return (
        float(((rows + 0.5) * block * values).sum() / total),
        float(((cols + 0.5) * block * values).sum() / total),
    )


def test_prompt_maps_depend_on_the_prompt(random_weights, images):
    car = get_importance(f"prompt=a red car@{TINY}@{random_weights}")
    cat = get_importance(f"prompt=a sleeping cat@{TINY}@{random_weights}")
    assert car.text == "a red car"
    first, again = car.compute(images[1]), car.compute(images[1])
    assert first.shape == (10, 13) and np.array_equal(first.values, again.values)
    assert first.values.min() >= 0.0 and first.values.max() <= 1.0
    assert not np.allclose(first.values, cat.compute(images[1]).values, atol=1e-3)
    assert not np.allclose(first.values, car.compute(images[0]).values, atol=1e-3)
    assert "weights=" in car.fingerprint()


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        (f"clip-attention={TINY}@/nonexistent/weights.bin", "/nonexistent/weights.bin"),
        ("prompt=@ViT-B-32@none", "prompt text is empty"),
        ("prompt", "needs =<text>"),
    ],
)
def test_unusable_names_fail_in_one_line(name, needle):
    with pytest.raises(IcmError) as caught:
        get_importance(name)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("clip-attention=no-such-arch@none", "no architecture 'no-such-arch'"),
        (f"clip-attention={TINY_RESNET}@none", "needs an open_clip ViT image tower"),
    ],
)
def test_unusable_models_fail_in_one_line_on_first_use(tiny_dir, name, needle, images):
    provider = get_importance(name)
    with pytest.raises(IcmError) as caught:
        provider.compute(images[0])
    assert needle in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("height", "width"), [(157, 203), (203, 157), (64, 64), (40, 300)])
def test_input_box_matches_open_clips_own_preprocessing(random_weights, height, width):
    """A bright square must land where the box says, through the model's own transform."""
    provider = get_importance(f"clip-attention={TINY}@{random_weights}")
    provider._visual()
    top, left, box_h, box_w = input_box(height, width, 64, "shortest")
    image = np.zeros((height, width, 3), dtype=np.uint8)
    cy, cx = int(top + box_h * 0.3), int(left + box_w * 0.7)
    image[cy - 3 : cy + 4, cx - 3 : cx + 4] = 255
    seen = provider._input(image)[0, 0].cpu().numpy()
    seen = np.where(seen > (seen.max() + seen.min()) / 2, seen, 0.0)  # the square, not ringing
    expected = ((cy + 0.5 - top) / box_h * 64, (cx + 0.5 - left) / box_w * 64)
    assert _centroid(seen, 1) == pytest.approx(expected, abs=1.0)


def test_geometry_of_each_resize_mode():
    assert input_box(100, 200, 50, "squash") == (0.0, 0.0, 100.0, 200.0)
    assert input_box(100, 200, 50, "shortest") == (0.0, 50.0, 100.0, 100.0)
    assert input_box(100, 200, 50, "longest") == (-50.0, 0.0, 200.0, 200.0)
    with pytest.raises(IcmError):
        input_box(100, 200, 50, "stretchy")
    grid = np.arange(4.0).reshape(2, 2)
    dense = grid_to_pixels(grid, 4, 8, (0.0, 2.0, 4.0, 4.0), fill=-1.0)
    assert np.all(dense[:, :2] == -1.0) and np.all(dense[:, 6:] == -1.0)
    assert dense[0, 2] == 0.0 and dense[3, 5] == 3.0  # corners: nearest patch
    assert dense[0, 3:5].tolist() == [0.25, 0.75]  # between patch centres: linear


@pytest.mark.parametrize("batch_first", [True, False])
def test_captured_attention_is_the_blocks_own_softmax(batch_first):
    """The re-run with weights on gives softmax(QK^T/sqrt(d)) averaged over heads, in
    (batch, query, key) order whichever layout the blocks run in."""
    from open_clip.transformer import Transformer

    from icm.importance.providers.clip import attention_weights

    torch.manual_seed(1)
    stack = Transformer(32, 2, 2, batch_first=batch_first).eval()
    tokens = torch.randn(2, 17, 32)
    with torch.no_grad(), attention_weights(list(stack.resblocks)) as captured:
        stack(tokens)
    block = stack.resblocks[0]
    q, k, _ = torch.nn.functional.linear(
        block.ln_1(tokens), block.attn.in_proj_weight, block.attn.in_proj_bias
    ).chunk(3, dim=-1)
    q, k = (t.reshape(2, 17, 2, 16).transpose(1, 2) for t in (q, k))
    expected = (q @ k.transpose(-1, -2) / 4).softmax(dim=-1).mean(dim=1)
    assert len(captured) == 2 and captured[0].shape == (2, 17, 17)
    assert torch.allclose(captured[0], expected.detach(), atol=1e-5)
