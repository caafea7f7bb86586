"""The ``text`` importance provider (RapidOCR's DBNet probability map) on rendered documents.

Text masks come from the rendering, not from the detector: ink is every pixel clearly darker
than the document's paper, so the checks do not grade the detector against itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("rapidocr_onnxruntime", reason="the text provider needs rapidocr_onnxruntime")

from icm.image.documents import RenderedDocument, render_documents
from icm.importance import ImportanceMap, get_importance
from icm.importance.maps import grid_shape
from icm.importance.providers.text import TextProvider, block_max

BLOCK = 16


@pytest.fixture(scope="module")
def provider() -> TextProvider:
    text = get_importance("text")
    assert isinstance(text, TextProvider)
    return text


@pytest.fixture(scope="module")
def documents() -> dict[str, RenderedDocument]:
    return {document.name: document for document in render_documents()}


def ink_mask(image: np.ndarray) -> np.ndarray:
    """Pixels at least 60 grey levels darker than the paper (the image's median colour)."""
    grey = image.astype(np.float64).mean(axis=2)
    return grey < np.median(grey) - 60


def block_classes(ink: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(blocks holding ink, blocks with no ink in themselves or any neighbouring block)."""
    rows, cols = grid_shape(*ink.shape, block)
    has_ink = block_max(ink.astype(np.float32), block) > 0
    assert has_ink.shape == (rows, cols)
    near_ink = ndimage.binary_dilation(has_ink, structure=np.ones((3, 3), bool))
    return has_ink, ~near_ink


@pytest.mark.parametrize(
    "name", ["doc-receipt-1", "doc-receipt-3", "doc-sign-1", "doc-sign-3", "doc-paragraph-1"]
)
def test_text_blocks_score_high_and_paper_low(
    provider: TextProvider, documents: dict[str, RenderedDocument], name: str
) -> None:
    image = documents[name].image
    importance = provider.compute(image, BLOCK)
    text, paper = block_classes(ink_mask(image), BLOCK)
    assert text.any() and paper.any()
    values = importance.values
    assert values[text].mean() > 0.85
    assert values[paper].mean() < 0.05
    assert values[text].mean() - values[paper].mean() > 0.8


def test_whole_glyphs_are_covered_not_just_the_core(
    provider: TextProvider, documents: dict[str, RenderedDocument]
) -> None:
    """DB's raw map covers a band through the line's middle; the unclipped boxes take in
    ascenders and capitals' tops, so (almost) every ink pixel lies in a high block."""
    for name in ("doc-receipt-2", "doc-sign-2", "doc-paragraph-2"):
        image = documents[name].image
        dense = np.kron(provider.compute(image, 8).values, np.ones((8, 8)))
        ink = ink_mask(image)
        assert (dense[: ink.shape[0], : ink.shape[1]][ink] > 0.5).mean() > 0.98, name


def test_odd_size_shape_and_block(provider: TextProvider, documents: dict[str, RenderedDocument]):
    crop = np.ascontiguousarray(documents["doc-receipt-2"].image[:211, :301])
    importance = provider.compute(crop, BLOCK)
    assert isinstance(importance, ImportanceMap)
    assert (importance.width, importance.height) == (301, 211)
    assert importance.shape == (14, 19)
    assert importance.to_pixels().shape == (211, 301)
    assert provider.compute(crop, 7).shape == (31, 43)
    assert importance.values.min() >= 0.0 and importance.values.max() <= 1.0


def test_deterministic_across_calls_and_instances(
    provider: TextProvider, documents: dict[str, RenderedDocument]
) -> None:
    image = documents["doc-paragraph-1"].image
    first = provider.compute(image)
    again = provider.compute(image)
    fresh = TextProvider().compute(image)
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.values, fresh.values)
    assert first.describe() == fresh.describe()


def test_blank_page_has_no_highs(provider: TextProvider) -> None:
    importance = provider.compute(np.full((240, 320, 3), 255, np.uint8))
    assert importance.shape == (15, 20)
    assert importance.values.max() < 0.1


def test_sparse_text_is_not_washed_out_by_normalisation(
    provider: TextProvider, documents: dict[str, RenderedDocument]
) -> None:
    """A small sign on a big blank page: text in under 2 % of the blocks (where a 98th
    percentile falls on paper) still scores ~1 and the paper ~0."""
    sign = documents["doc-sign-1"].image
    page = np.full((800, 800, 3), sign[0, 0], np.uint8)
    page[360 : 360 + sign.shape[0], 240 : 240 + sign.shape[1]] = sign
    values = provider.compute(page, BLOCK).values
    text, paper = block_classes(ink_mask(page), BLOCK)
    assert (values > 0.1).mean() < 0.02
    assert values[text].mean() > 0.85
    assert values[paper].max() < 0.1


def test_tiny_image_is_padded_not_rejected(provider: TextProvider) -> None:
    importance = provider.compute(np.full((9, 20, 3), 250, np.uint8), BLOCK)
    assert importance.shape == (1, 2)


def test_fingerprint_names_library_and_model(provider: TextProvider) -> None:
    fingerprint = provider.fingerprint()
    assert "rapidocr_onnxruntime 1.4" in fingerprint
    assert "ch_PP-OCRv4_det_infer.onnx sha256:" in fingerprint
    assert TextProvider.unavailable_reason(None) is None
