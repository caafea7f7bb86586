"""Helpers shared by the bench tests: a small grid over ``photo_folder``, and ledger reading."""

from __future__ import annotations

from pathlib import Path

from icm.bench import BenchConfig, ledger_path
from icm.bench.ledger import Ledger


def small_config(folder: Path, out: Path, **overrides) -> BenchConfig:
    """Three small photos x the JPEG and WebP ladders x the fake block machine."""
    settings = dict(images=str(folder), codecs=("jpeg", "webp"), levels=(),
                    machines=("fake:blocks",), out=out, workers=2)
    settings.update(overrides)
    return BenchConfig(**settings)


def rows_in(out: Path) -> list[dict]:
    with Ledger(ledger_path(out)) as ledger:
        return ledger.rows()


def ledger_contents(out: Path) -> dict[str, list[tuple]]:
    with Ledger(ledger_path(out)) as ledger:
        return ledger.snapshot()


def cache_files(out: Path) -> dict[str, bytes]:
    root = out / "cache" / "bitstreams"
    return {path.name: path.read_bytes() for path in root.rglob("*.icm")}
