"""The GPU's idle time between clips, per inpainting actor, from the clips' rows.

Each clip's row holds its GPU timeline (``gpu_started``, ``denoise_started``, ``denoise_finished``,
``gpu_finished``: wall-clock times as the GPU ran them, ``vp_ray.models.timeline``). For two clips
one after the other on one actor (``inpaint_worker``: node, GPU and process):

* **GPU idle** is the time from the first clip's frames back on the host to the second clip's first
  GPU work: the GPU has nothing of this actor's to do (receiving the next clip, reading and preparing
  its arrays, saving the last result happen there unless they overlap the GPU's work);
* **between loops** is the time from the first clip's last denoising step to the second's first:
  the GPU idle plus the work around the loop (decode, conversion, T5, VAE encodes);
* **waiting for the clip** is the part of the GPU idle before the second clip reached the actor at
  all (the stages before inpainting did not keep up): no overlap inside the actor can hide it.

Rows without a timeline (models that keep none, clips done by an earlier run) are left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

# What ``actor_gaps`` reads of a row.
TIMELINE_COLUMNS = ("inpaint_worker", "inpaint_started", "inpaint_finished", "gpu_started", "denoise_started",
                    "denoise_finished", "gpu_finished")
# Seconds of a clip's work outside the denoising loop, as the rows name them (``vp_ray.clip.rows``).
HOST_PARTS = ("time_load_s", "time_condition_s", "time_save_s")
GPU_PARTS = ("time_prompt_s", "time_encode_s", "time_decode_s", "time_convert_s")


@dataclass
class ActorGaps:
    """One actor's clips in the order the GPU ran them, and the gaps between them (seconds)."""

    worker: str
    clips: list[dict[str, Any]] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    between_loops: list[float] = field(default_factory=list)
    waiting_for_clip: list[float] = field(default_factory=list)
    # From one call given back to Ray to the next call started (negative: the calls overlapped).
    handover: list[float] = field(default_factory=list)


def actor_gaps(rows: Iterable[dict[str, Any]]) -> dict[str, ActorGaps]:
    """Per actor (``inpaint_worker``), the gaps between its timed clips."""
    actors: dict[str, ActorGaps] = {}
    for row in rows:
        if (row.get("gpu_started") or 0) > 0 and row.get("inpaint_worker"):
            actors.setdefault(row["inpaint_worker"], ActorGaps(row["inpaint_worker"])).clips.append(row)
    for actor in actors.values():
        actor.clips.sort(key=lambda row: row["gpu_started"])
        for before, after in pairwise(actor.clips):
            idle = after["gpu_started"] - before["gpu_finished"]
            actor.idle.append(idle)
            actor.waiting_for_clip.append(max(0.0, min(idle, after["inpaint_started"] - before["gpu_finished"])))
            actor.between_loops.append(after["denoise_started"] - before["denoise_finished"])
            actor.handover.append(after["inpaint_started"] - before["inpaint_finished"])
    return actors


def median_and_max(values: list[float]) -> tuple[float, float] | None:
    return (statistics.median(values), max(values)) if values else None


def outside_loop(clips: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per clip of each part of the work outside the loop (``HOST_PARTS``, ``GPU_PARTS``)."""
    return {part: statistics.median(float(row.get(part) or 0.0) for row in clips)
            for part in HOST_PARTS + GPU_PARTS} if clips else {}


def idle_gaps(frame: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The GPU idle gaps of ``actor_gaps`` (seconds, all actors) and how many actors had timed clips,
    from a table with ``TIMELINE_COLUMNS``: column arithmetic, no row objects, so that the end of a
    run of 100,000 clips does not make one dict per clip (~90 MiB for a moment)."""
    if frame.empty or not {"inpaint_worker", "gpu_started", "gpu_finished"} <= set(frame.columns):
        return np.empty(0), 0
    worker = frame["inpaint_worker"].fillna("").astype(str)
    started = pd.to_numeric(frame["gpu_started"], errors="coerce").fillna(0.0)
    timed = pd.DataFrame({"worker": worker, "started": started,
                          "finished": pd.to_numeric(frame["gpu_finished"], errors="coerce").fillna(0.0)})
    timed = timed[(timed.started > 0) & (timed.worker != "")].sort_values(["worker", "started"], kind="stable")
    idle = timed.started - timed.groupby("worker", sort=False).finished.shift()
    return idle.dropna().to_numpy(dtype=float), int(timed.worker.nunique())


def idle_summary(frame: pd.DataFrame) -> str:
    """One line for a run's summary: "0.01 s median, 0.03 s max (7 gaps, 2 actors)"; "" without gaps."""
    idle, actors = idle_gaps(frame)
    if not idle.size:
        return ""
    return (f"{float(np.median(idle)):.2f} s median, {float(idle.max()):.2f} s max "
            f"({idle.size} gap{'s' * (idle.size != 1)}, {actors} actor{'s' * (actors != 1)})")
