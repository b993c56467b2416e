"""The inpainting stage: a Ray actor holding one loaded inpainter, one clip per call.

Out-of-memory handling happens here, inside the actor, rather than by re-queuing the
record: the actor already holds the model and the clip's prepared frames, so a retry
is a slice of arrays it has; and the clip keeps exactly one row whatever happens, so
the run's accounting stays in one place. The ladder is: the model's cheaper memory
savers (VAE tiling, offload) first, then shorter clips (``retry.oom_max_seconds``),
then a failure row.

Each clip's host work (reading its arrays, ``prepare_clip`` where the inpainter has one, saving the
result) happens outside its turn on the GPU, so that with ``cluster.overlap_clips`` it runs beside
the other clip's GPU work (``vp_ray.stages.turns``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from vp_ray.clip import workdir
from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import add_warning, clip_seconds
from vp_ray.config import Config
from vp_ray.errors import ClipError
from vp_ray.models import check_weights, gpu, load_inpainter, usable_frames
from vp_ray.stages import ClipStage, Resources, Role, RunContext
from vp_ray.stages.turns import ClipTurns

log = logging.getLogger(__name__)


class InpaintClips(ClipStage):
    """A Ray actor holding one loaded inpainter; one clip per call."""

    name, title, role = "inpaint", "loading the model and inpainting", Role.inpaint
    reads = ("model", "retry")
    # No timing_column: process() times itself, less the time it waited for the other clip's GPU turn.

    def __init__(self, cfg: Config, plan: DatasetPlan, run: RunContext):
        # Must be set before CUDA initialises; reduces fragmentation after an OOM.
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        super().__init__(cfg, plan, run)
        self.inpainter = load_inpainter(self.cfg.model)
        self.baseline_bytes = gpu.allocated_bytes()
        self.worker = gpu.where()
        self.restart_needed = False
        self.turns = ClipTurns()
        # Two clips may share the process (cluster.overlap_clips): a death then is not charged to
        # them. Read here, from the whole config: how clips share an actor changes no clip's files.
        self.clips_share_actor = cfg.cluster.overlap_clips

    @classmethod
    def resources(cls, cfg: Config) -> Resources:
        # Two clips in flight per actor: the next one waits at the actor, so the GPU starts it the
        # moment the last one ends instead of after a scheduling round trip. With overlap_clips both
        # calls run at once (threads of the actor): the next clip's host work beside this one's GPU
        # work, one clip on the GPU at a time (vp_ray/stages/turns.py).
        model, cluster = cfg.model, cfg.cluster
        return Resources(num_cpus=model.num_cpus, num_gpus=model.num_gpus, memory=model.memory,
                         workers=cluster.inpaint_actors, grows=cluster.autoscale, calls_in_flight=2,
                         concurrent_calls=2 if cluster.overlap_clips else 1)

    @classmethod
    def check(cls, cfg: Config) -> None:
        check_weights(cfg.model)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.restart_needed:
            # GPU memory could not be freed after an OOM (fragmentation or a leak): die before
            # touching this clip. Ray restarts the actor and retries this call on a clean one.
            log.warning("inpainting actor restarting to release GPU memory")
            os._exit(1)
        return super().__call__(batch)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        finished = workdir.finished_row(row["work_dir"], "inpaint")
        if finished is not None:
            log.info("inpaint: finished by an earlier try whose answer was lost with its worker: not redone")
            return {**row, **finished}
        row["inpaint_started"], began = time.time(), time.perf_counter()
        died_before = workdir.worker_attempts(row["work_dir"], "inpaint") > 0
        with self.turns.clip(alone=died_before):
            admitted = time.perf_counter()
            workdir.count_worker_attempt(row["work_dir"], "inpaint", self.cfg.retry.max_worker_deaths,
                                         shared=self.clips_share_actor and not died_before)
            start = time.perf_counter()
            frames = workdir.load_array(row["work_dir"], workdir.FRAMES)
            masks = workdir.load_array(row["work_dir"], workdir.MASKS)
            masked_video = workdir.load_array(row["work_dir"], workdir.MASKED_VIDEO) \
                if workdir.has_array(row["work_dir"], workdir.MASKED_VIDEO) else None
            loaded = time.perf_counter()
            prepare = getattr(self.inpainter, "prepare_clip", None)
            prepared = prepare(frames, masks, row["prompt"], masked_video) if prepare else None
            row.update(time_load_s=round(loaded - start, 3), time_condition_s=round(time.perf_counter() - loaded, 3))
            waiting = time.perf_counter()
            with self.turns.gpu():
                turn = time.perf_counter()
                result, row = self.inpaint_on_gpu(row, frames, masks, masked_video, prepared)
            start = time.perf_counter()
            workdir.save_array(row["work_dir"], workdir.RESULT, result)
            end = time.perf_counter()
            waited = (admitted - began) + (turn - waiting)
            row.update(time_save_s=round(end - start, 3), time_inpaint_s=round(end - began - waited, 3),
                       inpaint_finished=time.time())
            # Finished on record before the clip leaves its turns: the clip admitted next may crash
            # the process, and this call's retry must find the clip done, not charge it a death
            # (one that ran alone has no death to spare).
            workdir.save_finished_row(row["work_dir"], "inpaint", row)
        return row

    def inpaint_on_gpu(self, row: dict[str, Any], frames: np.ndarray, masks: np.ndarray,
                       masked_video: np.ndarray | None, prepared: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """The clip's turn on the GPU: the model's call (through the OOM ladder) and what it measured."""
        if self.restart_needed:
            # The clip before left GPU memory that could not be freed: as at the start of a call.
            log.warning("inpainting actor restarting to release GPU memory")
            os._exit(1)
        gpu.start_peak()
        steps = StepClock(self._progress(row["clip_id"]))
        result, row = self.inpaint_with_oom_ladder(row, frames, masks, steps, masked_video, prepared)
        for warning in self.inpainter.last_warnings:
            add_warning(row, warning)
        row.update(peak_gpu_mem_gb=gpu.peak_gb(), inpaint_worker=self.worker,
                   step_s_median=steps.median(), step_s_max=steps.slowest(),
                   memory_plan=getattr(self.inpainter, "memory_plan", None) or "",
                   attention_backend=getattr(self.inpainter, "attention_backend", None) or "",
                   compiled=getattr(self.inpainter, "compiled", None) or "")
        phases = getattr(self.inpainter, "last_phases", None)
        if phases is not None:
            seconds = phases.seconds
            row.update(gpu_started=phases.gpu_started, denoise_started=phases.denoise_started,
                       denoise_finished=phases.denoise_finished, gpu_finished=phases.gpu_finished,
                       time_condition_s=round(row["time_condition_s"] + seconds["fill"], 3),
                       time_prompt_s=round(seconds["prompt"], 3), time_encode_s=round(seconds["encode"], 3),
                       time_decode_s=round(seconds["latents"] + seconds["decode"], 3),
                       time_convert_s=round(seconds["convert"], 3))
        if steps.intervals:
            log.info("%s: %d steps, median %.3f s, slowest %.3f s", row["clip_id"], len(steps.intervals) + 1,
                     steps.median(), steps.slowest())
        return result, row

    def inpaint_with_oom_ladder(self, row: dict[str, Any], frames: np.ndarray, masks: np.ndarray,
                                steps: StepClock, masked_video: np.ndarray | None = None, prepared: Any = None):
        """``prepared``: the inpainter's ``prepare_clip`` of the whole clip, used until a rung shortens it."""
        retry = self.cfg.retry
        count, max_seconds = len(frames), row["effective_max_seconds"]
        shorter = [s for s in retry.oom_max_seconds if s < max_seconds]
        attempts = 0
        while True:
            attempts += 1
            steps.restart()
            try:
                if prepared is not None:
                    result = self.inpainter.inpaint_prepared(prepared, row["effective_seed"], progress=steps)
                else:
                    result = self.inpainter.inpaint_clip(
                        frames[:count], masks[:count], row["prompt"], row["effective_seed"], progress=steps,
                        masked_video=None if masked_video is None else masked_video[:count])
                break
            except Exception as error:  # noqa: BLE001 - classified below
                if not gpu.is_cuda_oom(error):
                    raise
                message = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            # Retried outside the except block: a live traceback would pin the failed
            # attempt's tensors in GPU memory.
            self.inpainter.release_memory()
            gpu.free_memory()
            self._check_memory_released()
            log.warning("%s: GPU out of memory with %d frames (%s)", row["clip_id"], count, message)
            if retry.use_memory_savers and self.inpainter.reduce_memory():
                add_warning(row, f"OOM at attempt {attempts}: switched on a memory saver")
                continue
            if not shorter:
                raise ClipError(f"CUDA out of memory after {attempts} attempt(s), last with {count} "
                                f"frames ({max_seconds:g} s): {message}", kind="oom")
            max_seconds, prepared = shorter.pop(0), None
            count = min(count, usable_frames(self.cfg.model,
                                             int(round(max_seconds * row["out_fps"])) + 1))
            add_warning(row, f"OOM at attempt {attempts}: retrying with max_seconds={max_seconds:g}")
        row.update(attempts=attempts, num_frames=len(result), effective_max_seconds=max_seconds,
                   degraded=len(result) < row["num_frames"],
                   seconds=clip_seconds(len(result), row["out_fps"]))
        return result, row

    def _check_memory_released(self) -> None:
        leaked = gpu.allocated_bytes() - self.baseline_bytes
        if leaked > 1 << 30:
            self.restart_needed = True
            raise ClipError(f"GPU memory not released after an out-of-memory error "
                            f"({leaked / 2**30:.1f} GiB still held); the actor will restart", kind="oom")

    @staticmethod
    def _progress(clip_id: str):
        # A bar where a person watches this process (the single-video command); log lines
        # in Ray workers, whose output goes to log files.
        if sys.stderr.isatty():
            from tqdm import tqdm

            steps = tqdm(desc=f"{clip_id} denoising", unit="step")

            def advance(step: int, total: int) -> None:
                steps.total = total
                steps.update(step - steps.n)
                if step == total:
                    steps.close()

            return advance
        last = [-1.0]

        def report(step: int, total: int) -> None:
            # Log about every 10% so the driver's console shows each clip advancing.
            if total and (step == total or step / total - last[0] >= 0.1):
                last[0] = step / total
                log.info("%s: step %d/%d", clip_id, step, total)

        return report


class StepClock:
    """A progress callback that also times the denoising steps (end of one to end of the next)."""

    def __init__(self, report):
        self.report = report
        self.intervals: list[float] = []
        self._last: float | None = None

    def restart(self) -> None:
        self.intervals, self._last = [], None

    def __call__(self, step: int, total: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now
        self.report(step, total)

    def median(self) -> float:
        return float(np.median(self.intervals)) if self.intervals else 0.0

    def slowest(self) -> float:
        return max(self.intervals, default=0.0)
