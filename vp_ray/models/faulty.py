"""An inpainter that fails on purpose, to test (and demonstrate) a run's failure handling.

It inpaints like ``classic`` but injects faults, chosen per clip through the prompt so one
dataset can mix them: ``[crash-once]`` kills the worker process the first time it sees the
clip, ``[crash-always]`` every time, ``[error]`` raises an ordinary exception, ``[oom]`` a CUDA
out-of-memory error on every try, however short the clip. Clips longer
than ``oom_above_frames`` raise a CUDA out-of-memory error (``oom_above_frames_with_saver``
once ``reduce_memory`` switched the memory saver on), the error torch raises on a GPU
too small for them. With ``hold_after_clips`` the model passes that many clips and holds the
rest at a gate (``vp_ray.models.gate``), so a test can interrupt a run in a known state.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from vp_ray.config import FaultyModelConfig
from vp_ray.models import Inpainter, Progress
from vp_ray.models.classic import ClassicInpainter
from vp_ray.models.gate import Gate


class FaultyInpainter(Inpainter):
    def __init__(self, model_cfg: FaultyModelConfig):
        self.classic = ClassicInpainter(model_cfg)
        self.oom_above = model_cfg.oom_above_frames
        self.oom_above_with_saver = model_cfg.oom_above_frames_with_saver
        self.state_dir = Path(model_cfg.fault_state_dir)
        self.saver_on = False
        self.calls = 0
        self.gate = Gate(self.state_dir, model_cfg.hold_after_clips)

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        self.gate.enter()
        if "[crash-always]" in prompt:
            os._exit(3)
        if "[crash-once]" in prompt and self._first_time(prompt):
            os._exit(3)
        if "[error]" in prompt:
            raise ValueError("injected model error")
        if "[oom]" in prompt:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        limit = self.oom_above_with_saver if self.saver_on else self.oom_above
        if 0 <= limit < len(frames):
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB ({len(frames)} frames > {limit})")
        return self.classic.inpaint_clip(frames, masks, prompt, seed, progress)

    def release_memory(self) -> None:
        pass

    def reduce_memory(self) -> bool:
        if self.saver_on:
            return False
        self.saver_on = True
        return True

    def _first_time(self, prompt: str) -> bool:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        marker = self.state_dir / hashlib.sha1(prompt.encode()).hexdigest()
        if marker.exists():
            return False
        marker.touch()
        return True
