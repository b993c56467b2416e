"""The run's metrics, exported through Ray (``ray.util.metrics``) to every node's Prometheus
endpoint, and so to the dashboard's metrics view and Grafana.

Recorded on the driver from each clip's final row as the ledger takes it: every clip counts
exactly once, whichever worker ran it. Ray prefixes the names with ``ray_`` (``ray_vp_ray_clips_total``).
"""

from __future__ import annotations

from typing import Any

from vp_ray.clip.rows import DONE_BEFORE, FAILED, SUSPECT

STAGES = ("prepare", "segment", "inpaint", "write")
# Seconds: from a light stage's tenths to a long clip's minutes.
STAGE_BOUNDARIES = [0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800]
STEP_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 6, 10]


class RunMetrics:
    def __init__(self, model: str):
        from ray.util.metrics import Counter, Gauge, Histogram

        self.model = model
        self.clips = Counter(
            "vp_ray_clips", description="Clips finished: outcome ok | failed | done_before (resumed), plus "
            "retried (needed more than one attempt), degraded (shortened after an OOM) and suspect (a quality "
            "score over its threshold)",
            tag_keys=("outcome", "stage", "model", "error_kind"))
        self.stage_seconds = Histogram(
            "vp_ray_stage_seconds", description="Seconds one clip spent in a stage",
            boundaries=STAGE_BOUNDARIES, tag_keys=("stage", "model"))
        self.step_seconds = Histogram(
            "vp_ray_denoise_step_seconds", description="Median denoising step of each clip",
            boundaries=STEP_BOUNDARIES, tag_keys=("model",))
        self.frames_per_second = Gauge(
            "vp_ray_inpaint_frames_per_second", description="Frames per second of inpainting, last clip of "
            "each actor", tag_keys=("worker", "model"))
        self.gpu_memory = Gauge(
            "vp_ray_gpu_memory_peak_gib", description="Peak GPU memory of the last clip, per inpainting actor",
            tag_keys=("worker", "model"))
        self.waiting = Gauge(
            "vp_ray_clips_waiting", description="Clips in or waiting for a stage (from <output_dir>/.work)",
            tag_keys=("stage",))

    def record(self, row: dict[str, Any]) -> None:
        """Count one clip's final row."""
        model = self.model
        if row["status"] == FAILED:
            self.clips.inc(tags={"outcome": "failed", "stage": row["failed_stage"], "model": model,
                                 "error_kind": row["error_type"]})
            return
        if row["status"] == DONE_BEFORE:
            self.clips.inc(tags={"outcome": "done_before", "stage": "", "model": model, "error_kind": ""})
            return
        self.clips.inc(tags={"outcome": "ok", "stage": "", "model": model, "error_kind": ""})
        for flag, outcome in ((row.get("attempts", 0) > 1, "retried"), (row.get("degraded"), "degraded")):
            if flag:
                self.clips.inc(tags={"outcome": outcome, "stage": "inpaint", "model": model, "error_kind": "oom"})
        if row["status"] == SUSPECT:
            self.clips.inc(tags={"outcome": "suspect", "stage": "write", "model": model,
                                 "error_kind": row.get("qa_flags") or ""})
        for stage in STAGES:
            seconds = row.get(f"time_{stage}_s") or 0.0
            if seconds > 0:
                self.stage_seconds.observe(seconds, tags={"stage": stage, "model": model})
        if row.get("step_s_median"):
            self.step_seconds.observe(row["step_s_median"], tags={"model": model})
        worker = row.get("inpaint_worker") or ""
        if worker and row.get("time_inpaint_s"):
            tags = {"worker": worker, "model": model}
            self.frames_per_second.set(row["num_frames"] / row["time_inpaint_s"], tags=tags)
            self.gpu_memory.set(row.get("peak_gpu_mem_gb") or 0.0, tags=tags)

    def set_waiting(self, waiting: dict[str, int]) -> None:
        for stage, count in waiting.items():
            self.waiting.set(count, tags={"stage": stage})
