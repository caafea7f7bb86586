"""``icm lmms``: lmms-eval tasks x icm points, resumable, with rate-accuracy tables and plots.

The inner model is loaded once; each (task, point) is one lmms-eval evaluation of the ``icm``
wrapper around it (:mod:`icm.integrations.lmms_model`), plus one on the pristine images per
task. A finished (task, point) is one JSON file under ``RUN/results/<task>/``, written
atomically by this process alone once the evaluation ends, so a killed run loses at most the
evaluation under way and the same command goes on from there; the bitstreams sit in the
bench's content-addressed cache (``RUN/cache``) and are not encoded twice.

Per task the analysis is the bench's (:mod:`icm.bench.analysis`): one row per question, its
bpp being the bits of its images over their pixels, its score the task's own per-sample
metric; BD-rate and BD-accuracy between codecs with 90% intervals from resampling images
(questions on one image move together, through the rows' ``group``). Agreement with the
answer on the pristine images (no labels needed) is a second fidelity, as in the bench.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from icm.bench.analysis import BDEntry, GapEntry, bd_table, curves, with_interval
from icm.bench.report.plots import codec_colours, curve_plot, gap_plot
from icm.bench.runner import RunFolderLock
from icm.errors import IcmError
from icm.fileio import write_atomic
from icm.integrations.lmms_args import ICM_KEYS, WrapperArgs, parse_wrapper_args
from icm.pipeline import CodecPoint
from icm.pipeline.point import parse_point

#: lmms-eval versions the wrapper is tested with (pinned, --no-deps, in the README's test
#: command and .ci/run: its wheel requires av<16, which would take PyAV 18's VVC decoder away)
SUPPORTED_LMMS_EVAL = ("0.7.3",)
INSTALL_HINT = ("pip install -e '.[lmms]' && pip install --no-deps "
                f"lmms-eval=={SUPPORTED_LMMS_EVAL[-1]} (docs/lmms-eval.md)")
PRISTINE = "pristine"
REFERENCE = "reference"  # results of the fine-tuned reference: RUN/results/<task>/reference/
Progress = Callable[[str, int, int], None]
AGREEMENT = "agreement"  # the answer equals the answer on the pristine images


@dataclass(frozen=True)
class LmmsConfig:
    """One ``icm lmms`` run: tasks x the points of ``model_args`` (plus the pristine images)."""

    tasks: tuple[str, ...]
    model_args: str
    out: Path = Path("icm-lmms")
    include_path: tuple[Path, ...] = ()
    limit: int = 0  # first N documents of each task (0: all)
    batch_size: int = 1
    anchor: str = ""  # the codec BD values compare against (default: the first point's)
    bootstrap: int = 200
    # model_args for the inner model's reference fine-tuned on decoded images (e.g.
    # pretrained=/models/ft), replacing the inner's own: the information/generalization split
    reference: str = ""


@dataclass
class TaskTable:
    """One task's rate-accuracy results, as written to ``RUN/<task>/table.json``."""

    task: str
    metric: str
    anchor: str
    pristine: dict[str, Any]
    points: list[dict[str, Any]]
    bd: list[dict[str, Any]]
    bd_agreement: list[dict[str, Any]]
    plot: str | None = None
    notes: list[str] = field(default_factory=list)
    gap: list[dict[str, Any]] = field(default_factory=list)  # with a reference only
    gap_plot: str | None = None


@dataclass
class LmmsOutcome:
    out: Path
    evaluated: list[str]  # "task @ point" run now
    resumed: list[str]  # found finished
    tables: list[TaskTable]


def run_lmms(config: LmmsConfig, progress: Progress | None = None) -> LmmsOutcome:
    """Evaluate what is missing, then write every task's table and plot. ``progress`` gets
    ``(task @ point, done, 1)`` when each evaluation starts and ends."""
    wrapper_args = parse_model_args(config.model_args)
    anchor = config.anchor or wrapper_args.points[0].curve
    if anchor not in {p.curve for p in wrapper_args.points}:
        raise IcmError(f"--anchor {anchor}: not the codec of any point "
                       f"({', '.join(dict.fromkeys(p.curve for p in wrapper_args.points))})")
    reference = _reference_args(config.reference)
    task_manager = _task_manager(config)
    with RunFolderLock(config.out):
        _check_run_folder(config, wrapper_args, reference)
        units = [(task, point, variant) for task in config.tasks
                 for point in (None, *wrapper_args.points)
                 for variant in ((None, REFERENCE) if reference and point else (None,))]
        todo = sorted((unit for unit in units if not result_path(config.out, *unit).exists()),
                      key=lambda unit: unit[2] is not None)  # the inner's, then the reference's
        if todo:
            _evaluate(config, wrapper_args, reference, task_manager, todo, progress)
        tables = [write_task_table(config.out, task, anchor, config.bootstrap)
                  for task in config.tasks]
        write_atomic(config.out / "summary.json", json.dumps(
            [asdict(t) for t in tables], indent=1, default=str).encode())
    return LmmsOutcome(config.out, [unit_name(*u) for u in todo],
                       [unit_name(*u) for u in units if u not in todo], tables)


def unit_name(task: str, point: CodecPoint | None, variant: str | None = None) -> str:
    """``'mmbench_en @ hevc@qp37'``, ``'... (reference)'``, ``'... @ pristine'``."""
    return f"{task} @ {point or PRISTINE}" + (f" ({variant})" if variant else "")


# -- arguments, tasks, the run folder ---------------------------------------------------------


def require_lmms_eval() -> str:
    """lmms-eval's version, or a one-line error saying how to install it."""
    try:
        version = metadata.version("lmms-eval")
    except metadata.PackageNotFoundError:
        raise IcmError(f"icm lmms needs lmms-eval: {INSTALL_HINT}") from None
    if version not in SUPPORTED_LMMS_EVAL:
        raise IcmError(f"lmms-eval {version} is installed; icm is tested with "
                       f"{', '.join(SUPPORTED_LMMS_EVAL)}: {INSTALL_HINT}")
    return version


def parse_model_args(text: str) -> WrapperArgs:
    """lmms-eval's own ``key=value,...`` parsing (JSON values keep their commas), then icm's."""
    require_lmms_eval()
    from lmms_eval.utils import simple_parse_args_string

    try:
        parsed = simple_parse_args_string(text)
    except ValueError:
        raise IcmError(f"--model-args {text!r}: write key=value pairs separated by commas") \
            from None
    return parse_wrapper_args(parsed)


def _reference_args(text: str) -> dict[str, Any]:
    """The reference's model_args (the inner's, overridden): icm's own keys are refused."""
    if not text.strip():
        return {}
    from lmms_eval.utils import simple_parse_args_string

    try:
        parsed = simple_parse_args_string(text)
    except ValueError:
        raise IcmError(f"--reference {text!r}: write key=value pairs separated by commas") \
            from None
    if claimed := sorted(set(parsed) & set(ICM_KEYS)):
        raise IcmError(f"--reference {text!r}: {', '.join(claimed)} belong in --model-args; "
                       "the reference takes the inner model's own arguments")
    return parsed


def _task_manager(config: LmmsConfig) -> Any:
    """lmms-eval's task index with the run's local task folders; unknown tasks fail here."""
    from lmms_eval.tasks import TaskManager

    for folder in config.include_path:
        if not Path(folder).is_dir():
            raise IcmError("--include-path: not a folder", folder)
    with _quiet():
        manager = TaskManager("WARNING", include_path=[str(p) for p in config.include_path]
                              or None)
    if not config.tasks:
        raise IcmError("--tasks: name at least one lmms-eval task")
    for task in config.tasks:
        if task not in manager.all_tasks:
            raise IcmError(f"--tasks: {task!r} is not an lmms-eval task (a local task's folder "
                           "goes in --include-path)")
    return manager


def _check_run_folder(config: LmmsConfig, wrapper_args: WrapperArgs,
                      reference: dict[str, Any]) -> None:
    """A run folder holds one inner model's results, and at most one reference's: resuming
    with another model or another reference is refused (a reference may be added later)."""
    identity = {"inner": wrapper_args.inner,
                "inner_args": {k: str(v) for k, v in sorted(wrapper_args.inner_args.items())},
                "limit": config.limit}
    named = {k: str(v) for k, v in sorted(reference.items())}
    path = config.out / "run.json"
    before = json.loads(path.read_text()) if path.exists() else dict(identity)
    kept = before.pop(REFERENCE, None)
    if before != identity:
        raise IcmError(f"holds results of {before['inner']} {before['inner_args']} "
                       f"(limit {before['limit']}); use another --out for this model",
                       config.out)
    if named and kept is not None and kept != named:
        raise IcmError(f"holds results of the reference {kept}; use another --out for "
                       "another reference", config.out)
    if not path.exists() or (named and kept is None):
        write_atomic(path, json.dumps({**identity, **({REFERENCE: named} if named else {})},
                                      indent=1).encode())


def result_path(out: Path, task: str, point: CodecPoint | None,
                variant: str | None = None) -> Path:
    """``RUN/results/<task>/[reference/]<point>.json``: readable, unique by a short hash."""
    name = str(point) if point is not None else PRISTINE
    slug = re.sub(r"[^A-Za-z0-9@.+=-]+", "_", name)[:80]
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return out / "results" / task / (variant or "") / f"{slug}-{digest}.json"


# -- evaluation -------------------------------------------------------------------------------


def _evaluate(config: LmmsConfig, wrapper_args: WrapperArgs, reference: dict[str, Any],
              task_manager: Any, todo: list[tuple[str, CodecPoint | None, str | None]],
              progress: Progress | None) -> None:
    """The inner model's evaluations, then the reference's: one model in memory at a time."""
    from icm.integrations.lmms_model import IcmModel, load_inner

    for variant, overrides in ((None, {}), (REFERENCE, reference)):
        mine = [(task, point) for task, point, v in todo if v == variant]
        if not mine:
            continue
        with _quiet():
            model = load_inner(wrapper_args.inner, {**wrapper_args.inner_args, **overrides,
                                                    "batch_size": config.batch_size})
        for task, point in mine:  # one bar per evaluation, filled when it is stored
            stage = unit_name(task, point, variant)
            if progress:
                progress(stage, 0, 1)
            wrapper = IcmModel.around(model, point, config.out / "cache")
            result = evaluate_point(wrapper, task, task_manager, config)
            write_atomic(result_path(config.out, task, point, variant),
                         json.dumps(result, indent=1, default=str).encode())
            if progress:
                progress(stage, 1, 1)
        del model


def evaluate_point(wrapper: Any, task: str, task_manager: Any, config: LmmsConfig
                   ) -> dict[str, Any]:
    """One lmms-eval evaluation of ``wrapper`` on ``task``: aggregates and per-sample rows,
    each sample with the bits of its images."""
    from lmms_eval.evaluator import simple_evaluate

    with _quiet():
        results = simple_evaluate(model=wrapper, tasks=[task], task_manager=task_manager,
                                  limit=config.limit or None, batch_size=config.batch_size,
                                  log_samples=True, bootstrap_iters=0, verbosity="WARNING")
    if results is None:
        raise IcmError(f"lmms-eval returned no results for {task}")
    metrics = _task_metrics(results)
    samples = []
    for subtask, logged in results.get("samples", {}).items():
        for sample in logged:
            images = wrapper.records.get((subtask, sample["doc_id"]), [])
            samples.append({
                "task": subtask, "doc_id": sample["doc_id"],
                "response": sample.get("filtered_resps"), "target": sample.get("target"),
                "scores": {m: sample[m] for m in metrics.get(subtask, ()) if m in sample},
                "bits": sum(r.bits for r in images),
                "pixels": sum(r.width * r.height for r in images),
                "images": [r.to_json() for r in images],
            })
    return {"task": task, "point": str(wrapper.point) if wrapper.point else PRISTINE,
            "lmms_eval": metadata.version("lmms-eval"), "created_at": time.time(),
            "aggregates": results["results"], "metrics": metrics, "samples": samples}


def _task_metrics(results: dict[str, Any]) -> dict[str, list[str]]:
    """Each task's metric names, in its YAML's order."""
    return {task: [entry["metric"] for entry in config.get("metric_list", [])]
            for task, config in results.get("configs", {}).items()}


@contextlib.contextmanager
def _quiet():
    """lmms-eval logs (loguru) and prints to stdout: send its prints to stderr, so that
    ``--json`` prints one document, and keep only its errors, so that a bad input stays the
    one line icm prints (its progress bars still show on stderr)."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    with contextlib.redirect_stdout(sys.stderr):
        yield


# -- analysis ---------------------------------------------------------------------------------


def load_results(out: Path, task: str, variant: str | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Every finished point of ``task`` in the run folder, by point ('pristine' included),
    of the inner model or of its ``variant`` (the reference)."""
    found = {}
    for path in sorted((out / "results" / task / (variant or "")).glob("*.json")):
        record = json.loads(path.read_text())
        found[record["point"]] = record
    return found


def primary_metric(record: dict[str, Any]) -> str:
    """The task's first metric whose per-sample values are numbers (what BD can average)."""
    for sample in record["samples"]:
        for name, value in sample["scores"].items():
            if isinstance(value, (int, float)):
                return name
    raise IcmError(f"task {record['task']} has no per-sample numeric metric to draw a "
                   "rate-accuracy curve from")


def question_rows(records: dict[str, dict[str, Any]], task: str, metric: str
                  ) -> list[dict[str, Any]]:
    """One bench-shaped row per (point, question with images): the analysis's input. A
    question's group is its images, so resampling draws images, not questions."""
    pristine = {(s["task"], s["doc_id"]): s for s in records[PRISTINE]["samples"]}
    rows = []
    for point, record in records.items():
        if point == PRISTINE:
            continue
        curve = parse_point(point).curve
        for sample in record["samples"]:
            if not sample["pixels"] or metric not in sample["scores"]:
                continue
            before = pristine.get((sample["task"], sample["doc_id"]))
            agreement = float(before is not None and before["response"] == sample["response"])
            images = sample["images"]
            rows.append({
                "machine": task, "fingerprint": "", "created_at": 0.0,
                "image_sha": f"{sample['task']}/{sample['doc_id']}",
                "image_id": f"{sample['task']}/{sample['doc_id']}",
                "group": "|".join(sorted({i["image_sha"] for i in images})),
                "point": point, "codec": curve, "bpp": sample["bits"] / sample["pixels"],
                "primary_value": float(sample["scores"][metric]),
                "psnr": sum(i["psnr"] for i in images) / len(images),
                "fidelity_json": json.dumps({metric: float(sample["scores"][metric]),
                                             AGREEMENT: agreement}),
                "accuracy_json": None,
            })
    return rows


def write_task_table(out: Path, task: str, anchor: str, bootstrap: int) -> TaskTable:
    """The task's table (JSON + Markdown) and rate-accuracy plot, from its stored results."""
    records = load_results(out, task)
    metric = primary_metric(records[PRISTINE])
    rows = question_rows(records, task, metric)
    per_codec = curves(rows, task) if rows else {}
    pristine = _pristine_summary(records[PRISTINE], metric,
                                 {row["image_sha"] for row in rows})
    table = TaskTable(
        task=task, metric=metric, anchor=anchor, pristine=pristine,
        points=_point_summaries(records, per_codec),
        bd=[_bd_json(e) for e in bd_table(rows, anchor, bootstrap=bootstrap)] if rows else [],
        bd_agreement=[_bd_json(e) for e in bd_table(rows, anchor, bootstrap=bootstrap,
                                                    metric=AGREEMENT)] if rows else [],
    )
    left_out = len(records[PRISTINE]["samples"]) - pristine["questions"]
    if rows and left_out:
        table.notes.append(f"{left_out} questions without images or without a numeric "
                           f"{metric} are left out of the curves and the pristine score")
    folder = out / task
    if per_codec:
        png = curve_plot(per_codec, f"{task}: {metric} vs rate", metric, anchor,
                         codec_colours(rows), reference=pristine["score"])
        write_atomic(folder / "rate_accuracy.png", png)
        table.plot = str(folder / "rate_accuracy.png")
    if reference := load_results(out, task, REFERENCE):
        entries = gap_entries(task, records, reference, metric)
        table.gap = [{**asdict(e), "generalization": e.generalization} for e in entries]
        if entries:
            png = gap_plot(entries, f"{task}: loss against the pristine images, split by the "
                           "fine-tuned reference", codec_colours(rows))
            write_atomic(folder / "gap.png", png)
            table.gap_plot = str(folder / "gap.png")
    write_atomic(folder / "table.json", json.dumps(asdict(table), indent=1).encode())
    write_atomic(folder / "table.md", markdown_table(table).encode())
    return table


def gap_entries(task: str, records: dict[str, dict[str, Any]],
                reference: dict[str, dict[str, Any]], metric: str) -> list[GapEntry]:
    """The bench's split (CompressVLMBench) per point, on the task's metric: ``total`` is the
    score lost against the pristine images, ``information`` what the reference fine-tuned on
    decoded images still loses (the bits are gone), their difference the generalization gap.
    Means over the questions with images that both models answered at that point."""
    pristine = _scores(records[PRISTINE], metric)
    entries = []
    for point, record in records.items():
        if point == PRISTINE or point not in reference:
            continue
        plain, tuned = _scores(record, metric), _scores(reference[point], metric)
        keys = sorted(plain.keys() & tuned.keys() & pristine.keys())
        rates = {(s["task"], s["doc_id"]): s["bits"] / s["pixels"]
                 for s in record["samples"] if s["pixels"]}
        keys = [k for k in keys if k in rates]
        if not keys:
            continue
        entries.append(GapEntry(
            machine=task, adapted=REFERENCE, curve=parse_point(point).curve, point=point,
            bpp=sum(rates[k] for k in keys) / len(keys),
            total=sum(pristine[k] - plain[k] for k in keys) / len(keys),
            information=sum(pristine[k] - tuned[k] for k in keys) / len(keys),
            images=len(keys)))
    return sorted(entries, key=lambda e: (e.curve, e.bpp))


def _scores(record: dict[str, Any], metric: str) -> dict[tuple[str, Any], float]:
    return {(s["task"], s["doc_id"]): float(s["scores"][metric]) for s in record["samples"]
            if isinstance(s["scores"].get(metric), (int, float))}


def _pristine_summary(record: dict[str, Any], metric: str, questions: set[str]
                      ) -> dict[str, Any]:
    """The score on the pristine images, over the questions the curves average (those with
    images: a text-only question has no rate)."""
    scores = [s["scores"][metric] for s in record["samples"] if metric in s["scores"]
              and (not questions or f"{s['task']}/{s['doc_id']}" in questions)]
    return {"score": sum(scores) / len(scores) if scores else None,
            "questions": len(scores), "aggregates": record["aggregates"]}


def _point_summaries(records, per_codec) -> list[dict[str, Any]]:
    """Per point: mean bpp, mean score, agreement, PSNR, and lmms-eval's own aggregates."""
    by_point = {p.point: p for points in per_codec.values() for p in points}
    summaries = []
    for point, record in records.items():
        if point == PRISTINE:
            continue
        curve = by_point.get(point)
        summaries.append({
            "point": point, "bpp": curve.bpp if curve else None,
            "score": curve.fidelity if curve else None, "psnr": curve.psnr if curve else None,
            "questions": curve.images if curve else 0,
            "agreement": _agreement(records, point),
            "aggregates": record["aggregates"]})
    return sorted(summaries, key=lambda s: (parse_point(s["point"]).curve, s["bpp"] or 0))


def _agreement(records, point) -> float | None:
    before = {(s["task"], s["doc_id"]): s["response"] for s in records[PRISTINE]["samples"]}
    samples = records[point]["samples"]
    if not samples:
        return None
    return sum(before.get((s["task"], s["doc_id"])) == s["response"]
               for s in samples) / len(samples)


def _bd_json(entry: BDEntry) -> dict[str, Any]:
    return {"codec": entry.codec, "anchor": entry.anchor, "bd_rate": entry.bd_rate,
            "bd_rate_ci": entry.bd_rate_ci, "bd_metric": entry.bd_metric,
            "bd_metric_ci": entry.bd_metric_ci, "notes": entry.notes}


def markdown_table(table: TaskTable) -> str:
    """The task's rate-accuracy table and BD values, as Markdown."""
    def number(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [f"# {table.task}: {table.metric} vs rate", "",
             f"Pristine images: {table.metric} {number(table.pristine['score'], '.4f')} "
             f"over {table.pristine['questions']} questions.", "",
             f"| point | bpp | {table.metric} | agreement | PSNR (dB) | questions |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {p['point']} | {number(p['bpp'], '.4f')} | {number(p['score'], '.4f')} | "
              f"{number(p['agreement'], '.3f')} | {number(p['psnr'], '.2f')} | "
              f"{p['questions']} |" for p in table.points]
    lines += ["", *table.notes] if table.notes else []
    if table.gap:
        lines += ["", f"Loss of {table.metric} against the pristine images, split by the "
                  "fine-tuned reference (information: what it still loses; generalization: "
                  "the rest):", "", "| point | bpp | total | information | generalization |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {g['point']} | {g['bpp']:.4f} | {g['total']:+.4f} | "
                  f"{g['information']:+.4f} | {g['generalization']:+.4f} |" for g in table.gap]
    for title, entries in ((table.metric, table.bd), (AGREEMENT, table.bd_agreement)):
        lines += ["", f"BD against {table.anchor} on {title} (90% intervals resampled by "
                  "image):", "", "| codec | BD-rate | BD-" + title + " | notes |",
                  "| --- | ---: | ---: | --- |"]
        lines += [f"| {e['codec']} | {with_interval(e['bd_rate'], e['bd_rate_ci'], '{:+.1f}%')} | "
                  f"{with_interval(e['bd_metric'], e['bd_metric_ci'], '{:+.4f}')} | "
                  f"{'; '.join(e['notes'])} |" for e in entries]
    return "\n".join(lines) + "\n"
