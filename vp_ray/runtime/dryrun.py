"""``dry_run=true``: what a run would do, without Ray or models, leaving nothing behind.

Every row (read once, into ``vp_ray.runtime.todo``'s shards, removed once the plan is printed) goes through
the first stage's checks (the record, duplicate ids, clips complete from an earlier run) and the
existence of its local video and mask files; the plan then names the resources the run would ask Ray
for and an estimate of its GPU time from measured seconds per clip.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import DONE_BEFORE, FAILED
from vp_ray.config import Config, MemoryMode, ModelConfig
from vp_ray.runtime import todo

# VideoPainter on one H200, bf16, 49x480x720, CFG 6, resident (bench/RESULTS.md, "Closing the
# GPU's gaps"): 1.885 s per denoising step, 103.1 s per clip at 50 steps -> 8.85 s per clip
# besides the steps (prompt, VAE encodes and decode). Model CPU offload: 1.19x per clip.
VIDEOPAINTER_STEP_S = 1.885
VIDEOPAINTER_FIXED_S = 8.85
OFFLOAD_FACTOR = 1.19
SHOWN_FAILURES = 10


def seconds_per_clip(model: ModelConfig) -> float | None:
    """Measured GPU seconds for one 49-frame clip with this model config; None for CPU models."""
    if model.name not in ("videopainter",):
        return None
    seconds = VIDEOPAINTER_FIXED_S + model.num_inference_steps * VIDEOPAINTER_STEP_S
    offloaded = model.memory_mode in (MemoryMode.model_offload, MemoryMode.sequential_offload)
    return seconds * (OFFLOAD_FACTOR if offloaded else 1.0)


def missing_file(row: dict[str, Any]) -> str | None:
    """The first local input file of ``row`` that does not exist (remote URIs are not checked)."""
    for column in ("video_path", "mask_path"):
        path = row.get(column) or ""
        if path and "://" not in path and not os.path.exists(path):
            return f"{column} {path!r} does not exist"
    return None


def check_rows(cfg: Config, plan: DatasetPlan) -> tuple[Counter, list[tuple[str, str]]]:
    """(counts by outcome: to_run, done_before, will_fail; the failures as (clip_id, why)), of the rows
    ``todo.write_todo`` read (the dataset is read once)."""
    from vp_ray.stages.lineup import run_context
    from vp_ray.stages.read import ReadRecords, ragged_row_failure

    check = ReadRecords(cfg, plan, run_context(cfg, plan))
    counts: Counter = Counter(will_fail=len(plan.ragged))
    failures = [(row["clip_id"], row["error"]) for row in
                (ragged_row_failure(ragged, plan.columns, cfg.dataset.layout) for ragged in plan.ragged)]
    for raw in todo.todo_rows(plan):
        row = check.read_one(raw)
        why = row["error"] if row["status"] == FAILED else missing_file(row)
        if why:
            counts["will_fail"] += 1
            failures.append((row["clip_id"], why))
        else:
            counts["done_before" if row["status"] == DONE_BEFORE else "to_run"] += 1
    return counts, failures


def resources(cfg: Config, plan: DatasetPlan) -> list[str]:
    model, cluster, sam2 = cfg.model, cfg.cluster, cfg.sam2
    lines = []
    if not cfg.mask_only:
        actors = cluster.inpaint_actors or ("one per GPU" if model.num_gpus else 1)
        lines.append(f"inpainting actors ({model.name}): {actors}, each {model.num_gpus:g} GPU, "
                     f"{model.num_cpus:g} CPU")
    if plan.needs_segmentation:
        lines.append(f"SAM2 actors: {sam2.pool_size} (placement {sam2.placement.value}), each "
                     f"{sam2.num_cpus:g} CPU")
    lines.append(f"CPU tasks: up to {cluster.prepare_concurrency} preparing, "
                 f"{cluster.write_concurrency} writing")
    return lines


def plan_text(cfg: Config, plan: DatasetPlan) -> str:
    counts, failures = check_rows(cfg, plan)
    lines = [f"dry run: {plan.total} row(s) in {plan.path}" + (f" (limit {cfg.dataset.limit})"
                                                                if cfg.dataset.limit >= 0 else ""),
             f"  to run: {counts['to_run']}; complete from an earlier run: {counts['done_before']}; "
             f"will fail the checks: {counts['will_fail']}"]
    for clip_id, why in failures[:SHOWN_FAILURES]:
        lines.append(f"    {clip_id}: {why[:200]}")
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"    ... and {len(failures) - SHOWN_FAILURES} more")
    lines.append("  resources asked of Ray:")
    lines += [f"    {line}" for line in resources(cfg, plan)]
    per_clip = None if cfg.mask_only else seconds_per_clip(cfg.model)
    if per_clip is None:
        lines.append("  estimate: no GPU time (CPU model or mask-only run)")
    else:
        hours = counts["to_run"] * per_clip / 3600
        lines.append(f"  estimate: {hours:.2f} GPU-hours ({per_clip:.0f} s per clip of 49 frames at "
                     f"{cfg.model.num_inference_steps} steps, measured on an H200; bench/RESULTS.md)")
    lines.append(f"  output: {cfg.output_dir} (nothing written: dry run)")
    return "\n".join(lines)
