"""Does a refactor change any result? Fingerprints of what icm computes, to diff across trees.

A change meant to move code, not behaviour, must leave every trained weight and every bench
row as it was. This prints (and writes as JSON) fingerprints of:

* tiny training runs of the three trainers on the bundled samples (icm-lic, the restorer, an
  EfficientNet-Lite0 adapter with early stopping, a tuned encoder and a feature-distilled
  unconditioned one), each also killed mid-way and resumed: SHA-256 of the weights (not of
  the files, whose records hold wall times), the losses, the adapters' curves and gates;
* the embedded default bench (``icm bench``'s run): every ledger row but its times and
  versions, and the BD table.

Run it in two trees and compare the files::

    git worktree add /tmp/before <rev>
    PYTHONPATH=/tmp/before/src python benchmarks/identical.py --out /tmp/before.json
    python benchmarks/identical.py --out /tmp/after.json
    cmp /tmp/before.json /tmp/after.json && echo identical

A worktree outside the checkout's folder does not see ``../shared``: give both runs
``ICM_MODELS_DIR=<shared>/models`` so that the same machines (NanoDet) join the default bench.
``--only bench`` (or ``learned,restore,adapters``) limits it. Needs the bench extra (torch,
EfficientNet-Lite0); about 2 minutes without the bench and 6 with it on two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: ledger columns that depend on the run, not on what was computed
VOLATILE = {"encode_ms", "decode_ms", "predict_ms", "created_at", "versions_json"}


class _Killed(Exception):
    pass


def _kill_at(step: int):
    def report(_text: str, done: int, _total: int) -> None:
        if done == step:
            raise _Killed
    return report


def weights_digest(path: Path) -> str:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name]).tobytes())
    return digest.hexdigest()[:16]


def _twice(train, config_of, folder: Path) -> dict[str, Any]:
    """Train once straight through and once killed at step 3 and resumed: both fingerprints."""
    whole = train(config_of(folder / "whole"))
    with contextlib.suppress(_Killed):
        train(config_of(folder / "resumed"), _kill_at(3))
    resumed = train(config_of(folder / "resumed"))
    return {"weights": weights_digest(whole.out), "losses": [round(v, 6) for v in whole.losses],
            "resumed_weights": weights_digest(resumed.out),
            "resumed_from": resumed.resumed_from}


def learned_codec(folder: Path) -> dict[str, Any]:
    from icm.learned.config import LearnedTrainConfig
    from icm.learned.train import train

    return _twice(train, lambda out: LearnedTrainConfig(
        images=("samples",), out=out, crop=64, batch=2, steps=6, checkpoint_every=2, limit=2,
        channels=16, latent=12, alpha=0.0), folder)


def restorer(folder: Path) -> dict[str, Any]:
    from icm.restore.config import RestoreTrainConfig
    from icm.restore.train import train_restorer

    return _twice(train_restorer, lambda out: RestoreTrainConfig(
        images=("samples",), out=out.with_suffix(".safetensors"), crop=32, batch=2, steps=6,
        checkpoint_every=2, limit=2, widths=(8, 8, 8),
        degradations=RestoreTrainConfig().degradations[:2]), folder)


def adapters(folder: Path) -> dict[str, Any]:
    from icm.adapt import TrainConfig, train_adapter

    recipes = {"kl+anchor": {}, "tuned": {"tune_encoder": True},
               "features": {"feature_weight": 0.5, "conditioned": False}}
    found = {}
    for name, extra in recipes.items():
        def config_of(out: Path, extra: dict = extra) -> TrainConfig:
            return TrainConfig(
                codecs=("jpeg", "webp"), images="samples", out=out.with_suffix(".safetensors"),
                levels={"jpeg": ("q5", "q20"), "webp": ("q5",)}, steps=12, batch=4, limit=4,
                checkpoint_every=2, views=2, scales=(1.0, 1.5), eval_every=3, patience=2,
                val_share=0.25, **extra)
        result = train_adapter(config_of(folder / name))
        found[name] = {"weights": weights_digest(result.out), "steps": result.steps,
                       "best_step": result.best_step,
                       "losses": [round(v, 6) for v in result.losses],
                       "curve": [{k: round(v, 6) if isinstance(v, float) else v
                                  for k, v in point.items()} for point in result.curve],
                       "gate": sorted((k, e.open) for k, e in (result.gate or {}).items())}
    return found


def default_bench(folder: Path) -> dict[str, Any]:
    """The embedded default run, as ``icm bench`` makes it, in a fresh folder."""
    out = folder / "bench"
    done = subprocess.run([sys.executable, "-m", "icm.cli.main", "bench", "--out", str(out),
                           "--no-report", "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    with sqlite3.connect(out / "ledger.sqlite") as ledger:
        cursor = ledger.execute("SELECT * FROM results ORDER BY image_sha, point, fingerprint")
        columns = [c[0] for c in cursor.description]
        rows = [{c: v for c, v in zip(columns, row, strict=True) if c not in VOLATILE}
                for row in cursor]
    text = json.dumps(rows, sort_keys=True).encode()
    return {"rows": len(rows), "rows_digest": hashlib.sha256(text).hexdigest()[:16],
            "bd": summary["bd"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--only", default="learned,restore,adapters,bench",
                        help="which fingerprints (a tree from before a trainer existed in its "
                             "present form can still be compared on the others)")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    import torch

    torch.set_num_threads(1)
    import icm
    from icm.fileio import write_atomic

    report: dict[str, Any] = {"icm": str(Path(icm.__file__).parent)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, job in (("learned", learned_codec), ("restore", restorer),
                          ("adapters", adapters), ("bench", default_bench)):
            if name in wanted:
                print(f"{name}...", file=sys.stderr)
                (folder / name).mkdir()
                report[name] = job(folder / name)
    fingerprints = {k: v for k, v in report.items() if k != "icm"}
    text = json.dumps(fingerprints, indent=1, sort_keys=True)
    write_atomic(args.out, (text + "\n").encode())
    for name, value in fingerprints.items():
        digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
        print(f"{name:10} {digest}")
    print(f"wrote {args.out} (from {report['icm']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
