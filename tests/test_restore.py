"""icm.restore: the untrained network is the identity, training lowers the loss and resumes
exactly, model files round-trip bit-exactly and fail in one line, the shipped model removes
noise, and ``icm restore`` (image and train) works from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.degrade import get_degradation  # noqa: E402
from icm.errors import IcmError  # noqa: E402
from icm.image import sample_photo  # noqa: E402
from icm.metrics import psnr  # noqa: E402
from icm.restore import (  # noqa: E402
    RestoreInfo,
    RestoreModelError,
    RestoreNet,
    RestoreTrainConfig,
    RestoreTrainError,
    load_model,
    restore_image,
    run_network,
    save_model,
    train_restorer,
)
from icm.restore.train import load_images, restoration_loss, sample_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_config(tmp_path, **changes) -> RestoreTrainConfig:
    settings = dict(images=("samples",), out=tmp_path / "model.safetensors", crop=32, batch=4,
                    steps=6, checkpoint_every=3, limit=2, degradations=("noise", "blur"),
                    widths=(8, 12, 16))
    settings.update(changes)
    return RestoreTrainConfig(**settings)


def test_fresh_network_is_exactly_the_identity(odd_photo):
    net = RestoreNet(RestoreTrainConfig().vocabulary()).eval()
    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        y = net(x, torch.tensor([0, 3]), torch.tensor([0.0, 0.5]), torch.tensor([0.0, 1.0]))
    assert torch.equal(y, x)
    assert np.array_equal(run_network(net, odd_photo, "noise", 0.5), odd_photo)


def test_training_steps_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(tmp_path, degradations=("noise",), strengths=(0.5, 0.5), lr=1e-3,
                         unknown_rate=0.0)
    images = load_images(config.images, config.crop, config.limit)
    net = RestoreNet(config.vocabulary(), None)
    held = sample_batch(images, config, net, 10_000)
    with torch.no_grad():
        before = float(restoration_loss(net, held, 0.0))
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    for step in range(25):
        loss = restoration_loss(net, sample_batch(images, config, net, step), 0.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = float(restoration_loss(net, held, 0.0))
    assert after < before * 0.97, (before, after)


class Killed(Exception):
    pass


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    whole = train_restorer(tiny_config(tmp_path / "a"))
    config = tiny_config(tmp_path / "b")

    def kill_after_checkpoint(stage, done, total):
        if done == 4:
            raise Killed

    with pytest.raises(Killed):
        train_restorer(config, kill_after_checkpoint)
    checkpoint = config.out.with_suffix(".safetensors.ckpt")
    assert checkpoint.is_file() and not config.out.exists()
    resumed = train_restorer(config)
    assert resumed.resumed_from == 3 and not checkpoint.exists()
    first, second = load_model(whole.out)[0].state_dict(), load_model(resumed.out)[0].state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_stale_or_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    config = tiny_config(tmp_path)
    checkpoint = config.out.with_suffix(".safetensors.ckpt")

    def kill(stage, done, total):
        if done == 4:
            raise Killed

    with pytest.raises(Killed):
        train_restorer(config, kill)
    with pytest.raises(RestoreTrainError, match="other settings; delete it") as info:
        train_restorer(tiny_config(tmp_path, lr=1e-4))
    assert "\n" not in str(info.value) and str(checkpoint) in str(info.value)
    checkpoint.write_bytes(b"torn")
    with pytest.raises(RestoreTrainError, match="does not load"):
        train_restorer(config)


def test_save_load_gives_bit_identical_outputs(tmp_path, odd_photo):
    torch.manual_seed(1)
    net = RestoreNet(RestoreTrainConfig().vocabulary()).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    path = tmp_path / "m.safetensors"
    save_model(path, net, RestoreInfo(net.vocabulary, net.arch, {"steps": 0}))
    loaded, info = load_model(path)
    assert info.vocabulary == net.vocabulary and info.arch == net.arch
    for name, strength in (("noise", 0.5), ("unknown", None), ("haze", 0.3)):
        expected = run_network(net, odd_photo, name, strength)
        assert not np.array_equal(expected, odd_photo)
        assert np.array_equal(run_network(loaded, odd_photo, name, strength), expected)


def test_corrupt_or_foreign_model_file_is_a_one_line_error(tmp_path, photo):
    from safetensors.torch import save_file

    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "other"})
    for path in (torn, foreign, tmp_path / "missing.safetensors"):
        with pytest.raises(RestoreModelError) as info:
            load_model(path)
        assert isinstance(info.value, IcmError)
        assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(RestoreModelError):
        restore_image(photo, "noise", 0.5, model=torn)


def test_shipped_model_removes_noise_when_told_the_type():
    clean = np.ascontiguousarray(sample_photo("astronaut")[100:228, 150:278])
    degraded = get_degradation("noise").apply(clean, 0.5, seed=7)
    restored, record = restore_image(degraded, "noise", 0.5)
    assert record.name == "noise" and record.strength == 0.5 and record.source == "given"
    assert psnr(clean, restored) > psnr(clean, degraded) + 0.5


def test_unknown_degradation_name_is_refused(photo):
    with pytest.raises(IcmError, match="unknown degradation"):
        restore_image(photo, "fog", 0.5)


def test_cli_restores_an_image(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "restored.png"
    code, stdout, _ = icm(monkeypatch, capsys, "restore", png, "-o", out,
                          "--degradation", "noise", "--json")
    assert code == 0 and out.is_file()
    record = json.loads(stdout)
    assert record["condition"]["name"] == "noise" and record["output"] == str(out)


def test_cli_errors_are_one_line(monkeypatch, capsys, png, tmp_path):
    out = tmp_path / "x.png"
    code, _, err = icm(monkeypatch, capsys, "restore", tmp_path / "missing.png", "-o", out)
    assert_one_line_error(code, err, "missing.png")
    code, _, err = icm(monkeypatch, capsys, "restore", png, "-o", out, "--degradation", "fog")
    assert_one_line_error(code, err, "unknown degradation")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"junk")
    code, _, err = icm(monkeypatch, capsys, "restore", png, "-o", out, "-d", "noise",
                       "--model", bad)
    assert_one_line_error(code, err, "bad.safetensors")


def test_cli_train_writes_a_model(monkeypatch, capsys, tmp_path):
    model = tmp_path / "model.safetensors"
    code, stdout, err = icm(monkeypatch, capsys, "restore", "train", "--images", "samples",
                            "--limit", "2", "--steps", "3", "--crop", "32", "--batch", "2",
                            "--degradations", "noise,jpeg", "--out", model, "--json")
    assert code == 0, err
    assert model.is_file() and json.loads(stdout)["steps"] == 3
    _net, info = load_model(model)
    assert info.trained["steps"] == 3 and info.trained["degradations"] == ["noise", "jpeg"]
