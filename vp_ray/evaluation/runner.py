"""``task=evaluate``: score every clip of a finished run, on Ray, resumably, losing none.

    driver: the dataset's rows -> each a finished clip of these settings, or a row saying why it
      cannot be scored -> clips without a valid cached score as shards -> score (actor pool; loads
      the learned metrics once) -> <output_dir>/evaluation/<protocol>/<clip_id>.npz, one per clip
    driver: every row -> evaluation.parquet (one per dataset row) + evaluation.json (the benchmark)

A clip's scores are cached with the key of what made them (the clip's fingerprint, the protocol and
its settings, which learned metrics' weights were found): a second run scores only what changed,
and a run stopped halfway keeps every clip it finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from vp_ray.clip import outputs, records, runlog, workdir
from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.rows import DONE_BEFORE, FAILED
from vp_ray.config import Config, EvalConfig
from vp_ray.errors import ClipError, ConfigError
from vp_ray.evaluation.frames import authors_stride_indices, load_clip_frames, reference_path
from vp_ray.evaluation.learned import load_learned, pick_device
from vp_ray.evaluation.protocols import (
    Protocol,
    clip_means,
    frechet_distance,
    overall,
    protocol_for,
)
from vp_ray.evaluation.weights import find_weights
from vp_ray.runtime import todo
from vp_ray.runtime.manifest import _write_parquet

log = logging.getLogger("vp_ray")

CACHE_DIR = "evaluation"
VERSION = 1  # part of every cache key: bump when a metric's computation changes
SCORED, UNSCORABLE = "scored", "unscorable"
ID_COLUMNS = ["clip_id", "status", "reason", "frames", "reference", "notes"]
# What a scoring actor gets of each clip (the record, and the numbers of its meta.json).
ITEM_FIELDS = ["clip_id", "clip_dir", "video_path", "ground_truth_path", "prompt", "start_frame", "end_frame",
               "fps", "max_seconds", "dilate_size", "source_fps", "key"]


@dataclass
class Evaluation:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    parquet_path: Path | None = None
    json_path: Path | None = None
    interrupted: int = 0
    dry_run: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(row["status"] == SCORED for row in self.rows)


def cache_folder(cfg: Config) -> Path:
    return Path(cfg.output_dir) / CACHE_DIR / cfg.eval.protocol.value


def cache_key(cfg: Config, clip_fingerprint: str, weights: dict[str, Any]) -> str:
    """What decides a clip's scores: its result (fingerprint), the protocol and its settings, the
    run settings that pick its frames and hole, and which weights each learned metric had."""
    evaluation = cfg.eval
    blob = json.dumps([VERSION, clip_fingerprint, evaluation.protocol.value, evaluation.reference.value,
                       evaluation.dilate_size, evaluation.replace_gt, evaluation.max_frames,
                       cfg.dilate_size, cfg.resize_mode.value, cfg.target_fps,
                       {name: list(w.paths) for name, w in weights.items()}], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- one clip (actors)

def score_clip(item: dict[str, Any], cfg: Config, learned, protocol: Protocol) -> dict[str, Any]:
    """Score one finished clip and cache the result; returns what the cache holds."""
    frames = load_clip_frames(item, cfg)
    notes = []
    stride = authors_stride_indices(item["start_frame"], item["source_fps"], cfg.eval.down_sample_fps,
                                    len(frames.indices))
    if not np.array_equal(stride, frames.indices):
        step = max(1, int(item["source_fps"] // cfg.eval.down_sample_fps))
        notes.append(f"scored on the run's frames (picked by time at {item['source_fps']:g} fps); the authors' "
                     f"script takes every {step}th source frame")
    scores = protocol.score(frames, item["prompt"], learned, cfg.eval.replace_gt)
    summary = {"clip_id": item["clip_id"], "status": SCORED, "reason": "", "frames": len(frames.result),
               "reference": reference_path(item, cfg.eval.reference),
               "notes": "; ".join(notes + scores.notes + learned.problems), **clip_means(protocol, scores.frames),
               **scores.clip}
    arrays = {"summary": np.array(json.dumps(summary)), "per_frame": np.array(json.dumps(scores.frames)),
              "key": np.array(item["key"])}
    if scores.real_features is not None:
        arrays.update(real_features=scores.real_features, fake_features=scores.fake_features)
    path = cache_folder(cfg) / f"{item['clip_id']}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return summary


class ScoreClips:
    """The scoring actor: loads the learned metrics once, scores one clip per call."""

    def __init__(self, cfg: Config, log_dir: str | None = None):
        runlog.attach(log_dir, "evaluate")
        self.cfg = cfg
        self.protocol = protocol_for(cfg.eval.protocol)
        self.learned = load_learned(cfg.eval, pick_device(cfg.eval.device))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([self.score_one(item) for item in batch.to_dict("records")],
                            columns=["clip_id", "status", "reason"])

    def score_one(self, item: dict[str, Any]) -> dict[str, Any]:
        folder = cache_folder(self.cfg)
        stage = f"evaluate-{item['clip_id']}"
        with runlog.clip_context(item["clip_id"]):
            try:
                workdir.count_worker_attempt(folder, stage, self.cfg.retry.max_worker_deaths)
                score_clip(item, self.cfg, self.learned, self.protocol)
                return {"clip_id": item["clip_id"], "status": SCORED, "reason": ""}
            except Exception as error:  # noqa: BLE001 - every clip's error becomes its row
                reason = str(error) if isinstance(error, ClipError) else f"{type(error).__name__}: {error}"
                log.warning("evaluate: cannot score: %s", reason)
                return {"clip_id": item["clip_id"], "status": UNSCORABLE, "reason": reason}
            finally:  # only a worker that dies mid-clip leaves its count behind
                (folder / f"{stage}.attempts").unlink(missing_ok=True)


def read_cached(path: Path, key: str) -> dict[str, Any] | None:
    """A clip's cached scores if they were made with ``key`` (else None: score it again)."""
    try:
        with np.load(path) as cached:
            if str(cached["key"]) != key:
                return None
            summary = json.loads(str(cached["summary"]))
            if "real_features" in cached:
                summary["_features"] = (cached["real_features"], cached["fake_features"])
            return summary
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------- the driver

def classify(cfg: Config, plan: records.DatasetPlan, weights) -> tuple[list[dict], list[dict]]:
    """Every dataset row as a clip to score (an item) or a row saying why it cannot be."""
    from vp_ray.stages.lineup import run_context
    from vp_ray.stages.read import ReadRecords

    check = ReadRecords(cfg, plan, run_context(cfg, plan))  # the run's stages: its fingerprints
    failures = _run_failures(cfg.output_dir)
    unscorable, items = [], []
    for ragged in plan.ragged:
        unscorable.append(_unscorable(f"line-{ragged.line}", f"CSV line {ragged.line} is not a row "
                                      f"({ragged.fields} fields, the header has {ragged.expected})"))
    count, limit = 0, cfg.dataset.limit
    for batch in records.read_batches(plan.path, plan.format):
        for raw in batch.to_pylist():
            if 0 <= limit <= count:
                break
            count += 1
            row = check.read_one(raw)
            clip_id = row["clip_id"]
            if row["status"] == FAILED:
                unscorable.append(_unscorable(clip_id, f"bad record: {row['error']}"))
            elif row["status"] != DONE_BEFORE:
                unscorable.append(_unscorable(clip_id, _why_no_result(cfg.output_dir, clip_id, failures)))
            else:
                meta = outputs.read_meta(cfg.output_dir, clip_id)
                item = {k: row[k] for k in ITEM_FIELDS if k in row}
                item.update(clip_dir=str(outputs.clip_dir(cfg.output_dir, clip_id)),
                            source_fps=float(meta["source_fps"]),
                            key=cache_key(cfg, meta["fingerprint"], weights))
                items.append(item)
    return unscorable, items


def _unscorable(clip_id: str, reason: str) -> dict[str, Any]:
    return {"clip_id": clip_id, "status": UNSCORABLE, "reason": reason}


def _run_failures(output_dir: str) -> dict[str, str]:
    path = Path(output_dir) / "failures.parquet"
    if not path.is_file():
        return {}
    table = pd.read_parquet(path, columns=["clip_id", "failed_stage", "error"])
    return {r.clip_id: f"the run failed it at {r.failed_stage}: {r.error}" for r in table.itertuples()}


def _why_no_result(output_dir: str, clip_id: str, failures: dict[str, str]) -> str:
    if clip_id in failures:
        return failures[clip_id]
    if outputs.read_meta(output_dir, clip_id):
        return ("its result was made with other settings, or a file of it is missing (give task=evaluate "
                "the run's own dataset, model and overrides)")
    return f"no result in {outputs.clip_dir(output_dir, clip_id)} (not run yet?)"


def evaluate(cfg: Config, log_dir: str | None = None) -> Evaluation:
    """Score the finished run in ``cfg.output_dir``; ``log_dir``: where the scoring actors log."""
    from vp_ray.clip.records import plan_dataset
    from vp_ray.review.requeue import read_review

    # 1. What can be measured: the clips (with a review's edits, as the run that made them had them),
    # and the learned metrics whose weights are found.
    protocol = protocol_for(cfg.eval.protocol)
    review = read_review(cfg)
    plan = plan_dataset(cfg, review.edits, review.redo)
    weights = find_weights(cfg.eval)
    notices = [w.notice() for w in weights.values() if not w.found]
    for line in notices:
        log.warning("%s", line)
    unscorable, items = classify(cfg, plan, weights)
    folder = cache_folder(cfg)
    cached = {item["clip_id"]: read_cached(folder / f"{item['clip_id']}.npz", item["key"]) for item in items}
    pending = [item for item in items if cached[item["clip_id"]] is None]
    log.info("evaluation (%s) of %s: %d row(s); %d clip(s) to score, %d scored before, %d cannot be scored",
             protocol.name, cfg.output_dir, len(items) + len(unscorable), len(pending),
             len(items) - len(pending), len(unscorable))
    if cfg.dry_run:
        for row in unscorable[:5]:
            log.info("  cannot score %s: %s", row["clip_id"], row["reason"])
        return Evaluation([], {}, dry_run=True, notices=notices)

    # 2. Score what is not cached, on Ray.
    interrupted, failed = 0, {}
    if pending:
        folder.mkdir(parents=True, exist_ok=True)
        interrupted, failed = _score_on_ray(cfg, log_dir, pending, len(items) + len(unscorable),
                                            len(items) - len(pending))

    # 3. Every row, from the cache, and the benchmark's numbers.
    rows = list(unscorable)
    scored = []
    for item in items:
        summary = read_cached(folder / f"{item['clip_id']}.npz", item["key"])
        if summary is not None:
            scored.append(summary)
        else:
            rows.append(_unscorable(item["clip_id"], failed.get(
                item["clip_id"], "not scored: the evaluation was stopped (run it again to resume)")))
    # Weights found on the driver but not loadable by the actors: their rows say so; say it once here.
    problems = sorted({note for row in scored for note in row["notes"].split("; ") if ": not computed: " in note})
    for line in problems:
        log.warning("%s", line)
    notices += problems
    summary = benchmark(protocol, scored, len(items) + len(unscorable), notices)
    rows = [{k: v for k, v in row.items() if k != "_features"} for row in scored] + rows
    result = Evaluation(rows, summary, interrupted=interrupted, notices=notices)
    result.parquet_path, result.json_path = write_evaluation(cfg.output_dir, protocol, rows, summary)
    return result


def _score_on_ray(cfg: Config, log_dir: str | None, pending: list[dict], total: int,
                  already: int) -> tuple[int, dict[str, str]]:
    """Score ``pending`` clips with an actor pool; returns (the stopping signal or 0, unscorable reasons)."""
    import ray

    from vp_ray.runtime import console, graph
    from vp_ray.runtime.shards import read_shards

    graph.connect(cfg.cluster)
    evaluation = cfg.eval
    size = min(evaluation.actors or _pool_size(ray.cluster_resources(), evaluation), len(pending))
    console.quiet_ray_data(cfg.cluster.ray_progress_bars)
    ray.data.DataContext.get_current().execution_options.preserve_order = False
    shards = Path(cfg.output_dir) / CACHE_DIR / todo.TODO_DIR
    todo.remove_todo(shards.parent)
    shards.mkdir(parents=True)
    writer = todo.ShardWriter(shards)
    writer.add(pa.RecordBatch.from_pylist(pending))
    writer.close()
    status = console.StatusLine(total, already, cfg.cluster.status_every_s)
    failed: dict[str, str] = {}
    interrupted = 0
    try:
        with graph.sigterm_as_ctrl_c(), console.known_ray_lines_dropped():
            ds = read_shards(shards).repartition(target_num_rows_per_block=1)
            ds = ds.map_batches(ScoreClips, batch_size=1, batch_format="pandas",
                                fn_constructor_kwargs={"cfg": cfg, "log_dir": log_dir},
                                compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
                                num_cpus=evaluation.num_cpus, num_gpus=evaluation.num_gpus or None)
            for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                for row in batch.to_dict("records"):
                    if row["status"] != SCORED:
                        failed[row["clip_id"]] = row["reason"]
                    status.clip_finished(failed=row["status"] != SCORED)
    except KeyboardInterrupt as stop:
        interrupted = signal.SIGTERM if isinstance(stop, graph.Terminated) else signal.SIGINT
        log.warning("interrupted: the clips scored so far are kept; run the same command again to resume")
        ray.shutdown()
    finally:
        status.close()
        todo.remove_todo(shards.parent)
    return interrupted, failed


def _pool_size(resources: dict[str, float], evaluation: EvalConfig) -> int:
    """One actor per GPU (num_gpus > 0), else one per CPU but one, left to read the shards."""
    if evaluation.num_gpus:
        if resources.get("GPU", 0) < evaluation.num_gpus:
            raise ConfigError(f"eval.num_gpus={evaluation.num_gpus:g} but the Ray cluster has "
                              f"{resources.get('GPU', 0):g} GPU(s)")
        return int(resources["GPU"] // evaluation.num_gpus)
    return max(1, int(resources.get("CPU", 1) // evaluation.num_cpus) - 1)


def benchmark(protocol: Protocol, scored: list[dict[str, Any]], rows: int, notices: list[str]) -> dict[str, Any]:
    """evaluation.json: the benchmark's numbers and how they were had."""
    numbers = overall(protocol, scored)
    features = [row["_features"] for row in scored if "_features" in row]
    notes = []
    fvid = None
    if features and len(features) == len(scored):
        fvid, note = frechet_distance(np.stack([r for r, _ in features]), np.stack([f for _, f in features]))
        notes += [note] if note else []
    numbers["fvid"] = fvid
    for name, value in numbers.items():
        if value is not None and not math.isfinite(value):
            notes.append(f"{name} is {value} (a frame equal to its reference gives an infinite PSNR)")
            numbers[name] = None
    return {"protocol": protocol.name, "rows": rows, "scored": len(scored), "unscorable": rows - len(scored),
            "frames": int(sum(row["frames"] for row in scored)),
            "averaging": "over all frames of all clips (temporal consistency: over clips)" if protocol.frame_weighted
            else "over clips (each the mean of its frames)",
            "metrics": numbers, "not_computed": {line.split(":")[0]: line for line in notices}, "notes": notes}


def write_evaluation(output_dir: str, protocol: Protocol, rows: list[dict[str, Any]],
                     summary: dict[str, Any]) -> tuple[Path, Path]:
    columns = ID_COLUMNS + list(protocol.columns)
    table = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    for column in protocol.columns:
        table[column] = table[column].astype("float64")
    table["frames"] = table["frames"].astype("Int64")
    table = table.sort_values("clip_id", kind="stable").reset_index(drop=True)
    table.insert(1, "protocol", protocol.name)
    parquet = _write_parquet(table, Path(output_dir) / "evaluation.parquet")
    json_path = Path(output_dir) / "evaluation.json"
    with atomic_path(json_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return parquet, json_path


def format_evaluation(result: Evaluation, seconds: float) -> str:
    """The console's summary of an evaluation."""
    summary = result.summary
    lines = [(f"evaluation ({summary['protocol']}): {summary['scored']} of {summary['rows']} clip(s) scored, "
              f"{summary['frames']} frames, in {seconds:.1f} s")]
    shown = [f"{name} {value:.4f}" for name, value in summary["metrics"].items() if value is not None]
    lines.append("  " + ", ".join(shown) if shown else "  no metric could be computed")
    lines += [f"  {line}" for line in summary["notes"]]
    if summary["unscorable"]:
        lines.append(f"  {summary['unscorable']} clip(s) could not be scored: see the reason column of "
                     f"{result.parquet_path}")
    lines.append(f"  -> {result.parquet_path}, {result.json_path}")
    return "\n".join(lines)
