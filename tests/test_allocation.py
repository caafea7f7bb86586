"""The machine's weights (Fisher diagonal) and the rate-distortion-optimal offset rule."""

from __future__ import annotations

import numpy as np
import pytest

from icm.importance.allocation import allocation_prefilter, blur_unread, rd_offsets
from icm.importance.fisher import block_weights, fisher_diagonal

torch = pytest.importorskip("torch")


def crop_linear_classifier(height: int, width: int, box: tuple[int, int, int, int],
                           classes: int = 5, seed: int = 1):
    """A softmax classifier that reads only ``box`` (top, left, bottom, right) of the image,
    linearly, plus its exact Jacobian (classes x pixels, H*W*3 in H, W, C order)."""
    top, left, bottom, right = box
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(classes, 3, bottom - top, right - left, generator=generator) * 0.02

    def forward(x):
        crop = x[:, :, top:bottom, left:right]
        return torch.einsum("bchw,kchw->bk", crop, weights)

    jacobian = torch.zeros(classes, 3, height, width)
    jacobian[:, :, top:bottom, left:right] = weights
    return forward, jacobian.permute(0, 2, 3, 1).reshape(classes, -1).double()


def test_fisher_diagonal_matches_the_exact_gauss_newton_diagonal():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    forward, jacobian = crop_linear_classifier(6, 8, (1, 2, 5, 7))
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    probabilities = torch.softmax(forward(x)[0].double(), 0)
    curvature = torch.diag(probabilities) - torch.outer(probabilities, probabilities)
    exact = torch.einsum("kp,kl,lp->p", jacobian, curvature, jacobian).numpy().reshape(6, 8, 3)
    estimate = fisher_diagonal(forward, image, probes=4000)
    read = exact > 0
    assert np.all(estimate[~read] == 0)  # pixels outside the crop: exactly zero, not small
    relative = np.abs(estimate[read] - exact[read]) / exact[read]
    assert np.median(relative) < 0.1


def test_fisher_diagonal_is_deterministic_and_reads_features_too():
    image = np.full((8, 8, 3), 100, np.uint8)
    forward, _ = crop_linear_classifier(8, 8, (0, 0, 4, 8))
    first = fisher_diagonal(forward, image, output="features", probes=3, seed=5)
    again = fisher_diagonal(forward, image, output="features", probes=3, seed=5)
    assert np.array_equal(first, again)
    assert first[:4].min() > 0 and np.all(first[4:] == 0)
    with pytest.raises(ValueError, match="output must be"):
        fisher_diagonal(forward, image, output="pixels")  # type: ignore[arg-type]


def test_block_weights_measure_the_machine_along_the_codecs_error():
    pixel = np.zeros((32, 16, 3), np.float32)
    pixel[:16, :8] = 4.0  # the machine reads only the top-left quarter, strongly
    pixel[16:] = 1.0
    plain = block_weights(pixel, 16)
    assert plain.shape == (2, 1)
    assert plain[0, 0] == pytest.approx(4.0 / 2) and plain[1, 0] == pytest.approx(1.0)
    residual = np.zeros_like(pixel)
    residual[:16, 8:] = 2.0  # the codec's error in the top block falls where nothing is read
    residual[16:] = 1.0
    weighted = block_weights(pixel, 16, residual)
    assert weighted[0, 0] == 0.0  # no protection for error the machine cannot see
    assert weighted[1, 0] == pytest.approx(1.0)
    untouched = block_weights(pixel, 16, np.zeros_like(pixel))
    assert np.array_equal(untouched, plain)  # coded exactly: falls back to the plain mean


def test_rd_offsets_follow_the_derived_rule():
    weights = np.array([[1.0, 2.0, 4.0, 0.0]])
    # W = geometric mean of the read blocks = 2: d = 3 log2(2 / w)
    assert rd_offsets(weights, coarsest=14, finest=-37, strength=1).tolist() == [[3, 0, -3, 14]]
    assert rd_offsets(weights, coarsest=14, finest=-37, strength=2).tolist() == [[6, 0, -6, 14]]
    assert rd_offsets(weights, coarsest=2, finest=-1, strength=1).tolist() == [[2, 0, -1, 2]]
    assert rd_offsets(weights, coarsest=14, finest=0).tolist() == [[2, 0, 0, 14]]  # 0.5, 1-sided
    assert rd_offsets(np.zeros((2, 2)), coarsest=9, finest=-3).tolist() == [[9, 9], [9, 9]]
    # a partial edge block weighs less in W: the big block keeps offset 0
    pixels = np.array([[256.0, 4.0]])
    assert rd_offsets(np.array([[1.0, 8.0]]), coarsest=9, finest=-9, pixels=pixels,
                      strength=1)[0, 0] == 0
    with pytest.raises(ValueError, match=">= 0"):
        rd_offsets(np.array([[-1.0]]), coarsest=1, finest=-1)


def test_unread_blocks_are_blurred_and_read_ones_keep_every_pixel(photo):
    crop = photo[:64, :64]
    unread = np.zeros((4, 4), bool)
    unread[:, 0] = True  # the left column of blocks is never read
    filtered = blur_unread(crop, unread, 16)
    assert np.array_equal(filtered[:, 16:], crop[:, 16:])
    detail = np.abs(np.diff(filtered[:, :16].astype(float), axis=1)).mean()
    assert detail < 0.3 * np.abs(np.diff(crop[:, :16].astype(float), axis=1)).mean()
    assert blur_unread(crop, np.zeros((4, 4), bool), 16) is crop


def test_allocation_prefilter_blurs_in_proportion_to_the_offset(photo):
    crop = photo[:64, :64]
    offsets = np.zeros((4, 4), np.int64)
    offsets[:, :2] = 12  # a quarter of the detail kept on the left half
    filtered = allocation_prefilter(crop, offsets, 16).astype(float)
    def detail(image):
        return np.abs(np.diff(image, axis=1)).mean()
    assert detail(filtered[:, :16]) < 0.8 * detail(crop[:, :16].astype(float))
    assert np.array_equal(filtered[:, 48:], crop[:, 48:])  # beyond the one-block guard
    assert np.array_equal(allocation_prefilter(crop, np.zeros((4, 4), np.int64), 16), crop)


# -- the for=MACHINE recipe ------------------------------------------------------------------
CLASSIFY = "classify:efficientnet-lite0"


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """A 451x300 photo: fitted to 337x224, of which the classifier's centre crop reads 224."""
    from icm.image import sample_photo

    return sample_photo("chelsea")


@pytest.fixture(scope="module")
def classifier():
    from icm.machines import MACHINES, parse_machine

    spec = parse_machine(CLASSIFY)
    reason = MACHINES[spec.family].unavailable_reason(spec)
    if reason:
        pytest.skip(f"{CLASSIFY}: {reason}")


@pytest.mark.usefixtures("classifier")
def test_for_codes_what_the_classifier_never_reads_at_the_coarsest_qp(cat):
    from icm.codecs import get_codec
    from icm.image import resize
    from icm.importance.allocation import MachineAllocator

    allocator = MachineAllocator(CLASSIFY)
    fitted = resize(cat, 337, 224)  # the classifier's fit: the shorter side at 224
    plan = allocator.plan(fitted, get_codec("hevc-kvazaar"), "qp37", {})
    unread = plan.weights == 0
    # the centre crop spans columns 56..280: blocks wholly outside it are never read
    assert unread[:, 0].all() and unread[:, -1].all() and not unread[:, 5:15].any()
    assert np.all(plan.offsets[unread] == 51 - 37)
    read = plan.offsets[~unread]
    assert read.min() == 0 and read.max() > 0  # one-sided: the level is the finest
    assert plan.route == "delta-qp" and plan.record["weights"] == "fisher8"
    assert np.array_equal(plan.image[:, 64:272], fitted[:, 64:272])  # read pixels untouched
    assert not np.array_equal(plan.image[:, :16], fitted[:, :16])  # unread ones blurred


@pytest.mark.usefixtures("classifier")
def test_for_keeps_the_size_the_machine_reads_best_at_equal_bits(cat):
    from icm import container
    from icm.pipeline import decode_bytes, encode_image, parse_point

    encoded = encode_image(cat, parse_point("hevc-kvazaar+for=classify@qp45"))
    tried = encoded.prepared.allocation["scale_choice"]
    from icm.importance.allocation import SCALES

    assert [t["scale"] for t in tried] == list(SCALES)
    coded = [t for t in tried if not t.get("skipped")]
    assert all(t["bytes"] <= tried[0]["bytes"] for t in coded)  # rate-matched: never more
    assert all(t["ceiling"] <= tried[0]["fidelity"] for t in tried if t.get("skipped"))
    kept = max(coded, key=lambda t: (t["fidelity"], -t["scale"]))
    assert encoded.bitstream.level == kept["level"]
    assert len(encoded.bitstream.data) == kept["bytes"]  # the chosen encode, not a new one
    header, _ = container.unpack(encoded.data)
    assert header.recipe == "for=classify" and header.resample is not None
    assert decode_bytes(encoded.data).shape == cat.shape


@pytest.mark.usefixtures("classifier")
def test_for_routes_each_codec_to_what_it_can_do(cat):
    from icm.pipeline import encode_image, parse_point

    routes = {}
    for point in ("jpeg+for=classify@q50", "webp+for=classify@q50"):
        encoded = encode_image(cat, parse_point(point))
        routes[point.split("+")[0]] = encoded.prepared.allocation["route"]
    assert routes == {"jpeg": "delta-qp", "webp": "prefilter"}


def test_for_refuses_what_it_already_does():
    from icm.pipeline import Recipe, RecipeError

    with pytest.raises(RecipeError, match="drop fit=classify"):
        Recipe(("for=classify", "fit=classify"))
    with pytest.raises(RecipeError, match="needs =MACHINE"):
        Recipe(("for",))


@pytest.mark.usefixtures("classifier")
def test_fisher_provider_keeps_ratios_and_zeros(cat):
    from icm.image import resize
    from icm.importance import get_importance
    from icm.machines import get_machine

    assert get_machine("classify").default_importance() == f"fisher={CLASSIFY}"
    importance = get_importance("fisher").compute(resize(cat, 337, 224))
    values = importance.values
    assert values.max() == 1.0 and np.all(values[:, 0] == 0) and np.all(values[:, -1] == 0)
    assert 0 < np.median(values[:, 5:15]) < 1  # not stretched to [0, 1] by percentiles


def test_for_ocr_is_the_fit_where_offsets_measured_worse(photo):
    from icm.codecs import get_codec
    from icm.importance.allocation import MachineAllocator
    from icm.machines import MACHINES, parse_machine

    spec = parse_machine("ocr:rapidocr")
    reason = MACHINES[spec.family].unavailable_reason(spec)
    if reason:
        pytest.skip(f"ocr:rapidocr: {reason}")
    allocator = MachineAllocator("ocr:rapidocr")
    assert allocator.strength == 0.0 and allocator.scales == (1.0,)
    plan = allocator.plan(photo, get_codec("jpeg"), "q40", {})
    assert np.all(plan.offsets == 0) and np.array_equal(plan.image, photo)
    assert MachineAllocator("ocr:rapidocr", strength=1.0).strength == 1.0  # ~S still rules
