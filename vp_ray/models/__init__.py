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


def usable_frames(model_cfg: dict[str, Any], num_frames: int) -> int:
    """How many of ``num_frames`` frames the model processes in one call."""
    if model_cfg["name"] in ("videopainter", "tiny"):
        from vp_ray.models.videopainter import usable_frames as vp_usable_frames

        return vp_usable_frames(model_cfg, num_frames)
    return num_frames


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
