"""``icm lmms`` end to end, offline: lmms-eval's ``llava_hf`` around a tiny random-initialised
LLaVA on the local task of rendered cards (the tests' own, tests/lmms_helpers.py), at two
points and on the pristine images.

The model is random, so its answers are wrong everywhere and the curves say nothing about
codecs: this shows the mechanics and the outputs (bits per image, per-sample results, the table,
the plot, resuming). A real model and task run the same command on a GPU machine
(docs/lmms-eval.md). Prints the command and its output; writes ``results/lmms_local.json``
(the command and the --json summary). Run it again: everything is resumed, nothing redone.

    python benchmarks/lmms_local.py [--points 'jpeg@q10;hevc@qp40'] [--work /tmp/icm-lmms-local]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.lmms_helpers, tests.vlm_helpers

from tests.lmms_helpers import TASK, WORDS, write_decord_stub, write_local_task  # noqa: E402
from tests.vlm_helpers import save_tiny_llava  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="jpeg@q10;hevc@qp40")
    parser.add_argument("--work", type=Path, default=Path("/tmp/icm-lmms-local"))
    args = parser.parse_args()
    task = write_local_task(args.work / "task")
    model = args.work / "tiny-llava"
    if not (model / "config.json").exists():
        save_tiny_llava(model, WORDS)
    command = ["icm", "lmms", "--tasks", TASK, "--include-path", str(task),
               "--model-args", f"inner=llava_hf,pretrained={model},device=cpu,device_map=cpu,"
               f"dtype=float32,points={args.points}", "--out", str(args.work / "run")]
    print("$ " + shlex.join(command), flush=True)
    # llava_hf imports decord, which the tests' environment leaves out (tests/lmms_helpers.py)
    stub = write_decord_stub(args.work / "stub")
    path = os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": path}
    subprocess.run(command, check=True, env=env, stderr=subprocess.DEVNULL)
    done = subprocess.run([*command, "--json"], check=True, env=env, capture_output=True,
                          text=True)
    results = HERE / "results" / "lmms_local.json"
    results.write_text(json.dumps({"command": shlex.join(command),
                                   "summary": json.loads(done.stdout)}, indent=1) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
