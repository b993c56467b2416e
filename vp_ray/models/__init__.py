"""Inpainters: what the inpainting stage calls, one loaded instance per actor.

Every inpainter has the same small surface (see ``Inpainter``) so stages never know
which model runs. ``load_inpainter`` picks the implementation by ``model.name``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import numpy as np

Progress = Optional[Callable[[int, int], None]]


class Inpainter(Protocol):
    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None) -> np.ndarray:
        """Fill the masked pixels.

        frames: uint8 [T, H, W, 3] RGB at the model's size; masks: bool [T, H, W], True where
        the object is (already dilated). Returns uint8 [T, H, W, 3].
        """

    def reduce_memory(self) -> bool:
        """Switch on the next cheaper memory saver (e.g. VAE tiling); False when none is left."""


# VideoPainter's window: the I2V backbone's 13 latent frames. Kept here, free of torch and
# diffusers, because the CPU stages need it and should not pay seconds of imports per worker.
WINDOW_FRAMES = 49


def usable_frames(model_cfg: dict[str, Any], num_frames: int) -> int:
    """How many of ``num_frames`` frames the model processes in one call: everything for the
    classic inpainter; up to 49 for VideoPainter and, without ``pad_short_clips``, a 4k+1 count."""
    if model_cfg["name"] not in ("videopainter", "tiny"):
        return num_frames
    count = min(num_frames, WINDOW_FRAMES)
    if model_cfg["pad_short_clips"]:
        return count
    return count - (count - 1) % 4 if count >= 1 else 0


def load_inpainter(model_cfg: dict[str, Any]) -> Inpainter:
    name = model_cfg["name"]
    if name == "classic":
        from vp_ray.models.classic import ClassicInpainter

        return ClassicInpainter(model_cfg)
    if name == "faulty":
        from vp_ray.models.faulty import FaultyInpainter

        return FaultyInpainter(model_cfg)
    if name in ("videopainter", "tiny"):
        from vp_ray.models.videopainter import VideoPainterInpainter

        return VideoPainterInpainter(model_cfg)
    raise ValueError(f"unknown model {name!r}: expected classic, videopainter, tiny or faulty")
