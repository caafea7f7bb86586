"""Codec-conditional adapters: identity at birth, learning, files, resume, bad files."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.adapt import (  # noqa: E402  (after the torch skip)
    AdaptedEncoder,
    AdapterError,
    Condition,
    Conditioning,
    TrainConfig,
    load_adapter,
    read_adapter,
    train_adapter,
)
from icm.adapt import train as train_module  # noqa: E402

lite0 = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                           reason="EfficientNet-Lite0 (icm[bench]) is not installed")
CONDITIONING = Conditioning(("jpeg", "hevc"))


class _Block(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self._project_conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return torch.relu(self._project_conv(x))


class TinyCnn(torch.nn.Module):
    """The EfficientNet layout in miniature: a ``_blocks`` list with ``_project_conv``s."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks = torch.nn.ModuleList([_Block(3, 4), _Block(4, 4), _Block(4, 8)])

    def forward(self, x):
        for block in self._blocks:
            x = block(x)
        return x


def test_conditions_become_ids_with_zero_for_unknown():
    assert CONDITIONING.ids([Condition("hevc", 0.07), Condition("avif", None)]) == ([2, 0],
                                                                                   [2, 0])
    assert CONDITIONING.bucket_id(5.0) == CONDITIONING.bucket_slots - 1


def test_a_fresh_adapter_is_the_identity_on_cnns_and_vits():
    torch.manual_seed(0)
    cnn = TinyCnn()
    x = torch.rand(2, 3, 16, 16)
    before = cnn(x)
    adapted = AdaptedEncoder(cnn, CONDITIONING)
    assert adapted.layout.stages == (1, 2) and adapted.layout.channels == (4, 8)
    adapted.condition([Condition("jpeg", 0.1), Condition("hevc", 0.9)])
    assert torch.equal(cnn(x), before)
    assert not any(p.requires_grad for p in cnn.parameters())

    open_clip = pytest.importorskip("open_clip")
    vit = open_clip.model.VisionTransformer(image_size=32, patch_size=16, width=32, layers=1,
                                            heads=2, mlp_ratio=2.0, output_dim=8).eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        reference = vit(image)
        adapted = AdaptedEncoder(vit, CONDITIONING)
        adapted.condition([Condition("jpeg", 0.1)])
        assert torch.equal(vit(image), reference)
        torch.nn.init.normal_(adapted.adapter.project.weight)  # a trained adapter does act
        adapted.condition([Condition("jpeg", 0.1)])
        assert not torch.equal(vit(image), reference)


def test_an_encoder_without_a_known_layout_is_refused():
    with pytest.raises(AdapterError, match="cannot place an adapter"):
        AdaptedEncoder(torch.nn.Linear(3, 3), CONDITIONING)


@lite0
def test_training_lowers_the_loss_and_the_file_reloads_to_identical_outputs(tmp_path):
    out = tmp_path / "lite0.safetensors"
    config = TrainConfig(codecs=("jpeg",), images="samples", val="samples", out=out,
                         levels={"jpeg": ("q5",)}, steps=12, batch=2, lr=3e-3, limit=2)
    result = train_adapter(config)
    assert result.val_after < 0.9 * result.val_before
    assert not out.with_suffix(".safetensors.ckpt").exists()

    from icm.machines import get_machine

    machine = get_machine(config.machine)
    parts = machine.torch_parts()
    _, info = read_adapter(out)
    assert info.conditioning.codecs == ("jpeg",) and info.conditioned
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    import copy

    outputs = []
    for _ in range(2):
        adapted = load_adapter(out, copy.deepcopy(parts.module), machine.name,
                               machine.fingerprint())
        adapted.condition([Condition("jpeg", 0.2)])
        with torch.no_grad():
            outputs.append(parts.logits(adapted.encoder, x))
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():
        assert not torch.equal(outputs[0], parts.logits(parts.module, x))
    with pytest.raises(AdapterError, match="trained for"):
        load_adapter(out, copy.deepcopy(parts.module), "classify:other", "other")


@lite0
def test_a_killed_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "resume.safetensors"
    config = TrainConfig(codecs=("jpeg",), images="samples", out=out, levels={"jpeg": ("q5",)},
                         steps=4, batch=2, limit=1, checkpoint_every=2)

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_adapter", killed)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(config)
    assert out.with_suffix(".safetensors.ckpt").exists() and not out.exists()
    monkeypatch.undo()
    result = train_adapter(config)
    assert result.resumed_from == 2 and len(result.losses) == 2 and out.exists()
    changed = TrainConfig(**{**config.__dict__, "lr": 0.5})
    (out.with_suffix(".safetensors.ckpt")).write_bytes(b"not a checkpoint")
    with pytest.raises(AdapterError, match="checkpoint does not load"):
        train_adapter(changed)


def test_bad_adapter_files_are_one_line_errors(tmp_path, monkeypatch, capsys):
    not_adapter = tmp_path / "x.safetensors"
    not_adapter.write_bytes(b"\x00" * 64)
    with pytest.raises(AdapterError, match="not a safetensors adapter"):
        read_adapter(not_adapter)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(AdapterError, match="not an icm adapter"):
        read_adapter(foreign)
    with pytest.raises(AdapterError, match="not found"):
        read_adapter(tmp_path / "missing.safetensors")
    code, _, err = icm(monkeypatch, capsys, "adapt", "info", not_adapter)
    assert_one_line_error(code, err, "x.safetensors", "not a safetensors adapter")


def test_adapter_tensors_must_fit_the_encoder(tmp_path):
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING)
    state = adapted.trainable_state()
    state["adapter.filters.0.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(AdapterError, match="shape"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable(state)
    with pytest.raises(AdapterError, match="do not match"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable({})


def test_unconditioned_adapters_ignore_the_codec():
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING, conditioned=False)
    torch.nn.init.normal_(adapted.embedding.codec.weight)
    torch.nn.init.normal_(adapted.adapter.film[-1].weight)
    x = torch.rand(1, 3, 8, 8)
    adapted.condition([Condition("jpeg", 0.1)])
    first = adapted.encoder(x)
    adapted.condition([Condition("hevc", 0.1)])
    assert torch.equal(adapted.encoder(x), first)


@lite0
def test_bench_reads_through_an_adapter_and_the_report_splits_the_gap(tmp_path):
    from icm.bench import BenchConfig, ledger_path, run_bench
    from icm.bench.analysis import gap_table
    from icm.bench.grid import with_adapters
    from icm.bench.ledger import Ledger
    from icm.bench.report import write_report

    adapter = tmp_path / "a.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=adapter,
                              levels={"jpeg": ("q5",)}, steps=2, batch=1, limit=1))
    machines = with_adapters(("classify:efficientnet-lite0",), [adapter])
    assert machines == ("classify:efficientnet-lite0",
                        f"classify:efficientnet-lite0+adapter={adapter}")
    out = tmp_path / "run"
    run_bench(BenchConfig(images="samples", codecs=("jpeg@q5", "jpeg@q60"), machines=machines,
                          out=out, workers=1, limit=2))
    with Ledger(ledger_path(out)) as ledger:
        rows = ledger.rows()
    assert {row["machine"] for row in rows} == set(machines)
    gaps = gap_table(rows)
    assert [g.point for g in gaps] == ["jpeg@q5", "jpeg@q60"]
    for gap in gaps:
        assert gap.images == 2 and 0 <= gap.total <= 1 and 0 <= gap.information <= 1
        assert gap.generalization == pytest.approx(gap.total - gap.information)
    report = (write_report(out).markdown).read_text()
    assert "Information and generalization gaps" in report


@lite0
def test_adapt_train_command_writes_an_adapter_and_reports_json(tmp_path, monkeypatch, capsys):
    import json

    out = tmp_path / "cli.safetensors"
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "train", "--out", out, "--codecs",
                          "jpeg", "--limit", "1", "--steps", "2", "--batch", "1", "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["steps"] == 2 and record["pairs"] == 4 and out.exists()
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "info", out)
    assert json.loads(stdout)["codecs"] == ["jpeg"]


def test_training_views_are_the_whole_image_then_aligned_random_crops():
    import numpy as np

    height, width = 60, 90
    ys, xs = np.mgrid[0:height, 0:width]
    coords = np.stack([ys, xs, np.zeros_like(ys)], axis=-1).astype(np.int32)
    views = train_module._views((height, width), 6, np.random.default_rng(0))
    again = train_module._views((height, width), 6, np.random.default_rng(0))
    assert len(views) == 6 and np.array_equal(views[0](coords), coords)
    flipped = 0
    for view, same in zip(views[1:], again[1:], strict=True):
        crop = view(coords)
        assert np.array_equal(crop, same(coords))  # deterministic for a seed
        assert 0.4 * height * width <= crop.shape[0] * crop.shape[1] <= height * width
        rows, cols = crop[..., 0], crop[..., 1]
        assert np.all(np.diff(rows, axis=0) == 1)  # a contiguous window of the image
        flipped += bool(np.all(np.diff(cols, axis=1) == -1))
        assert np.all(np.abs(np.diff(cols, axis=1)) == 1)
        shifted = view(coords + 1)  # the same window of another image: pristine vs decoded
        assert np.array_equal(shifted, crop + 1)
    assert 0 < flipped < 5
