"""The ``classic`` inpainter: no weights, CPU only, a baseline.

Each masked pixel takes its value from the temporally nearest frame where that pixel is
not masked. This assumes a static camera: the background behind the object is the same in
every frame, so a pixel seen once is known everywhere. Pixels masked in every frame were
never seen; ``cv2.inpaint`` fills them from their surroundings.
"""

from __future__ import annotations

import cv2
import numpy as np

from vp_ray.config import ClassicModelConfig, InpaintMethod
from vp_ray.models import Inpainter, Progress

METHODS = {InpaintMethod.telea: cv2.INPAINT_TELEA, InpaintMethod.ns: cv2.INPAINT_NS}


def nearest_visible_frame(masks: np.ndarray) -> np.ndarray:
    """For every (t, y, x): the nearest frame where (y, x) is visible (earlier one on ties), or -1."""
    count = len(masks)
    visible = ~masks
    frame = np.arange(count, dtype=np.int32)[:, None, None]
    # Last visible frame at or before t, and first visible frame at or after t: two running sweeps.
    before = np.maximum.accumulate(np.where(visible, frame, np.int32(-2 * count)), axis=0)
    after = np.minimum.accumulate(np.where(visible, frame, np.int32(3 * count))[::-1], axis=0)[::-1]
    nearest = np.where(frame - before <= after - frame, before, after)
    return np.where((nearest >= 0) & (nearest < count), nearest, -1)


class ClassicInpainter(Inpainter):
    def __init__(self, model_cfg: ClassicModelConfig):
        self.radius = int(model_cfg.inpaint_radius)
        self.method = METHODS[model_cfg.inpaint_method]

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        """``progress`` is not called: there are no denoising steps, and a clip takes milliseconds."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or masks.shape != frames.shape[:3]:
            raise ValueError(f"expected uint8 frames [T, H, W, 3] and masks [T, H, W], got "
                             f"{frames.dtype} {frames.shape} and {masks.shape}")
        masks = masks.astype(bool)
        source = nearest_visible_frame(masks)
        t, y, x = np.nonzero(masks & (source >= 0))
        result = frames.copy()
        result[t, y, x] = frames[source[t, y, x], y, x]
        never_seen = masks & (source < 0)
        for i in range(len(frames)):
            if never_seen[i].any():
                # cv2.inpaint changes only the pixels under its mask: the rest stays bit-identical.
                result[i] = cv2.inpaint(result[i], never_seen[i].astype(np.uint8), self.radius, self.method)
        return result

    def reduce_memory(self) -> bool:
        return False

    def release_memory(self) -> None:
        pass
