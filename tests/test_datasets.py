"""Datasets: deterministic rendered documents, the embedded samples, folders and list files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import icm.degrade  # noqa: F401  (lets datasets degrade their images)
from icm.errors import IcmError
from icm.image import (
    SAMPLE_PHOTOS,
    Dataset,
    DatasetImage,
    Truth,
    content_hash,
    open_dataset,
    render_documents,
)

HASH_ALL = (
    "from icm.image import content_hash, render_documents; "
    "print(' '.join(content_hash(d.image) for d in render_documents()))"
)


@pytest.fixture(scope="module")
def documents():
    return render_documents()


def write_png(path, value: int = 128, size: tuple[int, int] = (12, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


# -- rendered documents -----------------------------------------------------------------------


def test_documents_render_identically_in_process_and_in_a_fresh_interpreter(documents):
    hashes = [content_hash(d.image) for d in documents]
    assert hashes == [content_hash(d.image) for d in render_documents()]
    fresh = subprocess.run(
        [sys.executable, "-c", HASH_ALL], capture_output=True, text=True, check=True, timeout=60
    )
    assert fresh.stdout.split() == hashes


def test_documents_have_exact_ascii_truth_and_modest_size(documents):
    assert len(documents) >= 6
    assert len({d.name for d in documents}) == len(documents)
    for d in documents:
        assert d.image.dtype == np.uint8 and d.image.ndim == 3 and d.image.shape[2] == 3
        height, width = d.image.shape[:2]
        assert 64 <= width <= 800 and 64 <= height <= 600, d.name
        assert d.text and d.text.isascii() and d.text == d.text.strip()
        lines = d.text.split("\n")
        assert all(line and line == line.strip() and "  " not in line for line in lines)
        assert 11 <= d.font_size <= 48


def test_documents_cover_three_layouts_and_a_range_of_sizes(documents):
    assert {d.layout for d in documents} == {"receipt", "sign", "paragraph"}
    sizes = {d.font_size for d in documents}
    assert len(sizes) >= 3 and min(sizes) <= 16 and max(sizes) >= 40
    receipts = [d for d in documents if d.layout == "receipt"]
    assert all(d.image.shape[1] == 360 for d in receipts)
    signs = [d for d in documents if d.layout == "sign"]
    assert all(1 <= len(d.text.split()) <= 3 for d in signs)


def test_receipt_totals_add_up(documents):
    for d in (d for d in documents if d.layout == "receipt"):
        lines = d.text.split("\n")
        total_at = next(i for i, line in enumerate(lines) if line.startswith("TOTAL "))
        prices = [line.rsplit(" ", 1)[1] for line in lines[:total_at]]
        items = [round(float(p) * 100) for p in prices if p.replace(".", "").isdigit() and "." in p]
        assert sum(items) == round(float(lines[total_at].split()[1]) * 100), d.name


def test_documents_are_dark_ink_on_light_paper_with_a_margin(documents):
    for d in documents:
        grey = d.image.astype(np.float32).mean(axis=2)
        assert np.median(grey) > 180, d.name  # mostly paper
        assert grey.min() < 100, d.name  # real ink
        border = np.concatenate([grey[:8].ravel(), grey[-8:].ravel(), grey[:, :8].ravel()])
        assert border.min() == border.max(), d.name  # margins are blank paper


# -- the embedded samples ---------------------------------------------------------------------


def test_samples_lists_photos_then_documents_with_unique_ids(documents):
    dataset = open_dataset("samples")
    assert dataset.name == "samples" and dataset.skipped == []
    assert len(set(dataset.ids)) == len(dataset) == len(SAMPLE_PHOTOS) + len(documents)
    photos = [i for i in dataset if i.kind == "photo"]
    docs = [i for i in dataset if i.kind == "document"]
    assert [i.id for i in photos] == [f"samples/{name}" for name in SAMPLE_PHOTOS]
    assert [i.id for i in docs] == [f"samples/{d.name}" for d in documents]
    assert all(i.truth is None for i in photos)
    for image, document in zip(docs, documents, strict=True):
        assert image.source == f"samples:{document.name}"
        assert image.truth is not None and image.truth.text == document.text
        assert image.truth.extra["font_size"] == document.font_size


def test_every_sample_loads_as_rgb_uint8_and_documents_match_the_render(documents):
    rendered = {f"samples/{d.name}": d.image for d in documents}
    for image in open_dataset("samples"):
        pixels = image.load()
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        if image.id in rendered:
            assert np.array_equal(pixels, rendered[image.id])
            pixels[0, 0] = 0  # a caller's copy: the process-wide cache must not change
            assert np.array_equal(image.load(), rendered[image.id])


def test_sample_load_honours_the_pixel_limit():
    from icm.errors import BadImageError

    image = open_dataset("samples").images[0]
    with pytest.raises(BadImageError, match="pixel limit"):
        image.load(max_pixels=1000)


def test_dataset_images_pickle_for_workers():
    import pickle

    for image in open_dataset("samples").limit(6):
        assert pickle.loads(pickle.dumps(image)) == image


def test_limit_subset_and_kind_filters():
    dataset = open_dataset("samples")
    assert dataset.limit(2).ids == ["samples/astronaut", "samples/chelsea"]
    assert len(dataset) > 2  # limit made a new dataset
    picked = dataset.subset(["samples/doc-sign-1", "samples/coffee"])
    assert picked.ids == ["samples/coffee", "samples/doc-sign-1"]  # dataset order
    assert {i.kind for i in dataset.of_kind("document")} == {"document"}
    with pytest.raises(IcmError, match="no image samples/nope"):
        dataset.subset(["samples/nope"])
    with pytest.raises(IcmError, match="at least 1"):
        dataset.limit(0)


# -- views ------------------------------------------------------------------------------------


def test_views_crop_each_photo_on_a_grid_and_keep_documents_whole():
    from icm.image.datasets import VIEW_SIDE, Window

    dataset = open_dataset("samples")
    viewed = dataset.views(6)
    photos = [i for i in viewed if i.kind == "photo"]
    assert len(photos) == 6 * len(SAMPLE_PHOTOS)
    assert [i for i in viewed if i.kind == "document"] == list(dataset.of_kind("document"))
    astronaut = [i for i in photos if i.id.startswith("samples/astronaut#")]
    whole = open_dataset("samples").images[0].load()
    for image in astronaut:
        window = Window.parse(image.id.rpartition("#")[2])
        assert image.view == window and window.width == window.height == VIEW_SIDE
        pixels = image.load()
        assert np.array_equal(pixels, whole[window.top:window.top + VIEW_SIDE,
                                            window.left:window.left + VIEW_SIDE])
    corners = {(i.view.left, i.view.top) for i in astronaut}
    assert (0, 0) in corners and (512 - VIEW_SIDE, 512 - VIEW_SIDE) in corners  # edge to edge
    assert len({content_hash(i.load()) for i in photos}) == len(photos)
    assert dataset.views(1) is dataset
    with pytest.raises(IcmError, match="at least 1"):
        dataset.views(0)


def test_view_windows_fit_small_images_and_never_repeat():
    from icm.image.datasets import view_windows

    windows = view_windows(451, 300, 6, 224)
    assert len(windows) == 6 and len(set(windows)) == 6
    assert all(w.left + w.width <= 451 and w.top + w.height <= 300 for w in windows)
    narrow = view_windows(100, 400, 6, 224)  # smaller than a view: shrink, one column
    assert {(w.width, w.left) for w in narrow} == {(100, 0)}
    assert len(view_windows(224, 224, 6, 224)) == 1  # no room for two distinct windows


def test_an_image_rebuilds_from_its_id_and_groups_by_source_photo():
    from icm.image.datasets import image_from_id, source_group, split_view_id

    image = open_dataset("samples").views(6).degraded(["noise@0.5"]).images[3]
    assert image.id.startswith("samples/astronaut#") and image.id.endswith("~noise@0.5")
    rebuilt = image_from_id(image.id, image.kind, image.source)
    assert rebuilt == image and np.array_equal(rebuilt.load(), image.load())
    assert source_group(image.id) == "samples/astronaut"
    assert source_group("kodim01.png~haze@0.3") == "kodim01.png"
    assert source_group("photos/a#b.png") == "photos/a#b.png"  # a '#' in a file name
    assert split_view_id("x.png#12x12+1+2")[1] is not None
    assert split_view_id("x.png#12x12+1")[1] is None


def test_a_view_that_does_not_fit_its_file_is_a_bad_image():
    from icm.errors import BadImageError
    from icm.image.datasets import Window, viewed_image

    image = viewed_image(open_dataset("samples").images[1], Window(400, 0, 224, 224))
    with pytest.raises(BadImageError, match="does not fit"):
        image.load()


# -- folders ----------------------------------------------------------------------------------


def test_folder_recurses_sorts_and_ignores_non_images(tmp_path):
    for name in ("b.png", "a.PNG", "sub/c.png", "sub/deeper/d.png", "z/e.png"):
        write_png(tmp_path / name)
    (tmp_path / "notes.md").write_text("not an image")
    (tmp_path / "data.csv").write_text("1,2")
    write_png(tmp_path / ".hidden" / "x.png")
    write_png(tmp_path / "._b.png")
    dataset = open_dataset(tmp_path)
    assert dataset.ids == ["a.PNG", "b.png", "sub/c.png", "sub/deeper/d.png", "z/e.png"]
    assert dataset.name == tmp_path.name and dataset.skipped == []
    assert all(i.kind == "photo" and i.truth is None for i in dataset)
    assert dataset.images[2].source == str(tmp_path / "sub" / "c.png")
    assert dataset.images[2].load().shape == (8, 12, 3)


def test_folder_sidecars_become_truth_and_kind(tmp_path):
    write_png(tmp_path / "scan.png")
    (tmp_path / "scan.txt").write_text("HELLO\r\nWORLD\n", newline="")
    write_png(tmp_path / "cat.jpg")
    sidecar = {"captions": ["a cat on a rug"], "labels": ["tabby"], "source": "flickr"}
    (tmp_path / "cat.json").write_text(json.dumps(sidecar))
    write_png(tmp_path / "page.png")
    (tmp_path / "page.json").write_text(json.dumps({"text": "Page one", "kind": "document"}))
    write_png(tmp_path / "label.png")
    (tmp_path / "label.json").write_text(json.dumps({"text": "SALE", "kind": "photo"}))
    images = {i.id: i for i in open_dataset(tmp_path)}
    assert set(images) == {"scan.png", "cat.jpg", "page.png", "label.png"}
    assert images["scan.png"].kind == "document"
    assert images["scan.png"].truth == Truth(text="HELLO\nWORLD")
    assert images["cat.jpg"].kind == "photo"
    assert images["cat.jpg"].truth == Truth(captions=("a cat on a rug",), labels=("tabby",))
    assert images["cat.jpg"].truth.extra == {"source": "flickr"}
    assert images["page.png"].kind == "document" and images["page.png"].truth.text == "Page one"
    assert images["label.png"].kind == "photo" and images["label.png"].truth.text == "SALE"


@pytest.mark.parametrize(
    "sidecar, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"captions": "one string"}', '"captions" must be a list of strings'),
        ('{"kind": "video"}', '"kind" must be one of photo, document'),
        ('{"text": "B"}', "give different text"),
    ],
)
def test_a_bad_sidecar_skips_its_image_with_a_note(tmp_path, sidecar, problem):
    write_png(tmp_path / "good.png")
    write_png(tmp_path / "bad.png")
    (tmp_path / "bad.txt").write_text("A")
    (tmp_path / "bad.json").write_text(sidecar)
    dataset = open_dataset(tmp_path)
    assert dataset.ids == ["good.png"]
    assert len(dataset.skipped) == 1 and "\n" not in dataset.skipped[0]
    assert problem in dataset.skipped[0] and "bad.png" in dataset.skipped[0]


def test_corrupt_images_are_listed_and_fail_only_at_load(tmp_path):
    from icm.errors import BadImageError

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = open_dataset(tmp_path)
    assert dataset.ids == ["broken.png"]
    with pytest.raises(BadImageError, match=r"broken\.png"):
        dataset.images[0].load()


# -- list files and single images -------------------------------------------------------------


def test_list_file_paths_are_relative_to_the_list_with_comments_and_missing_entries(tmp_path):
    write_png(tmp_path / "imgs" / "one.png")
    write_png(tmp_path / "imgs" / "two.png")
    (tmp_path / "imgs" / "two.txt").write_text("TWO")
    write_png(tmp_path / "elsewhere" / "abs.png")
    listing = tmp_path / "lists" / "bench.lst"
    listing.parent.mkdir()
    listing.write_text(
        "# the quick set\n\n"
        "../imgs/two.png\n"
        "   ../imgs/one.png  \n"
        "../imgs/gone.png\n"
        "../imgs/./two.png\n"
        "../imgs\n"
        f"{tmp_path / 'elsewhere' / 'abs.png'}\n"
    )
    dataset = open_dataset(listing)
    assert dataset.name == "bench"
    absolute = str(tmp_path / "elsewhere" / "abs.png")
    assert dataset.ids == ["../imgs/two.png", "../imgs/one.png", absolute]
    assert dataset.images[0].kind == "document" and dataset.images[0].truth.text == "TWO"
    assert all(i.load().shape == (8, 12, 3) for i in dataset)
    assert len(dataset.skipped) == 3
    gone, twice, folder = dataset.skipped
    assert "gone.png" in gone and "not found" in gone and "line 5 of bench.lst" in gone
    assert "listed twice" in twice
    assert "is a folder" in folder


def test_a_single_image_file_is_a_one_image_dataset(tmp_path):
    write_png(tmp_path / "only.png")
    (tmp_path / "only.txt").write_text("ONLY")
    dataset = open_dataset(tmp_path / "only.png")
    assert dataset.ids == ["only.png"] and dataset.images[0].kind == "document"


# -- errors -----------------------------------------------------------------------------------


def one_line_error(spec, match: str) -> IcmError:
    with pytest.raises(IcmError, match=match) as caught:
        open_dataset(spec)
    assert "\n" not in str(caught.value)
    assert caught.value.path == str(spec)
    return caught.value


def test_a_missing_path_is_an_error(tmp_path):
    one_line_error(tmp_path / "nowhere", "no such folder or file")


def test_a_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    one_line_error(tmp_path, "no image files in this folder")


def test_an_empty_list_file_is_an_error(tmp_path):
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing yet\n\n   \n")
    one_line_error(listing, "empty list file")


def test_a_list_of_only_missing_files_is_an_error(tmp_path):
    listing = tmp_path / "gone.txt"
    listing.write_text("a.png\nb.png\n")
    one_line_error(listing, "no usable image")


def test_a_file_that_is_not_a_dataset_is_an_error(tmp_path):
    other = tmp_path / "table.csv"
    other.write_text("1,2")
    one_line_error(other, "not a dataset")


def test_dataset_is_a_plain_container():
    image = DatasetImage("x", "photo", "samples:astronaut")
    dataset = Dataset("d", [image])
    assert list(dataset) == [image] and len(dataset) == 1 and dataset.skipped == []
