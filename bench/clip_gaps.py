"""Where the GPU waits inside and between clips.

    python bench/clip_gaps.py [--steps 10] [--clips 3] [--out bench/runs/clip_gaps.json]
    python bench/clip_gaps.py --tiny --steps 2 --clips 2     # CPU smoke run

Machine: one CUDA GPU with at least 40 GiB (H100 or H200); diffusers, hydra-core, omegaconf and Ray
beside torch. The full-size random-weight pipeline of ``bench_videopainter.py`` goes through the
production ``VideoPainterInpainter.inpaint_clip`` (resident + small VAE tiles: the 32 GB card's plan
when this was measured; kept so that its figures compare), once per clip, in two variants: the scheduler's noise copied to the GPU as diffusers does it (the host
waits for the GPU twice a step) and as the pipeline does it now (pinned memory, no wait). The
libraries a Ray actor holds (Ray, Ray Data, pandas, pyarrow) are imported so the collector's heap
is about the actor's size.

Per variant: each step's wall time, the seconds before the first step ends (prompt, VAE encodes,
uploads) and after the last (decode, conversion), full collections of the garbage collector,
`nvidia-smi dmon` SM busy per 1-s sample, and, from a profiled clip, the GPU's idle time (no
kernel or copy running) over the clip and its longest gaps. The two variants'
results for the same seed are compared (the noise draws must be the same).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _common

_common.require_modules("torch", "diffusers", "hydra", "omegaconf", "ray")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import pandas  # noqa: E402,F401 - held by every Ray Data actor: part of the heap the collector walks
import pyarrow  # noqa: E402,F401
import ray.data  # noqa: E402,F401
from bench_videopainter import PROMPT, build_pipeline, tiny_models  # noqa: E402

from vp_ray.config import VideoPainterModelConfig, schema_defaults  # noqa: E402
from vp_ray.models import pipeline as pipeline_module  # noqa: E402
from vp_ray.models.videopainter import VideoPainterInpainter  # noqa: E402


class CollectorPauses:
    """Start and length of every collection of generation 2 while installed."""

    def __init__(self):
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, time.perf_counter() - self._started))


def dmon_samples(path: Path, start: float, end: float, clock_offset: float) -> list[int]:
    """SM % of the 1-s samples whose wall clock falls in [start, end] (perf_counter seconds)."""
    samples = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split()
        stamp = time.strptime(time.strftime("%Y-%m-%d ") + parts[0], "%Y-%m-%d %H:%M:%S")
        wall = time.mktime(stamp) - clock_offset
        if start <= wall <= end and parts[2] != "-":
            samples.append(int(parts[2]))
    return samples


def gpu_idle(inpainter, frames, masks) -> dict:
    """Profile one clip: the GPU's idle seconds (no kernel or copy running) from its first kernel to
    its last, and the gaps longer than 1 ms."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        result = inpainter.inpaint_clip(frames, masks, PROMPT, seed=0)
        torch.cuda.synchronize()
    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == torch.autograd.DeviceType.CUDA)
    if not spans:
        return {"error": "the profiler recorded no GPU activity", "result": result}
    gaps, busy_until = [], spans[0][1]
    for start, end in spans[1:]:
        if start > busy_until:
            gaps.append(start - busy_until)
        busy_until = max(busy_until, end)
    return {"clip_s": (spans[-1][1] - spans[0][0]) / 1e6, "idle_s": sum(gaps) / 1e6,
            "gaps_over_1ms": sum(g > 1000 for g in gaps),
            "largest_gaps_ms": sorted((round(g / 1000, 2) for g in gaps), reverse=True)[:8], "result": result}


def run(inpainter, frames, masks, clips: int, steps: int) -> dict:
    pauses = CollectorPauses()
    gc.callbacks.append(pauses)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    per_clip = []
    start = time.perf_counter()
    try:
        for index in range(clips):
            ends: list[float] = []
            began = time.perf_counter()
            inpainter.inpaint_clip(frames, masks, PROMPT, seed=index,
                                   progress=lambda step, total: ends.append(time.perf_counter()))
            done = time.perf_counter()
            step_s = np.diff(ends).tolist()
            median = statistics.median(step_s) if step_s else 0.0
            per_clip.append({"seconds": done - began, "before_first_step_s": ends[0] - began - median,
                             "after_last_step_s": done - ends[-1], "step_median_s": median,
                             "step_max_s": max(step_s, default=0.0),
                             "steps_over_median_s": sum(s - median for s in step_s if s > 1.05 * median)})
    finally:
        gc.callbacks.remove(pauses)
    lengths = [length for _, length in pauses.pauses]
    return {"clips": per_clip, "start": start, "end": time.perf_counter(), "full_collections": len(lengths),
            "full_collection_s_total": sum(lengths), "full_collection_s_max": max(lengths, default=0.0),
            "objects_tracked": len(gc.get_objects()),
            "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke run)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled clip of each variant")
    _common.add_out(parser, "clip_gaps.json")
    args = parser.parse_args(argv)
    if not args.tiny:
        _common.require_cuda("--tiny runs tiny models on the CPU")

    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    pipe = build_pipeline(args.tiny, device, dtype)
    height, width = (tiny_models.TINY_HEIGHT, tiny_models.TINY_WIDTH) if args.tiny else (480, 720)
    cfg = {**schema_defaults(VideoPainterModelConfig), "memory_mode": "resident", "vae_tiling": not args.tiny,
           "num_inference_steps": args.steps, "height": height, "width": width}
    inpainter = VideoPainterInpainter(cfg, pipe=pipe)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (49, height, width, 3), dtype=np.uint8)
    masks = np.zeros((49, height, width), dtype=bool)
    masks[:, height // 4:3 * height // 4, width // 4:3 * width // 4] = True
    inpainter.inpaint_clip(frames[:5], masks[:5], PROMPT, seed=0)  # warm-up: kernels, allocator

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    dmon_path, dmon = Path(args.out).with_suffix(".dmon.txt"), None
    if device.type == "cuda" and shutil.which("nvidia-smi"):
        dmon = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-d", "1", "-o", "T"],
                                stdout=dmon_path.open("w"), stderr=subprocess.DEVNULL)
    clock_offset = time.time() - time.perf_counter()
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "steps": args.steps, "python": sys.version.split()[0], "runs": {}}
    hook = pipeline_module.noise_copied_without_waiting
    results = {}
    for name, noise_hook in (("noise copy waits for the GPU", lambda scheduler: contextlib.nullcontext()),
                             ("noise copied without waiting", hook)):
        pipeline_module.noise_copied_without_waiting = noise_hook
        report["runs"][name] = run(inpainter, frames, masks, args.clips, args.steps)
        if device.type == "cuda" and not args.no_profile:
            profiled = gpu_idle(inpainter, frames, masks)
            results[name] = profiled.pop("result")
            report["runs"][name]["profiled_clip"] = profiled
    pipeline_module.noise_copied_without_waiting = hook
    if len(results) == 2:
        first, second = results.values()
        report["same_result"] = bool(np.array_equal(first, second))
        report["max_abs_difference"] = int(np.abs(first.astype(int) - second.astype(int)).max())
    if dmon is not None:
        time.sleep(1.5)
        dmon.terminate()
        dmon.wait()
        for result in report["runs"].values():
            sm = dmon_samples(dmon_path, result["start"], result["end"], clock_offset)
            result["sm_samples"] = len(sm)
            result["sm_at_least_95_share"] = round(sum(s >= 95 for s in sm) / max(len(sm), 1), 3)
            result["sm_below_50"] = sum(s < 50 for s in sm)
    _common.write_json(args.out, report)
    for name, result in report["runs"].items():
        clips = result["clips"]
        print(f"{name}: {result['full_collections']} full collections, {result['full_collection_s_total']:.2f} s"
              f" (max {result['full_collection_s_max']:.2f} s), {result['objects_tracked']} objects tracked;"
              f" per clip {statistics.mean(c['seconds'] for c in clips):.2f} s, steps over median"
              f" {statistics.mean(c['steps_over_median_s'] for c in clips):.2f} s, before first step"
              f" {statistics.mean(c['before_first_step_s'] for c in clips):.2f} s, after last"
              f" {statistics.mean(c['after_last_step_s'] for c in clips):.2f} s;"
              f" SM>=95% share {result.get('sm_at_least_95_share')} of {result.get('sm_samples')};"
              f" peak allocated {result['peak_allocated_gib']} GiB;"
              f" profiled clip: {result.get('profiled_clip')}")
    print(f"same result in both variants: {report.get('same_result')} "
          f"(max abs difference {report.get('max_abs_difference')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
