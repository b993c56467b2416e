"""The ``classic`` inpainter: no weights, CPU only, a baseline.

Each masked pixel takes its value from the temporally nearest frame where that pixel is
not masked. This assumes a static camera (the background does not move between frames);
pixels that are masked in every frame are filled by ``cv2.inpaint`` from their surroundings.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vp_ray.models import Progress

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def nearest_visible_frame(masks: np.ndarray) -> np.ndarray:
    """For every (t, y, x): the index of the nearest frame where (y, x) is visible, or -1 if none."""
    count = len(masks)
    visible = ~masks
    big = np.int64(10 * count + 10)
    frame_index = np.arange(count)[:, None, None]
    # Last visible frame at or before t, and first visible frame at or after t (two sweeps).
    before = np.where(visible, frame_index, -big)
    before = np.maximum.accumulate(before, axis=0)
    after = np.where(visible, frame_index, big)
    after = np.minimum.accumulate(after[::-1], axis=0)[::-1]
    pick = np.where(frame_index - before <= after - frame_index, before, after)
    return np.where((pick >= 0) & (pick < count), pick, -1)


class ClassicInpainter:
    def __init__(self, model_cfg: dict[str, Any]):
        self.radius = int(model_cfg.get("inpaint_radius", 5))
        method = model_cfg.get("inpaint_method", "telea")
        if method not in METHODS:
            raise ValueError(f"inpaint_method {method!r} is not one of {sorted(METHODS)}")
        self.method = METHODS[method]

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None) -> np.ndarray:
        masks = masks.astype(bool)
        source = nearest_visible_frame(masks)
        t, y, x = np.nonzero(masks)
        result = frames.copy()
        fill_from = source[t, y, x]
        known = fill_from >= 0
        result[t[known], y[known], x[known]] = frames[fill_from[known], y[known], x[known]]
        never_visible = masks & (source < 0)
        for i in range(len(frames)):
            if never_visible[i].any():
                result[i] = cv2.inpaint(result[i], never_visible[i].astype(np.uint8), self.radius, self.method)
            if progress:
                progress(i + 1, len(frames))
        return result

    def reduce_memory(self) -> bool:
        return False
