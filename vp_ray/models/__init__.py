"""Inpainters and the model registry: what the inpainting stage calls, one loaded instance per actor.

Every inpainter has the same small surface (``Inpainter``) so stages never know which model runs.
``MODELS`` is the one place that knows the models: adding one is a module with its inpainter, a
config dataclass in ``vp_ray.config``, an entry here and a YAML file under ``conf/model/``.

This module imports neither torch nor diffusers: the CPU stages use the frame rules below, and a
fresh Ray worker should not pay seconds of imports for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np

from vp_ray.config import (
    ClassicModelConfig,
    FaultyModelConfig,
    FirstFrameFill,
    ModelConfig,
    SimModelConfig,
    VideoPainterModelConfig,
)
from vp_ray.errors import ConfigError

Progress = Optional[Callable[[int, int], None]]


class Inpainter(Protocol):
    """What the inpainting stage calls. An inpainter that plans its GPU memory also has a
    ``memory_plan`` attribute naming the plan in effect (e.g. "text_encoder_offload + large VAE
    tiles"); the stage records it in each clip's row, and models without one leave it out. Likewise
    ``attention_backend``, the attention kernel its clips run with (vp_ray/models/attention_backend.py),
    and ``compiled``, whether its blocks run compiled and why ("on: auto, 200 steps per actor >= 55").

    An inpainter that subclasses this protocol gets its defaults (``last_warnings``: none)."""

    # What the last call wants its clip's row to warn about (e.g. a prompt cut to the text
    # encoder's length); the stage adds each to the row's warnings.
    last_warnings: Sequence[str] = ()

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        """Fill the masked pixels.

        frames: uint8 [T, H, W, 3] RGB at the model's size; masks: bool [T, H, W], True where
        the object is (already dilated); masked_video: uint8 [T, H, W, 3], the frames with the
        object blacked out as the data path prepared them (None: ``frames`` blacked out with
        ``masks``), for models conditioned on a masked video. Returns uint8 [T, H, W, 3].
        """

    def reduce_memory(self) -> bool:
        """Switch on the next cheaper memory saver (e.g. VAE tiling); False when none is left."""

    def release_memory(self) -> None:
        """After a failed call: give back the GPU memory it left behind on purpose (weights an
        offload mode had moved in, state kept between windows), so only a leak stays."""


def whole_clip(model_cfg: ModelConfig, num_frames: int) -> int:
    return num_frames


# VideoPainter's window: the I2V backbone's 13 latent frames.
WINDOW_FRAMES = 49


def videopainter_window(model_cfg: ModelConfig, num_frames: int) -> int:
    """At most one VideoPainter window per call."""
    return min(num_frames, WINDOW_FRAMES)


def videopainter_frames(model_cfg: VideoPainterModelConfig, num_frames: int) -> int:
    """Every frame with ``pad_short_clips`` (a short clip or a long clip's last window is filled by
    mirroring and cut back); without it, a 4k+1 count up to one window of 49, and 48n + 1 frames
    (whole windows sharing their boundary frame, ``long_video``) beyond."""
    if model_cfg.pad_short_clips:
        return num_frames
    if num_frames > WINDOW_FRAMES:
        return 1 + (WINDOW_FRAMES - 1) * ((num_frames - 1) // (WINDOW_FRAMES - 1))
    return num_frames - (num_frames - 1) % 4 if num_frames >= 1 else 0


def videopainter_weights(model_cfg: VideoPainterModelConfig) -> None:
    """Missing weights fail before any actor starts loading them (a tiny tree may be written instead)."""
    if not model_cfg.create_tiny_if_missing:
        from vp_ray.models.checkpoint import require_complete

        require_complete(model_cfg.base_model_path, model_cfg.branch_path)
        if model_cfg.id_resampling and not Path(model_cfg.id_lora_path).is_file():
            raise ConfigError(f"model.id_resampling=true but the VideoPainterID LoRA is missing: "
                              f"{model_cfg.id_lora_path} (model.id_lora_path)")
        if model_cfg.first_frame_fill is FirstFrameFill.flux:
            from vp_ray.models.flux_fill import missing_files

            missing = missing_files(model_cfg.flux_fill_path)
            if missing:
                raise ConfigError(f"model.first_frame_fill=flux but the FLUX.1-Fill folder is incomplete "
                                  f"(model.flux_fill_path): missing {', '.join(map(str, missing))}")


@dataclass(frozen=True)
class ModelSpec:
    """One model: its config schema, its inpainter, how many frames one call takes, its weights."""

    schema: type
    inpainter: str  # "module:Class", imported only where the model is loaded
    frames_per_call: Callable[[ModelConfig, int], int] = whole_clip
    check_weights: Callable[[ModelConfig], None] = lambda model_cfg: None


VIDEOPAINTER = ModelSpec(VideoPainterModelConfig, "vp_ray.models.videopainter:VideoPainter",
                         videopainter_frames, videopainter_weights)
# Keyed by the config's ``name``: ``model=tiny`` is VideoPainter on a tiny random checkpoint.
MODELS = {
    "classic": ModelSpec(ClassicModelConfig, "vp_ray.models.classic:ClassicInpainter"),
    "faulty": ModelSpec(FaultyModelConfig, "vp_ray.models.faulty:FaultyInpainter"),
    "sim": ModelSpec(SimModelConfig, "vp_ray.models.sim:SimInpainter", videopainter_window),
    "videopainter": VIDEOPAINTER,
    "tiny": VIDEOPAINTER,
}


def model_spec(model_cfg: ModelConfig) -> ModelSpec:
    try:
        return MODELS[model_cfg.name]
    except KeyError:
        raise ConfigError(f"model.name {model_cfg.name!r} is not a known model: "
                          f"{', '.join(sorted(MODELS))}") from None


def usable_frames(model_cfg: ModelConfig, num_frames: int) -> int:
    """How many of ``num_frames`` frames the model processes in one call."""
    return model_spec(model_cfg).frames_per_call(model_cfg, num_frames)


def check_weights(model_cfg: ModelConfig) -> None:
    model_spec(model_cfg).check_weights(model_cfg)


def load_inpainter(model_cfg: ModelConfig) -> Inpainter:
    module, cls = model_spec(model_cfg).inpainter.split(":")
    return getattr(importlib.import_module(module), cls)(model_cfg)
