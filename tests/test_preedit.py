"""The learned pre-editor: identity untrained, a proxy that tracks the real codecs, training
that lowers the held-out loss and resumes exactly, files that stay standard bitstreams, and
one-line errors for bad models and codecs it has no proxy for."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tests.test_cli import assert_one_line_error, icm

from icm.codecs import get_codec
from icm.errors import IcmError
from icm.image import sample_photo
from icm.pipeline import encode_image, parse_point
from icm.pipeline import parse_points as expand_points

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")

from icm.preedit.api import edit_image  # noqa: E402
from icm.preedit.config import PreeditTrainConfig, condition, family_of, step_tables  # noqa: E402
from icm.preedit.files import EditorInfo, PreeditModelError, load_model, save_model  # noqa: E402
from icm.preedit.network import Architecture, EditorNet  # noqa: E402
from icm.preedit.proxy import CodecProxy  # noqa: E402
from icm.preedit.train import train_editor  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
TINY = {"width": 8, "blocks": 1, "crop": 64, "batch": 2, "checkpoint_every": 2,
        "crops_per_photo": 2}


def photo_folder(root: Path, names: tuple[str, ...]) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(sample_photo(name)).save(root / f"{name}.png")
    return str(root)


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory) -> tuple[str, str]:
    """Training photos and other, held-out photos (bundled ones, written as folders)."""
    root = tmp_path_factory.mktemp("photos")
    return (photo_folder(root / "train", ("astronaut", "coffee", "rocket")),
            photo_folder(root / "val", ("chelsea", "motorcycle")))


def tiny_config(out: Path, images: str, steps: int, **changes) -> PreeditTrainConfig:
    return PreeditTrainConfig(images=(images,), out=out, steps=steps, **{**TINY, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, photo_sets) -> tuple[Path, object]:
    """A tiny editor trained for 40 steps, with its loss on held-out photos before/after."""
    train, val = photo_sets
    result = train_editor(tiny_config(tmp_path_factory.mktemp("editor"), train, 40,
                                      val_every=20, lr=3e-4),
                          val=(val,))
    return result.out, result


class Killed(Exception):
    pass


def test_an_untrained_editor_is_the_identity(tmp_path, odd_photo):
    net = EditorNet(Architecture(8, 1))
    x = torch.rand(2, 3, 32, 48)
    conditions = torch.tensor([condition("jpeg", 30)] * 2)
    assert torch.equal(net(x, conditions, torch.rand(2, 1, 2, 3)), x)
    path = save_model(tmp_path, net, EditorInfo(net.arch, "classify:efficientnet-lite0", {}))
    edited = edit_image(odd_photo, get_codec("jpeg"), "q30", str(path))
    assert np.array_equal(edited, odd_photo)  # odd sizes padded and cropped back exactly


def test_conditions_follow_the_quantiser_step():
    assert family_of("jpeg") == "jpeg"
    assert family_of("hevc-kvazaar") == family_of("vvc") == "transform"
    with pytest.raises(IcmError, match="not avif"):
        family_of("avif")
    jpeg = [condition("jpeg", q)[0] for q in (90, 50, 10)]
    video = [condition("transform", qp)[0] for qp in (22, 32, 42)]
    assert jpeg == sorted(jpeg) and video == sorted(video)  # coarser level, larger step
    assert step_tables("transform", 28)[0, 0, 0] == pytest.approx(16.0)  # 2^((28-4)/6)


def test_proxy_rate_tracks_the_real_codecs_rate():
    """Rank correlation of proxy and real bits over photos x levels (the benchmark gives
    Kodak's; here three bundled photos, which must agree as well)."""
    from scipy.stats import spearmanr

    photos = [np.ascontiguousarray(sample_photo(name)[:128, :192])
              for name in ("astronaut", "coffee", "chelsea")]
    proxy = CodecProxy()
    for name, levels in (("jpeg", (10, 30, 60, 85)), ("hevc-kvazaar", (42, 37, 32, 27))):
        codec, family = get_codec(name), family_of(name)
        proxy_bits, real_bits = [], []
        for level in levels:
            tables = torch.from_numpy(step_tables(family, level))[None]
            for pixels in photos:
                x = torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float()[None] / 255
                proxy_bits.append(float(proxy(x, tables)[1]))
                real_bits.append(len(codec.encode(pixels, f"{codec.knob.prefix}{level}").data))
        assert spearmanr(proxy_bits, real_bits)[0] > 0.9, name


def test_proxy_decodes_like_the_real_jpeg(photo):
    """The proxy's picture is close to libjpeg's at the same quality (same tables, same
    colour transform and subsampling; libjpeg's integer DCT and upsampling differ a little)."""
    x = torch.from_numpy(photo.transpose(2, 0, 1).copy()).float()[None] / 255
    decoded, _ = CodecProxy()(x, torch.from_numpy(step_tables("jpeg", 50))[None])
    proxy = (decoded[0].permute(1, 2, 0).numpy() * 255).round()
    codec = get_codec("jpeg")
    real = codec.decode(codec.encode(photo, "q50")).astype(np.float64)
    assert np.abs(proxy - real).mean() < 3.0


def test_training_lowers_the_held_out_loss(trained):
    _, result = trained
    assert result.val_after["loss"] < result.val_before["loss"]
    assert result.val_before["pixel"] == 0.0  # untrained: the identity
    assert [point["step"] for point in result.curve] == [20, 40]  # the learning curve
    assert result.curve[-1] == {"step": 40, **result.val_after}


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, photo_sets):
    train, _ = photo_sets
    whole = train_editor(tiny_config(tmp_path / "a", train, 5))
    config = tiny_config(tmp_path / "b", train, 5)

    def kill_after_checkpoint(text, done, total):
        if text.startswith("loss") and done == 3:  # a training step, not a map
            raise Killed

    with pytest.raises(Killed):
        train_editor(config, progress=kill_after_checkpoint)
    assert (config.out / "preedit.ckpt").is_file()
    resumed = train_editor(config)
    assert resumed.resumed_from == 2 and not (config.out / "preedit.ckpt").exists()
    assert resumed.losses == whole.losses[2:]
    (net_a, _), (net_b, _) = load_model(whole.out), load_model(resumed.out)
    first, second = net_a.state_dict(), net_b.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_preedited_files_open_in_stock_decoders(trained, photo, tmp_path):
    model, _ = trained
    plain = encode_image(photo, parse_point("jpeg+fit=classify@q30"), as_container=False)
    point = parse_point(f"jpeg+fit=classify+preedit={model}@q30")
    edited = encode_image(photo, point, as_container=False)
    assert edited.prepared.preedit["mean_abs_change"] > 0
    assert plain.data != edited.data
    stock = np.asarray(Image.open(io.BytesIO(edited.data)).convert("RGB"))
    assert stock.shape[2] == 3
    hevc = encode_image(photo, parse_point(f"hevc-kvazaar+preedit={model}@qp37"),
                        as_container=False)
    path = tmp_path / "edited.265"
    path.write_bytes(hevc.data)
    with av.open(str(path), format="hevc") as stream:  # FFmpeg's own demuxer and decoder
        frame = next(stream.decode(video=0))
    assert (frame.height, frame.width) == photo.shape[:2]


def test_preedit_with_for_records_the_original_size(trained, photo):
    model, _ = trained
    big = np.asarray(Image.fromarray(photo).resize((576, 384), Image.Resampling.LANCZOS))
    encoded = encode_image(big, parse_point(f"jpeg+for=classify+preedit={model}@q30"))
    assert encoded.prepared.resample is not None
    assert encoded.prepared.preedit is not None and encoded.prepared.allocation is not None
    from icm.pipeline import decode_bytes

    assert decode_bytes(encoded.data).shape == big.shape


def test_codecs_without_a_proxy_fail_before_any_work(trained):
    model, _ = trained
    with pytest.raises(IcmError, match="not avif"):
        expand_points([f"avif+preedit={model}@q30"])
    with pytest.raises(IcmError, match="not a ~strength"):
        expand_points([f"jpeg+preedit={model}~2@q30"])


def test_bad_model_files_are_one_line_errors(monkeypatch, capsys, png, tmp_path, trained):
    model, _ = trained
    missing = tmp_path / "preedit-00000000.safetensors"
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c",
                       f"jpeg+preedit={missing}@q30", "-o", tmp_path / "a.icm")
    assert_one_line_error(code, err, str(missing))
    altered = tmp_path / model.name
    data = bytearray(model.read_bytes())
    data[-5] ^= 0x40  # one flipped bit in the last tensor
    altered.write_bytes(bytes(data))
    with pytest.raises(PreeditModelError, match="does not match the hash"):
        load_model(altered)
    foreign = tmp_path / "restore.safetensors"
    from icm.training.weights import save_tensors

    save_tensors(foreign, {"w": torch.zeros(2)}, {"format": "icm-restore/1"})
    code, _, err = icm(monkeypatch, capsys, "encode", png, "-c",
                       f"jpeg+preedit={foreign}@q30", "-o", tmp_path / "b.icm")
    assert_one_line_error(code, err, "restore.safetensors", "icm-restore/1")


def test_preedit_commands(monkeypatch, capsys, tmp_path, trained, photo_sets):
    model, _ = trained
    code, out, _ = icm(monkeypatch, capsys, "preedit", "info", model)
    assert code == 0 and '"machine": "classify:efficientnet-lite0"' in out
    code, out, _ = icm(monkeypatch, capsys, "preedit", "train", "--out", tmp_path, "--images",
                       photo_sets[0], "--steps", "1", "--crop", "64", "--batch", "1", "--json")
    assert code == 0 and '"steps": 1' in out
    code, _, err = icm(monkeypatch, capsys, "preedit", "train", "--out", tmp_path,
                       "--families", "webp")
    assert_one_line_error(code, err, "families")
