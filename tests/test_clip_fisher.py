"""CLIP as torch parts: differentiable preprocessing, the Fisher diagonal, the Fisher route.

The tiny random open_clip ViT of ``test_importance_clip.py`` (64-px input, 8-px patches) is
registered and saved as a state dict, then loaded through the machine's public name, as real
weights are. ``prepare`` is checked against the PIL transform open_clip builds for the model
(every resize mode, both filters, down- and upscaling); the Fisher diagonal through it must be
exactly zero on the pixels the centre crop drops and positive on the pixels it keeps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from icm.codecs import get_codec
from icm.importance.fisher import fisher_diagonal
from icm.machines import get_machine
from icm.machines.clip import ClipMachine, input_geometry

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from tests.clip_helpers import random_clip_checkpoint  # noqa: E402
from tests.test_importance_clip import TINY, TINY_CONFIG  # noqa: E402

#: prepare vs open_clip's PIL transform, after normalisation: PIL rounds each resampling pass
#: to uint8 (two passes: about 1/255 / std 0.26 = 0.015), torch does not
MATCH = 0.03


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_clip_checkpoint(tmp_path_factory.mktemp("clip-fisher"), TINY, TINY_CONFIG)


@pytest.fixture(scope="module")
def machine(weights: Path) -> ClipMachine:
    return get_machine(f"clip:{TINY}@{weights}")


def _pictures(height: int, width: int) -> list[np.ndarray]:
    """Noise (the worst case for bicubic overshoot) and a smooth two-way gradient."""
    noise = np.random.default_rng(height * 1000 + width).integers(0, 256, (height, width, 3))
    ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    return [noise.astype(np.uint8), np.repeat(ramp, 3, axis=2).astype(np.uint8)]


def _with_preprocessing(machine: ClipMachine, **settings) -> ClipMachine:
    """A separate machine on the same weights whose open_clip preprocessing is overridden."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    other = get_machine(machine.name)
    visual = other.model().visual
    visual.preprocess_cfg = {**visual.preprocess_cfg, **settings}
    other._preprocess = image_transform_v2(PreprocessCfg(**visual.preprocess_cfg), is_train=False)
    return other


SIZES = [(64, 96), (128, 192), (157, 203), (40, 50), (65, 64), (300, 64)]
SETTINGS = [
    {},  # the model's own: shortest side + centre crop, bicubic
    {"interpolation": "bilinear"},
    {"resize_mode": "longest"},  # letterbox: pads with the fill colour
    {"resize_mode": "squash"},
    {"size": (48, 64)},  # non-square shortest: open_clip's ResizeKeepRatio
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(map(str, s.values())))
def test_prepare_matches_the_pil_preprocessing(machine, settings):
    target = _with_preprocessing(machine, **settings) if settings else machine
    parts = target.torch_parts()
    worst = 0.0
    for height, width in SIZES:
        for picture in _pictures(height, width):
            ours = parts.prepare_image(picture)
            theirs = target.image_input(picture)
            assert ours.shape == theirs.shape
            worst = max(worst, float((ours - theirs).abs().max()))
            if settings == {} and (height, width) in {(64, 96), (300, 64), (65, 64)}:
                # shorter side already 64: no resampling at all, so exact
                assert torch.equal(ours, theirs)
    assert worst < MATCH


def test_prepare_is_differentiable_and_features_match_the_machine(machine, photo):
    parts = machine.torch_parts()
    assert parts.logits is None and parts.module is machine.model().visual
    x = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1)[None].requires_grad_(True)
    features = parts.features_of(x)
    assert features.shape == (1, TINY_CONFIG["embed_dim"])
    features.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    (output,) = machine.predict([photo])
    ours = torch.nn.functional.normalize(features.detach(), dim=-1)[0].numpy()
    assert float(ours @ np.asarray(output["embedding"])) > 0.999
    again = parts.predict(parts.module, photo)
    assert again["zeroshot"]["label"] == output["zeroshot"]["label"]
    assert np.allclose(again["embedding"], output["embedding"], atol=0.02)


def test_geometry_follows_torchvision_and_open_clip():
    cfg = {"size": 64, "resize_mode": "shortest", "interpolation": "bicubic"}
    plan = input_geometry(cfg, 157, 203)
    assert plan.resized == (64, 82)  # torchvision truncates the long side: int(64*203/157)
    assert plan.crop == (0, 9) and plan.pad == (0, 0, 0, 0)
    letterbox = input_geometry({**cfg, "resize_mode": "longest"}, 64, 96)
    assert letterbox.resized == (43, 64) and letterbox.pad == (0, 10, 0, 11)


def _forward(machine: ClipMachine):
    parts = machine.torch_parts()
    return lambda x: parts.features(parts.module, parts.prepare(x))


def test_fisher_is_zero_outside_the_crop_at_one_to_one(machine):
    # 64 high, 96 wide: the shorter side is already 64, so no resampling; the centre crop
    # keeps columns 16..79 exactly and the others never reach the model
    (image, _) = _pictures(64, 96)
    weights = fisher_diagonal(_forward(machine), image, output="features", probes=4)
    assert weights.shape == (64, 96, 3) and weights.dtype == np.float32
    assert weights.min() >= 0.0
    assert np.all(weights[:, :16] == 0) and np.all(weights[:, 80:] == 0)
    assert weights[:, 16:80].min() > 0


def test_fisher_through_a_downscale_respects_the_filter_support(machine, photo):
    # 128 high, 192 wide -> 64 x 96 (bicubic, antialiased: each output pixel reads input
    # pixels within 2 x 2 = 4 of its centre), then columns 16..79 of the resized image, that is
    # input columns 32..159: pixels further than the filter's reach from them get exactly zero
    assert photo.shape[:2] == (128, 192)
    weights = fisher_diagonal(_forward(machine), photo, output="features", probes=4)
    assert weights.min() >= 0.0
    reach = 4
    assert np.all(weights[:, : 32 - reach] == 0) and np.all(weights[:, 160 + reach :] == 0)
    assert weights[:, 32:160].min() > 0
    assert weights[:, 32 - reach : 32].max() > 0  # the filter does read a little beyond


def test_the_allocator_takes_the_fisher_route_for_clip(weights, photo):
    from icm.importance.allocation import MachineAllocator

    allocator = MachineAllocator(f"clip:{TINY}@{weights}", block=16, probes=8)
    assert allocator.differentiable
    assert allocator.source() == "fisher8"
    allocation = allocator.plan(photo, get_codec("jpeg"), None, {})
    weights = allocation.weights  # per 16-px block: columns 0 and 11 are never read
    assert weights.shape == (8, 12) and np.all(weights[:, 0] == 0) and weights[:, 2:10].min() > 0
    assert allocation.record["weights"] == "fisher8"
    # 12 block columns of 16: the first (0..15) and last (176..191) are beyond the reach
    assert allocation.record["unread_blocks"] == round(2 / 12, 4)
