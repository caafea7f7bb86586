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

    moved = tmp_path / "moved.safetensors"  # same model, new name: rows reused and relabelled
    moved.write_bytes(adapter.read_bytes())
    renamed = with_adapters(("classify:efficientnet-lite0",), [moved])
    summary = run_bench(BenchConfig(images="samples", codecs=("jpeg@q5", "jpeg@q60"),
                                    machines=renamed, out=out, workers=1, limit=2))
    assert summary.rows_added == 0
    with Ledger(ledger_path(out)) as ledger:
        assert {row["machine"] for row in ledger.rows()} == set(renamed)
        assert {row["machine"] for row in ledger.rows("pristine")} == set(renamed)


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
    assert json.loads(stdout)["tuned_encoder"] is False

    reference = tmp_path / "reference.safetensors"
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "train", "--out", reference,
                          "--codecs", "jpeg", "--limit", "1", "--steps", "1", "--batch", "1",
                          "--tune-encoder", "--encoder-lr-scale", "0.5", "--sides", "0,64",
                          "--json")
    assert code == 0 and json.loads(stdout)["pairs"] == 8  # 4 levels x 2 sizes
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "info", reference)
    assert json.loads(stdout)["tuned_encoder"] is True


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


def test_resampling_to_a_shorter_side_keeps_the_aspect_and_zero_keeps_the_image():
    import numpy as np

    rgb = np.full((30, 45, 3), 128, np.uint8)
    assert train_module.resample_shorter_side(rgb, 0) is rgb
    assert train_module.resample_shorter_side(rgb, 30) is rgb
    bigger = train_module.resample_shorter_side(rgb, 48)
    assert bigger.shape == (48, 72, 3) and np.all(bigger == 128)
    assert train_module.resample_shorter_side(rgb, 12).shape == (12, 18, 3)


class _PixelsAsInput:
    """Torch parts whose "prepared input" is the image itself: pairs then show what was coded."""

    @staticmethod
    def prepare_image(rgb):
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()


def test_training_pairs_are_coded_at_every_requested_size():
    config = TrainConfig(codecs=("jpeg",), levels={"jpeg": ("q5", "q50")}, limit=1,
                         sides=(0, 96))
    pairs = train_module.make_pairs(_PixelsAsInput(), "samples", config, ["photo"])
    assert len(pairs) == 4
    native = [p for p in pairs if min(p.pristine.shape[1:]) != 96]
    resized = [p for p in pairs if min(p.pristine.shape[1:]) == 96]
    assert len(native) == len(resized) == 2
    for pair in pairs:
        assert pair.decoded.shape == pair.pristine.shape
        assert not torch.equal(pair.decoded, pair.pristine)  # really coded
    # the rate is the coded image's own: the smaller copy costs fewer bytes, not the same bpp
    assert {p.condition.codec for p in pairs} == {"jpeg"}
    assert len({round(p.condition.bpp, 6) for p in pairs}) == 4


def test_a_tuned_encoder_trains_and_travels_with_the_file():
    torch.manual_seed(0)
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING, tune_encoder=True)
    assert all(p.requires_grad for p in adapted.encoder.parameters())
    config = TrainConfig(tune_encoder=True, lr=1e-2)
    optimiser = train_module._optimiser(adapted, config)
    assert [group["lr"] for group in optimiser.param_groups] == [1e-2, 1e-3]
    x = torch.rand(2, 3, 8, 8)
    adapted.condition([Condition("jpeg", 0.1)] * 2)
    before = {k: v.clone() for k, v in adapted.encoder.state_dict().items()}
    adapted.encoder(x).pow(2).mean().backward()
    optimiser.step()
    assert any(not torch.equal(before[k], v) for k, v in adapted.encoder.state_dict().items())

    state = adapted.trainable_state()
    assert any(name.startswith("encoder.") for name in state)
    copy_ = AdaptedEncoder(TinyCnn(), CONDITIONING, tune_encoder=True)
    copy_.load_trainable(state)
    for model in (adapted, copy_):
        model.condition([Condition("jpeg", 0.1)])
    with torch.no_grad():
        assert torch.equal(copy_.encoder(x[:1]), adapted.encoder(x[:1]))
    with pytest.raises(AdapterError, match="do not match"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable(state)


@lite0
def test_a_fine_tuned_reference_is_marked_in_its_file_and_fingerprint(tmp_path):
    from icm.machines import get_machine
    from icm.machines.registry import REFERENCE_MARK

    out = tmp_path / "reference.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=out, levels={"jpeg": (
        "q5",)}, steps=2, batch=1, limit=1, tune_encoder=True))
    assert read_adapter(out)[1].tuned_encoder
    machine = get_machine(f"classify:efficientnet-lite0+adapter={out}")
    assert machine.fingerprint().endswith(REFERENCE_MARK)
    adapter = tmp_path / "adapter.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=adapter, levels={
        "jpeg": ("q5",)}, steps=1, batch=1, limit=1))
    assert not read_adapter(adapter)[1].tuned_encoder
    assert not get_machine(f"classify:efficientnet-lite0+adapter={adapter}"
                           ).fingerprint().endswith(REFERENCE_MARK)
    assert out.stat().st_size > 20 * adapter.stat().st_size  # the whole encoder is in it


def _gap_rows(values: dict[str, list[float]], reference: str) -> list[dict]:
    """Ledger-like rows: each machine's top-1 per (image, point), two points, three images."""
    from icm.machines.registry import REFERENCE_MARK

    rows = []
    for machine, per_image in values.items():
        mark = REFERENCE_MARK if machine == reference else ""
        for image, value in enumerate(per_image):
            for point, bpp in (("jpeg@q5", 0.2), ("jpeg@q20", 0.5)):
                rows.append({"image_sha": f"img{image}", "image_id": f"img{image}",
                             "point": point, "codec": "jpeg",
                             "bpp": bpp, "machine": machine, "fingerprint": f"fp{mark}",
                             "created_at": 1.0, "primary_value": value})
    return rows


def test_adapters_are_judged_against_the_gap_the_fine_tuned_reference_closes():
    from icm.bench.analysis import (
        gap_table,
        recovered_share,
        recovered_share_interval,
        reference_of,
    )
    from icm.bench.report import _share_sentence

    plain, adapter, reference = "m", "m+adapter=a.safetensors", "m+adapter=ref.safetensors"
    rows = _gap_rows({plain: [0.5, 0.4, 0.6], adapter: [0.6, 0.5, 0.7],
                      reference: [0.8, 0.7, 0.9]}, reference)
    assert reference_of(rows, plain) == reference
    weaker = _gap_rows({"m+adapter=weak.safetensors": [0.6, 0.5, 0.6]},
                       "m+adapter=weak.safetensors")
    assert reference_of(weaker + rows, plain) == reference  # the best of several references
    partial = [r for r in _gap_rows({"m+adapter=half.safetensors": [1.0, 1.0, 1.0]},
                                    "m+adapter=half.safetensors") if r["image_sha"] == "img0"]
    assert reference_of(partial + rows, plain) == reference  # perfect, but on one image only
    assert reference_of(_gap_rows({plain: [0.5], adapter: [0.6]}, ""), plain) is None
    mine = [g for g in gap_table(rows) if g.adapted == adapter]
    assert [g.reference for g in mine] == pytest.approx([0.2, 0.2])
    assert recovered_share(mine) == pytest.approx(0.1 / 0.5)
    assert recovered_share(mine, of_reference=True) == pytest.approx(0.1 / 0.3)
    share, low, high = recovered_share_interval(rows, adapter, reference=reference)
    assert share == pytest.approx(1 / 3) and low <= share <= high
    assert recovered_share_interval(rows, reference, reference=reference)[0] == pytest.approx(1)
    sentence = _share_sentence(rows, adapter, plain)
    assert "20%" in sentence and "33%" in sentence and "reference ref.safetensors" in sentence
    assert "It is an adapter" in sentence
    assert "best fine-tuned reference" in _share_sentence(rows, reference, plain)
    weak = "m+adapter=weak.safetensors"
    assert "weaker fine-tuned reference" in _share_sentence(weaker + rows, weak, plain)


def test_bad_training_sides_are_a_one_line_error(tmp_path, monkeypatch, capsys):
    code, _, err = icm(monkeypatch, capsys, "adapt", "train", "--out", tmp_path / "a.st",
                       "--sides", "0,big")
    assert_one_line_error(code, err, "--sides", "shorter sides")
