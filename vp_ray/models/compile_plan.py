"""``model.compile_blocks=auto``: compile the blocks where the compile pays back, not where it cannot.

Compiling (``speed.compile_blocks``) costs once per inpainting actor and shape, and saves on every
denoising step. Measured on an H100 on 2026-12-05 (bench/RESULTS.md), 49-frame windows
under the 26 + 5 GiB caps: the first compiled clip took 44.6 s against about 22 s for the next ones
at 10 steps (``bench_videopainter.py`` measured the compile alone at 18.1 to 20.3 s), and a step
took 1.51 to 1.54 s compiled against 1.93 to 1.97 s eager. At ``COMPILE_SECONDS`` and
``SAVED_SECONDS_PER_STEP`` the compile pays back after ``BREAK_EVEN_STEPS`` (55) steps in one actor:
one default clip (one window, 50 steps) does not pay, two do. With ``approx_fp8_linear`` (H200,
bench/RESULTS.md) the compile took 249 s and saved 0.79 s per step (2.116 eager, 1.323 compiled):
it pays back from 316 steps.

Who knows what: the driver estimates the denoising steps each inpainting actor will run
(``with_workload``: clips / actors x windows per clip x steps) and passes the estimate in the model
settings (``model.steps_per_actor``); the actor adds what only it knows (has it a GPU?) and decides
(``decide``; ``decide_vae`` for the VAE, by windows per actor). It logs the
decisions, and every clip's row records them (the manifest's ``compiled`` column).

This module imports no torch: the driver uses it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from vp_ray.config import Config, VideoPainterModelConfig, compile_blockers, vae_compile_blockers
from vp_ray.models import WINDOW_FRAMES, usable_frames

COMPILE_SECONDS = 20.0            # the compile, once per actor (the upper end of 18.1 to 20.3 s)
SAVED_SECONDS_PER_STEP = 0.37     # per denoising step (0.35 to 0.4 s; the lower half, to be safe)
BREAK_EVEN_STEPS = math.ceil(COMPILE_SECONDS / SAVED_SECONDS_PER_STEP)
FP8_COMPILE_SECONDS, FP8_SAVED_SECONDS_PER_STEP = 249.0, 0.79
FP8_BREAK_EVEN_STEPS = math.ceil(FP8_COMPILE_SECONDS / FP8_SAVED_SECONDS_PER_STEP)
# The VAE's resnet blocks (``speed.compile_vae``), H100, 2026-12-06, in the batch job under the 32 GB
# caps (large tiles; bench/RESULTS.md, "The exact clip ratio"): the first clip 212 s longer than the
# others, 16 of them the blocks' compile, so 196 s for the VAE's (its probe alone, bench/vae_probe.py:
# 142 s); a window's two encodes and decode 4.90 s eager, 2.53 s compiled.
VAE_COMPILE_SECONDS = 196.0
VAE_SAVED_SECONDS_PER_WINDOW = 2.37
VAE_BREAK_EVEN_WINDOWS = math.ceil(VAE_COMPILE_SECONDS / VAE_SAVED_SECONDS_PER_WINDOW)


@dataclass(frozen=True)
class CompileChoice:
    on: bool
    why: str

    def describe(self) -> str:
        """As the log, the manifest and the run's summary show it: "on: auto, 200 steps per actor >= 55"."""
        return f"{'on' if self.on else 'off'}: {self.why}"


def _decided_without_workload(model_cfg: VideoPainterModelConfig, option: str, cuda: bool,
                              blockers) -> CompileChoice | None:
    """The choice that needs no workload estimate: as configured (true or false; the config's check
    refuses anything else), no GPU, or a setting it cannot run with; None: ``auto`` goes on to the
    workload."""
    setting = model_cfg[option]
    if setting != "auto":
        return CompileChoice(bool(setting), f"{option}={str(setting).lower()}")
    if not cuda:
        return CompileChoice(False, "auto, no GPU")
    for key, clash, _ in blockers(model_cfg):
        if clash:
            return CompileChoice(False, f"auto, not with {key}={model_cfg[key]}")
    return None


def _pays_back(count: int, unit: str, needed: int) -> CompileChoice:
    """``auto``'s choice by the workload: "on: auto, 200 steps per actor >= 55"."""
    verdict = ">=" if count >= needed else "<"
    return CompileChoice(count >= needed, f"auto, {count} {unit} per actor {verdict} {needed}")


def decide(model_cfg: VideoPainterModelConfig, cuda: bool) -> CompileChoice:
    """Whether an actor compiles its blocks: as configured, or for ``auto`` where it pays back."""
    choice = _decided_without_workload(model_cfg, "compile_blocks", cuda, compile_blockers)
    if choice is not None:
        return choice
    if not model_cfg.pad_short_clips:
        return CompileChoice(False, "auto, pad_short_clips=false (each clip length would compile apart)")
    if model_cfg.steps_per_actor is None:
        return CompileChoice(False, "auto, steps per actor unknown")
    needed = FP8_BREAK_EVEN_STEPS if model_cfg.approx_fp8_linear else BREAK_EVEN_STEPS
    return _pays_back(model_cfg.steps_per_actor, "steps", needed)


def decide_vae(model_cfg: VideoPainterModelConfig, cuda: bool) -> CompileChoice:
    """Whether an actor compiles its VAE: as configured, or for ``auto`` where it pays back (windows per
    actor: the driver's steps per actor over the steps of one window)."""
    choice = _decided_without_workload(model_cfg, "compile_vae", cuda, vae_compile_blockers)
    if choice is not None:
        return choice
    if model_cfg.steps_per_actor is None:
        return CompileChoice(False, "auto, windows per actor unknown")
    windows = math.ceil(model_cfg.steps_per_actor / model_cfg.num_inference_steps)
    return _pays_back(windows, "windows", VAE_BREAK_EVEN_WINDOWS)


def windows_per_clip(frames: int) -> int:
    """Windows of 49 frames sharing their boundary frame that a clip of ``frames`` runs in (a clip of
    49 or fewer: one)."""
    return max(1, -(-(frames - 1) // (WINDOW_FRAMES - 1)))


def expected_frames(cfg: Config) -> int:
    """Frames a clip of the run has at most: round(max_seconds x target_fps) + 1, what the prepare
    stage cuts it to (a shorter or slower source gives fewer)."""
    return round(cfg.max_seconds * cfg.target_fps) + 1


def steps_per_actor(clips: int, actors: int, frames: int, steps: int) -> int:
    """Denoising steps of the busiest actor when ``clips`` clips of ``frames`` frames are shared
    among ``actors`` actors."""
    return math.ceil(clips / max(actors, 1)) * windows_per_clip(frames) * steps


def with_workload(cfg: Config, clips: int, actors: int, frames: int | None = None) -> Config:
    """``cfg`` with the estimate of denoising steps per inpainting actor in its model settings
    (``model.steps_per_actor``); ``frames``: the clips' length if known, else the run's longest.
    Models that do not compile are left as they are."""
    model = cfg.model
    if not isinstance(model, VideoPainterModelConfig):
        return cfg
    frames = usable_frames(model, expected_frames(cfg) if frames is None else frames)
    estimate = steps_per_actor(clips, actors, frames, model.num_inference_steps)
    return dataclasses.replace(cfg, model=dataclasses.replace(model, steps_per_actor=estimate))
