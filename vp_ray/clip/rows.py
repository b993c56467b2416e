"""The one row schema that flows through every stage of the pipeline.

A row is a flat dict of small scalars: the clip record (what to do) plus its status
(what happened so far). Heavy data (frames, masks, results) lives in files under the
clip's work folder and only their paths travel, so Ray's object store stays small.
Every stage returns every column, for ok and failed rows alike, so all blocks share
one Arrow schema.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from vp_ray.clip import runlog
from vp_ray.clip.records import ClipRecord
from vp_ray.errors import ClipError

log = logging.getLogger(__name__)

PENDING, OK, FAILED, DONE_BEFORE = "pending", "ok", "failed", "done_before"
# A finished clip, its files written, with a quality score over its threshold (``qa.max_*``).
SUSPECT = "suspect"


@dataclass
class ClipStatus:
    """What happened to the clip so far. Filled in by the stages."""

    status: str = PENDING
    failed_stage: str = ""
    error_type: str = ""
    error: str = ""
    warnings: str = ""
    # Folder holding the clip's intermediate files (prepared frames, masks, result).
    work_dir: str = ""
    output_dir: str = ""
    source_width: int = 0
    source_height: int = 0
    source_fps: float = 0.0
    num_frames: int = 0
    out_fps: float = 0.0
    # Duration of result.mp4 (num_frames / out_fps), as a video player shows it.
    seconds: float = 0.0
    mask_area: float = 0.0
    effective_seed: int = -1
    effective_max_seconds: float = 0.0
    attempts: int = 0
    degraded: bool = False
    peak_gpu_mem_gb: float = 0.0
    # The inpainter's GPU memory plan for the clip's last attempt ("" for models without one).
    memory_plan: str = ""
    # The attention kernel its denoising ran with: "cudnn", "flash", ... or "pytorch" (PyTorch's own
    # order); "" for models without one.
    attention_backend: str = ""
    # Whether the inpainter ran its blocks compiled, and why ("on: auto, 200 steps per actor >= 55";
    # "" for models that do not compile).
    compiled: str = ""
    # Where the clip was segmented and inpainted: "node=<id> gpu=<ids> pid=<pid>" of the actor.
    segment_worker: str = ""
    inpaint_worker: str = ""
    time_prepare_s: float = 0.0
    time_segment_s: float = 0.0
    time_inpaint_s: float = 0.0
    time_write_s: float = 0.0
    # Denoising steps of the clip's last attempt: the median step and the slowest (a step much
    # slower than the median is time the GPU spent waiting for its host process).
    step_s_median: float = 0.0
    step_s_max: float = 0.0
    # Wall-clock (Unix seconds) when the inpainting actor took the clip and gave it back.
    inpaint_started: float = 0.0
    inpaint_finished: float = 0.0
    # The clip's GPU timeline (Unix seconds, as the GPU ran it; 0: not timed; vp_ray/models/timeline.py):
    # its first GPU work, its first denoising step, the end of its last, its frames back on the host.
    # Between consecutive clips of one actor they give the GPU's idle time (vp_ray/runtime/gpu_idle.py).
    gpu_started: float = 0.0
    denoise_started: float = 0.0
    denoise_finished: float = 0.0
    gpu_finished: float = 0.0
    # The clip's work outside the denoising loop, in seconds. On the host: reading its arrays, preparing
    # them (a short clip mirrored, the object blacked out, frame 0 filled; FLUX.1-Fill's fill is GPU
    # time), saving the result. On the GPU: T5, the uploads and VAE encodes, the decode (with the
    # windows' latents joined), the frames to uint8 and back to the host.
    time_load_s: float = 0.0
    time_condition_s: float = 0.0
    time_prompt_s: float = 0.0
    time_encode_s: float = 0.0
    time_decode_s: float = 0.0
    time_convert_s: float = 0.0
    time_save_s: float = 0.0
    # Quality scores that need no ground truth (vp_ray/evaluation/qa.py; NaN: not measured), and the
    # short names of those over their qa.max_* thresholds ("seam,object"): then the status is suspect.
    qa_drift: float = math.nan
    qa_flicker: float = math.nan
    qa_seam: float = math.nan
    qa_object: float = math.nan
    qa_flags: str = ""


RECORD_COLUMNS = [f.name for f in dataclasses.fields(ClipRecord)]
STATUS_COLUMNS = [f.name for f in dataclasses.fields(ClipStatus)]
ROW_COLUMNS = RECORD_COLUMNS + STATUS_COLUMNS


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ClipRecord) + dataclasses.fields(ClipStatus)
             if f.default is not dataclasses.MISSING}
_DEFAULTS.update(clip_id="", video_path="")


def coerce(row: dict[str, Any]) -> dict[str, Any]:
    """Undo Arrow's round trip: nulls (e.g. NaN floats stored as null) back to the field defaults."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = _DEFAULTS.get(key, value)
        out[key] = value.item() if hasattr(value, "item") and not isinstance(value, str) else value
    return out


def clip_dilate_size(row: dict[str, Any], run_dilate_size: int) -> int:
    """The dilation a clip's masks get: its record's own, else the run's."""
    given = row.get("dilate_size", -1)
    return run_dilate_size if given is None or given < 0 else int(given)


def clip_seconds(num_frames: int, fps: float) -> float:
    """A clip's duration as a player shows it: ``num_frames`` frames of ``1 / fps`` seconds each."""
    return round(num_frames / fps, 3)


def new_row(record: ClipRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(record), **dataclasses.asdict(ClipStatus())}


def failed_row(row: dict[str, Any], stage: str, error: BaseException) -> dict[str, Any]:
    """Mark ``row`` failed at ``stage``; the message names the clip and the cause."""
    kind = error.kind if isinstance(error, ClipError) else type(error).__name__
    message = str(error) or type(error).__name__
    if not isinstance(error, ClipError):
        # An unexpected exception: keep where it came from, for whoever debugs it.
        frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
        where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
        message = f"{type(error).__name__}: {message}{where}"
    return {**row, "status": FAILED, "failed_stage": stage, "error_type": kind,
            "error": f"clip {row.get('clip_id', '?')!r}: {message}"}


def add_warning(row: dict[str, Any], warning: str) -> None:
    row["warnings"] = f"{row['warnings']}; {warning}" if row["warnings"] else warning


def run_stage(batch: pd.DataFrame, stage: str, fn: Callable[[dict], dict],
              timing_column: str | None = None, acts_on: Callable[[dict], bool] = lambda row: True) -> pd.DataFrame:
    """Apply ``fn`` to each pending row it ``acts_on``; any exception becomes that row's failure.

    Rows that failed earlier (or were done in an earlier run), and rows the stage does not act on,
    pass through untouched. Exceptions never escape: one bad clip must not fail Ray's whole dataset.
    """
    out = []
    for row in map(coerce, batch.to_dict("records")):
        if row["status"] == PENDING and acts_on(row):
            start = time.perf_counter()
            with runlog.clip_context(row["clip_id"]):
                runlog.TRACE.info("%s: started", stage)
                try:
                    row = fn(dict(row))
                except Exception as error:  # noqa: BLE001 - every clip error becomes a row
                    row = failed_row(row, stage, error)
                    # The clip's work files stay until the last stage: if this worker dies before
                    # the failed row is passed on, Ray runs the stage again on the same files.
                    log.warning("%s: failed: %s: %s", stage, row["error_type"], row["error"])
                if timing_column:
                    row[timing_column] = round(time.perf_counter() - start, 3)
                if row["status"] != FAILED:
                    runlog.TRACE.info("%s: done in %.2f s", stage, time.perf_counter() - start)
        out.append(row)
    return rows_to_frame(out)


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    for f in dataclasses.fields(ClipRecord) + dataclasses.fields(ClipStatus):
        frame[f.name] = frame[f.name].astype({"str": object, "int": "int64", "float": "float64",
                                              "bool": "bool"}[f.type])
    return frame
