"""``model=sim``: an inpainter without weights that takes a model's time, for scale tests on CPUs.

Each clip takes ``seconds_per_frame`` per frame (sleeping, so a CPU machine can stand in for many
GPUs), spent in ``num_inference_steps`` steps reported as denoising steps are, optionally holding
``gpu_memory_gb`` of GPU memory for its whole life as a loaded model would. With
``hold_after_clips`` it passes that many clips and holds the rest at a gate (``vp_ray.models.gate``),
as ``model=faulty`` does. The masked pixels are filled with the frame's
mean colour: the result is visibly a result, and nothing else about it means anything. Its steps
are its whole GPU timeline (``last_phases``): nothing outside the loop.
"""

from __future__ import annotations

import time

import numpy as np

from vp_ray.config import SimModelConfig
from vp_ray.models import Inpainter, Progress
from vp_ray.models.gate import Gate
from vp_ray.models.timeline import ClipPhases, clip_phases


class SimInpainter(Inpainter):
    def __init__(self, model_cfg: SimModelConfig):
        self.seconds_per_frame = model_cfg.seconds_per_frame
        self.steps = model_cfg.num_inference_steps
        self.gate = Gate(model_cfg.gate_dir, model_cfg.hold_after_clips)
        time.sleep(model_cfg.load_seconds)
        self.held = None
        self.last_phases: ClipPhases | None = None
        if model_cfg.gpu_memory_gb > 0:
            import torch

            if torch.cuda.is_available():
                self.held = torch.empty(int(model_cfg.gpu_memory_gb * 2**30), dtype=torch.uint8, device="cuda")

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        self.gate.enter()
        started = time.time()
        for step in range(1, self.steps + 1):
            time.sleep(self.seconds_per_frame * len(frames) / self.steps)
            if progress is not None:
                progress(step, self.steps)
        self.last_phases = clip_phases([("denoise", started), ("end", time.time())])
        mean = frames.reshape(len(frames), -1, 3).mean(axis=1).astype(np.uint8)
        return np.where(masks[..., None], mean[:, None, None, :], frames)

    def reduce_memory(self) -> bool:
        return False

    def release_memory(self) -> None:
        pass
