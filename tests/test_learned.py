"""icm.learned: training lowers the loss and resumes exactly, real bitstreams decode the same in
every process, the quality map moves bits where it says, model files reload bit-identically and
fail in one line, CompressAI's architectures code through local checkpoints, and ``icm
learned`` works from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("constriction")

from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.codecs import get_codec  # noqa: E402
from icm.errors import CodecUnavailableError, CorruptContainerError  # noqa: E402
from icm.learned import codec as lic  # noqa: E402
from icm.learned.files import LearnedModelError, load_model, save_model  # noqa: E402
from icm.learned.network import HYPER_STRIDE, LATENT_STRIDE, Architecture, LicNet  # noqa: E402
from icm.learned.train import (  # noqa: E402
    LearnedTrainConfig,
    LearnedTrainError,
    MachineFeatures,
    load_images,
    machine_view,
    sample_batch,
    train,
    training_loss,
)
from icm.metrics import psnr  # noqa: E402

TINY = Architecture(channels=16, latent=12, hyper=16)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_config(tmp_path, **changes) -> LearnedTrainConfig:
    settings = dict(images=("samples",), out=tmp_path / "run", crop=64, batch=2, steps=4,
                    checkpoint_every=2, limit=2, channels=16, latent=12, alpha=0.0)
    settings.update(changes)
    return LearnedTrainConfig(**settings)


class Killed(Exception):
    pass


def test_codec_constants_match_the_network():
    assert (lic.LATENT_STRIDE, lic.HYPER_STRIDE) == (LATENT_STRIDE, HYPER_STRIDE)
    assert Architecture().levels == lic.LEVELS


def test_training_steps_lower_the_loss(tmp_path):
    """Rate + lambda x (MSE + alpha x Lite0 feature distortion) falls on a fixed batch."""
    config = tiny_config(tmp_path, alpha=30.0)
    images = load_images(config.images, config.crop, config.limit)
    torch.manual_seed(0)
    net = LicNet(TINY)
    features = MachineFeatures(config.machine)
    x, qmap = sample_batch(images, config, TINY.levels, step=0)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)

    def loss_now():
        torch.manual_seed(5)  # the same noise every time
        return training_loss(net, x, qmap, config.alpha, features)

    before, parts = loss_now()
    assert parts["machine"] > 0 and parts["bpp"] > 0
    for _ in range(8):
        loss, _ = loss_now()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert float(loss_now()[0].detach()) < 0.9 * float(before.detach())


class FixedOutput(torch.nn.Module):
    """A stand-in network: a fixed reconstruction at zero bits, so only distortion counts."""

    def __init__(self, x_hat: torch.Tensor) -> None:
        super().__init__()
        self.arch, self.x_hat = TINY, x_hat

    def forward(self, x, qmap):
        zero = torch.zeros(x.shape[0])
        return {"x_hat": self.x_hat, "y_bits": zero, "z_bits": zero}


def test_machine_view_ignores_detail_the_machine_cannot_see():
    """At view scale 1/4, a one-pixel checkerboard error all but vanishes from the loss, while
    a smooth error costs what it costs at full resolution."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) * 0.5 + 0.25
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((rows + cols) % 2 * 2 - 1).float() * 0.1
    qmap = torch.full((1, 1, 4, 4), 3.0)
    features = MachineFeatures("classify:efficientnet-lite0")

    def loss(error: torch.Tensor, scale: float) -> tuple[float, dict]:
        value, parts = training_loss(FixedOutput(x + error), x, qmap, 30.0, features, scale)
        return float(value), parts

    sharp_full, parts = loss(checker, 1.0)
    sharp_seen, seen_parts = loss(checker, 0.25)
    assert sharp_seen < 0.01 * sharp_full
    assert seen_parts["psnr"] == pytest.approx(parts["psnr"])  # reported at full resolution
    smooth_full, _ = loss(torch.full_like(x, 0.1), 1.0)
    smooth_seen, _ = loss(torch.full_like(x, 0.1), 0.25)
    assert smooth_seen == pytest.approx(smooth_full, rel=0.35)
    assert machine_view(x, 0.25).shape[-2:] == (16, 16)
    assert machine_view(x, 1.0) is x


def test_feature_taps_reach_lite0s_head(monkeypatch, capsys, tmp_path):
    """Tap 16 is the head's 1280 pooled features, the rest block outputs; a tap outside
    Lite0 or a malformed --taps is a one-line error."""
    from icm.errors import IcmError
    from icm.machines.features import LITE0_HEAD

    features = MachineFeatures("classify:efficientnet-lite0", (LITE0_HEAD, 2))
    shallow, head = features(torch.rand(1, 3, 64, 64))
    assert shallow.shape[1] == 24 and head.shape[1] == 1280
    with pytest.raises(IcmError, match="feature taps"):
        MachineFeatures("classify:efficientnet-lite0", (2, 17))
    code, _, err = icm(monkeypatch, capsys, "learned", "train", "--out", tmp_path / "x",
                       "--taps", "2,head")
    assert_one_line_error(code, err, "--taps")


def test_fine_tuning_starts_from_the_model_file(tmp_path):
    """--init loads a model's weights (at lr 0 they come out unchanged) and names it in the
    training record; a damaged file or a view too small to see are one-line errors."""
    base = train(tiny_config(tmp_path / "base", steps=2)).out
    tuned = train(tiny_config(tmp_path / "tuned", steps=1, lr=0.0, init=str(base),
                              channels=64, latent=192, view_scale=0.5, alpha=30.0)).out
    first, info = load_model(base)[0].state_dict(), load_model(tuned)[1]
    second = load_model(tuned)[0].state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert info.arch == load_model(base)[1].arch  # the file's sizes, not the config's
    assert info.trained["init"] == base.name and info.trained["view_scale"] == 0.5
    assert info.trained["init_trained"] == load_model(base)[1].trained  # the whole budget
    base.write_bytes(base.read_bytes()[:-10])
    with pytest.raises(LearnedModelError, match=base.name):
        train(tiny_config(tmp_path / "again", init=str(base)))
    for bad, match in (({"view_scale": 0.0}, "view scale"), ({"view_scale": 0.25}, "crop")):
        with pytest.raises(LearnedTrainError, match=match) as caught:
            train(tiny_config(tmp_path / "bad", **bad))
        assert "\n" not in str(caught.value)


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    whole = train(tiny_config(tmp_path / "a"))

    def kill(_text, done, _total):
        if done == 3:
            raise Killed

    config = tiny_config(tmp_path / "b")
    with pytest.raises(Killed):
        train(config, kill)
    resumed = train(config)
    assert resumed.resumed_from == 2
    first, second = load_model(whole.out)[0].state_dict(), load_model(resumed.out)[0].state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert whole.out.name.startswith("icm-lic-") and whole.out.suffix == ".safetensors"


def test_stale_or_torn_checkpoint_is_a_one_line_error(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    train(config)
    with pytest.raises(LearnedTrainError, match="other settings") as info:
        train(tiny_config(tmp_path, steps=2, lr=1e-4))
    assert "\n" not in str(info.value)
    (config.out / "train.ckpt").write_bytes(b"torn")
    with pytest.raises(LearnedTrainError, match="does not load"):
        train(config)


def test_model_files_reload_bit_identically(tmp_path, photo):
    torch.manual_seed(2)
    net = LicNet(TINY).eval()
    path = save_model(tmp_path, net, {"steps": 0})
    loaded, info = load_model(path)
    assert info.arch == TINY and info.trained == {"steps": 0}
    again = save_model(tmp_path / "again", loaded, {"steps": 0})
    assert again.name == path.name  # the name is a digest of the content
    reloaded = load_model(again)[0].state_dict()
    assert all(torch.equal(value, reloaded[key]) for key, value in loaded.state_dict().items())
    codec = lic.IcmLicCodec()
    first = codec.encode(photo, "q4", weights=str(path))
    second = codec.encode(photo, "q4", weights=str(again))
    assert first.data == second.data
    assert np.array_equal(codec.decode(first), codec.decode(second))


def test_corrupted_model_file_is_a_clear_error(monkeypatch, capsys, tmp_path):
    path = save_model(tmp_path, LicNet(TINY), {})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LearnedModelError, match="does not match the hash") as info:
        load_model(path)
    assert path.name in str(info.value) and "\n" not in str(info.value)
    torn = tmp_path / "mine.safetensors"
    torn.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(LearnedModelError, match="not a safetensors"):
        load_model(torn)
    code, _, err = icm(monkeypatch, capsys, "learned", "info", path)
    assert_one_line_error(code, err, path.name, "hash")


def test_round_trip_is_exact_across_processes_and_thread_counts(photo, tmp_path):
    """A fresh process with four torch threads encodes the same bytes and decodes the same
    pixels as this one (the codec runs its networks on one thread)."""
    codec = get_codec("icm-lic")
    bitstream = codec.encode(photo, "q5")
    decoded = codec.decode(bitstream)
    assert psnr(photo, decoded) > 26
    np.save(tmp_path / "photo.npy", photo)
    script = (
        "import sys, hashlib, numpy as np, torch; torch.set_num_threads(4)\n"
        "from icm.codecs import get_codec\n"
        "codec = get_codec('icm-lic'); photo = np.load(sys.argv[1])\n"
        "b = codec.encode(photo, 'q5')\n"
        "print(hashlib.sha256(b.data).hexdigest(), hashlib.sha256(codec.decode(b)).hexdigest())\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "photo.npy")],
                            capture_output=True, text=True, check=True)
    import hashlib

    data_hash, pixels_hash = result.stdout.split()
    assert data_hash == hashlib.sha256(bitstream.data).hexdigest()
    assert pixels_hash == hashlib.sha256(decoded).hexdigest()


def test_quality_map_moves_bits_where_it_says(photo):
    """Left half important (delta -6 QP = 2 levels finer), right half not (+6): the left half
    gets better and the right half worse than with no map; swapping the map swaps them."""
    codec = get_codec("icm-lic")
    assert codec.takes_delta_qp(codec.resolve_options({}))
    rows, cols = photo.shape[0] // 16, photo.shape[1] // 16
    left = np.where(np.arange(cols)[None, :] < cols // 2, -6, 6).repeat(rows, axis=0)
    half = photo.shape[1] // 2

    def halves(delta_qp):
        bitstream = codec.encode(photo, "q4", delta_qp=delta_qp)
        decoded = codec.decode(bitstream)
        return (psnr(photo[:, :half], decoded[:, :half]),
                psnr(photo[:, half:], decoded[:, half:]), len(bitstream.data))

    plain_left, plain_right, plain_bytes = halves(None)
    map_left, map_right, map_bytes = halves(left)
    swap_left, swap_right, _ = halves(-left)
    assert map_left > plain_left + 1 and map_right < plain_right - 1
    assert swap_left < plain_left - 1 and swap_right > plain_right + 1
    assert map_bytes != plain_bytes


def test_importance_point_drives_the_quality_map(photo):
    from icm.pipeline import encode_image, parse_point

    encoded = encode_image(photo, parse_point("icm-lic+saliency@q4"))
    assert encoded.prepared.applier == "delta-qp"
    assert encoded.bitstream.params["delta_qp"].endswith(tuple("0123456789abcdef"))
    plain = encode_image(photo, parse_point("icm-lic@q4"))
    assert encoded.bitstream.data != plain.bitstream.data


def test_stream_from_another_model_or_damaged_is_refused(tmp_path, photo):
    other = save_model(tmp_path, LicNet(TINY).eval(), {})
    codec = get_codec("icm-lic")
    bitstream = codec.encode(photo, "q3", weights=str(other))
    with pytest.raises(CorruptContainerError, match="coded with model"):
        codec.decode_raw(bitstream.data)
    with pytest.raises(CorruptContainerError, match="version"):
        codec.decode_raw(b"\x07" + bitstream.data[1:])
    mapped = codec.encode(photo, "q3", delta_qp=np.array([[-3, 3]]))
    with pytest.raises(CorruptContainerError, match="quality map does not decode"):
        codec.decode_raw(mapped.data[:16])


def test_machine_flavour_codes_with_its_own_shipped_model(photo):
    """icm-lic-lite0 is the same codec with the Lite0-view model: its streams name that model,
    and a raw stream reaches it through plain icm-lic too (found among the shipped models by
    its tag), while a stream of an unknown model is still refused."""
    from icm.learned.files import shipped_model, shipped_models

    lite0, plain = get_codec("icm-lic-lite0"), get_codec("icm-lic")
    assert shipped_model("lite0") in shipped_models() and shipped_model() in shipped_models()
    ours = lite0.encode(photo, "q3")
    theirs = plain.encode(photo, "q3")
    assert ours.data[8:12] == bytes.fromhex(load_model(shipped_model("lite0"))[1].digest[:8])
    assert ours.data[8:12] != theirs.data[8:12]
    decoded = lite0.decode(ours)
    assert np.array_equal(plain.decode_raw(ours.data)[: photo.shape[0], : photo.shape[1]],
                          decoded)
    assert psnr(photo, decoded) > 20


def test_cli_trains_resumes_and_evaluates(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "run"
    common = ("learned", "train", "--images", "samples", "--limit", "1", "--crop", "64",
              "--batch", "1", "--channels", "16", "--latent", "12", "--alpha", "0",
              "--out", folder, "--json")
    code, stdout, err = icm(monkeypatch, capsys, *common, "--steps", "2")
    assert code == 0, err
    record = json.loads(stdout)
    assert record["steps"] == 2 and record["resumed_from"] == 0
    code, stdout, err = icm(monkeypatch, capsys, *common, "--steps", "3")
    assert code == 0, err
    assert json.loads(stdout)["resumed_from"] == 2
    model = json.loads(stdout)["out"]
    code, stdout, _ = icm(monkeypatch, capsys, "learned", "info", model, "--json")
    assert json.loads(stdout)["trained"]["steps"] == 3
    code, stdout, err = icm(monkeypatch, capsys, "learned", "eval", "--model", model,
                            "--images", "samples", "--limit", "1", "--levels", "q2,q7",
                            "--json")
    assert code == 0, err
    low, high = json.loads(stdout)
    assert high["bpp"] > low["bpp"] > 0


# -- CompressAI ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compressai_checkpoint(tmp_path_factory):
    """A randomly initialised bmshj2018-hyperprior q3 saved as a local checkpoint (no
    pretrained weights are reachable offline)."""
    pytest.importorskip("compressai", reason="CompressAI is optional (docs/learned.md)")
    from icm.learned.compressai_zoo import _zoo_module

    torch.manual_seed(0)
    net = _zoo_module()._load_model("bmshj2018-hyperprior", "mse", 3, pretrained=False)
    path = tmp_path_factory.mktemp("compressai") / "bmshj-q3.pth"
    torch.save(net.state_dict(), path)
    return path


def test_compressai_local_checkpoint_round_trips_exactly(compressai_checkpoint, odd_photo):
    codec = get_codec("bmshj2018-hyperprior")
    bitstream = codec.encode(odd_photo, "q3", weights=str(compressai_checkpoint))
    assert bitstream.point == "bmshj2018-hyperprior@q3" and bitstream.bpp > 0
    again = codec.encode(odd_photo, "q3", weights=str(compressai_checkpoint))
    assert again.data == bitstream.data
    first, second = codec.decode(bitstream), codec.decode(again)
    assert first.shape == odd_photo.shape and np.array_equal(first, second)


def test_compressai_offline_zoo_and_bad_checkpoints_are_one_line_errors(
        compressai_checkpoint, monkeypatch, tmp_path, photo):
    from icm.learned import compressai_zoo

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(compressai_zoo._zoo_module(), "load_state_dict_from_url", offline)
    compressai_zoo._zoo.cache_clear()
    with pytest.raises(CodecUnavailableError, match=r"not cached.*-O weights=PATH"):
        get_codec("mbt2018-mean").encode(photo, "q4")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecUnavailableError, match="not a cheng2020-anchor checkpoint"):
        get_codec("cheng2020-anchor").encode(photo, "q3", weights=str(bad))
    with pytest.raises(CodecUnavailableError, match="not a cheng2020-anchor checkpoint"):
        get_codec("cheng2020-anchor").encode(photo, "q3", weights=str(compressai_checkpoint))
