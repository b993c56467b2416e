"""After a CUDA OOM the inpainting actor gives back what the failed call left on the GPU on purpose
(offloaded weights moved in, ID resampling's state) before it judges whether memory leaked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config

from vp_ray.errors import ClipError
from vp_ray.models import Inpainter, gpu
from vp_ray.stages.inpaint import InpaintClips, StepClock


class HoldsMemoryAfterOom(Inpainter):
    """OOMs on clips longer than one window, leaving ``held`` bytes until ``release_memory``."""

    def __init__(self, releases: bool):
        self.releases, self.held, self.calls = releases, 0, []

    def inpaint_clip(self, frames, masks, prompt, seed, progress=None, masked_video=None):
        self.calls.append(len(frames))
        if len(frames) > 49:
            self.held = 13 << 30     # e.g. the transformer, moved in by model offload
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return frames

    def reduce_memory(self):
        return False

    def release_memory(self):
        if self.releases:
            self.held = 0


def ladder(inpainter, monkeypatch):
    stage = InpaintClips.__new__(InpaintClips)
    stage.cfg = compose_config(["model=faulty", "retry.oom_max_seconds=[4.0]"])
    stage.inpainter, stage.baseline_bytes, stage.restart_needed = inpainter, 0, False
    monkeypatch.setattr(gpu, "allocated_bytes", lambda: inpainter.held)
    row = {"clip_id": "long", "prompt": "a street", "effective_seed": 0, "effective_max_seconds": 12.0,
           "out_fps": 8.0, "num_frames": 97, "warnings": ""}
    frames = np.zeros((97, 8, 8, 3), np.uint8)
    return stage, stage.inpaint_with_oom_ladder(row, frames, np.zeros((97, 8, 8), bool), StepClock(lambda *a: None))


def test_memory_the_inpainter_gives_back_is_no_leak_and_the_ladder_goes_on(monkeypatch):
    inpainter = HoldsMemoryAfterOom(releases=True)
    stage, (result, row) = ladder(inpainter, monkeypatch)
    assert inpainter.calls == [97, 33] and len(result) == 33
    assert row["degraded"] and row["effective_max_seconds"] == 4.0 and not stage.restart_needed


def test_memory_still_held_after_release_restarts_the_actor(monkeypatch):
    inpainter = HoldsMemoryAfterOom(releases=False)
    with pytest.raises(ClipError, match=r"GPU memory not released .*13.0 GiB still held"):
        ladder(inpainter, monkeypatch)
