"""A finished clip's frames as the evaluation compares them: the result, the reference, the hole.

The reference is the video the result is judged against: the clip's ``ground_truth_path`` where the
record has one (the clean background, e.g. the demo clips), else the source video, as the authors
compare against their source (``eval.reference``). It is read at the source frames the run used
(the run's own frame selection, from the record and the run's settings), at the source's size, then
placed on the result's frame as the run placed its inputs (``resize_mode``; with ``stretch``, as the
authors' video processor resizes: PIL Lanczos).

The hole is the clip's object mask from its ``all_masks.npz`` (the source's size and frame numbers),
dilated by ``eval.dilate_size`` source pixels with a square kernel, then resized as the authors' mask
processor does (Lanczos, kept where it reaches half).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vp_ray.clip import masks as mask_io
from vp_ray.clip import video
from vp_ray.clip.rows import clip_dilate_size
from vp_ray.config import Config, EvalReference, Preprocess
from vp_ray.errors import ClipError


@dataclass
class ClipFrames:
    result: np.ndarray      # uint8 [T, H, W, 3], result.mp4 as written
    reference: np.ndarray   # uint8 [T, H, W, 3], on the result's frame
    hole: np.ndarray        # bool [T, H, W]
    indices: np.ndarray     # source frame numbers of the T frames


def reference_path(row: dict[str, Any], reference: EvalReference) -> str:
    """The video to compare against: ``auto`` takes the ground truth where the record names one."""
    if reference is EvalReference.source or (reference is EvalReference.auto and not row["ground_truth_path"]):
        return row["video_path"]
    if not row["ground_truth_path"]:
        raise ClipError("eval.reference=ground_truth but the record has no ground_truth_path", kind="evaluate")
    return row["ground_truth_path"]


def load_clip_frames(row: dict[str, Any], cfg: Config) -> ClipFrames:
    """The frames of one finished clip (``row``: its record and its meta.json's numbers)."""
    evaluation = cfg.eval
    clip_dir = Path(row["clip_dir"])
    result, _ = video.read_video(clip_dir / "result.mp4")
    if evaluation.max_frames is not None:
        result = result[:evaluation.max_frames]
    # The run's frame selection, repeated: the same record and settings pick the same frames.
    max_seconds = cfg.max_seconds if math.isnan(row["max_seconds"]) else row["max_seconds"]
    clip = video.read_clip(reference_path(row, evaluation.reference), start_frame=row["start_frame"],
                           end_frame=row["end_frame"], fps=None if math.isnan(row["fps"]) else row["fps"],
                           target_fps=cfg.target_fps, max_seconds=max_seconds)
    if len(clip.frames) < len(result):
        raise ClipError(f"the reference has {len(clip.frames)} frame(s) at the run's frame rate, the result "
                        f"{len(result)}", kind="evaluate")
    reference, indices = clip.frames[:len(result)], clip.indices[:len(result)]
    source_hw = reference.shape[1:3]
    objects = mask_io.load_npz_masks(clip_dir / "all_masks.npz", 1, indices, source_hw)
    placement = video.placement_for(*source_hw, *result.shape[1:3], cfg.resize_mode)
    dilate = clip_dilate_size(row, cfg.dilate_size) if evaluation.dilate_size is None else evaluation.dilate_size
    hole = video.fit_masks(mask_io.dilate_masks(objects, dilate), placement, Preprocess.reference)
    return ClipFrames(result=result, reference=video.fit_frames(reference, placement, Preprocess.reference),
                      hole=hole, indices=indices)


def authors_stride_indices(start_frame: int, source_fps: float, down_sample_fps: float, count: int) -> np.ndarray:
    """The source frames the authors' script takes: every ``int(fps // down_sample_fps)``-th from
    ``start_frame`` (a 30 fps source gives every 3rd frame: 10 per second)."""
    step = max(1, int(source_fps // down_sample_fps))
    return start_frame + step * np.arange(count)


# ----------------------------------------------------------------------------- the authors' conversions

def _reference_round_trip() -> np.ndarray:
    """What the authors' frame preparation does to each 8-bit value of the reference.

    Their video processor turns a frame into float32 ``v / 255``, normalizes it to ``2x - 1`` and
    back to ``x * 0.5 + 0.5``; the frame is then multiplied by 255 and cast to uint8, which truncates.
    The float32 round trip lands just below the integer for 1..63, so those values come back one
    lower: even a perfect result differs from the reference there.
    """
    values = torch.arange(256, dtype=torch.float32) / 255.0
    values = ((2.0 * values - 1.0) * 0.5 + 0.5).clamp(0, 1)
    return (values.numpy() * 255).astype(np.uint8)


REFERENCE_ROUND_TRIP = _reference_round_trip()


def vpbench_reference(frames: np.ndarray) -> np.ndarray:
    """The reference as the authors' script holds it when it scores (values 1..63 one lower)."""
    return REFERENCE_ROUND_TRIP[frames]


def replace_gt(result: np.ndarray, reference: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The authors' ``--replace_gt`` composite: the result inside the hole, the reference outside."""
    return np.where(hole[..., None], result, reference)
