"""Figures of a bench/gpu_two.sh run: placement, steady-state throughput, scaling, GPU busy time.

    python bench/two_gpu_report.py OUT

Reads OUT/manifest_<run>.parquet, dmon_<run>.txt and samples_<run>.csv for the runs there
(two: 2 GPUs; one: 1 GPU; free: 1 GPU without memory caps; seq: 1 GPU, one clip at a time per actor);
pandas, pyarrow and the repository (``vp_ray.runtime.gpu_idle``), any machine.
Exits non-zero if a GPU held more than one inpainting actor, or a run used fewer GPUs than it should.

Steady state: on each GPU, clips are ordered by when the actor gave them back; the first clip
(model load, warm-up) is cut, and the rate is (clips after the first) / (time from the end of the
first clip to the end of the last): the intervals between clips. A run's rate is the sum over its
GPUs; a GPU with fewer than 2 intervals is named, its rate is not one to quote.

Per inpainting actor, from each clip's GPU timeline (``vp_ray/runtime/gpu_idle.py``): the GPU's idle time
between clips (one clip's frames back on the host -> the next clip's first GPU work), the time from
one clip's last denoising step to the next one's first, and the median seconds per clip of the work
outside the loop, on the GPU and on the host.

With OUT/stock.json (``bench_videopainter.py --modes none``: stock diffusers' I2V end to end on one
clip, as ``bench/gpu_exact.sh`` runs it), the ``one`` run's steady-state seconds per clip against it:
``exact clip ratio vs stock``, and its first clip's extra time (compile, warm-up).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import _common
import pandas as pd

from vp_ray.runtime import gpu_idle

EXPECTED_GPUS = {"two": 2, "one": 1, "free": 1, "seq": 1}


def gpu_of(worker: str) -> str:
    return re.search(r"node=(\S+) gpu=(\S+)", worker).group(0)


def dmon(path: Path) -> pd.DataFrame:
    """nvidia-smi dmon -s um -o T output as rows: clock (HH:MM:SS), gpu, sm %, fb MiB."""
    header, rows = None, []
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("#Time"):
            header = line[1:].split()
        elif header and not line.startswith("#") and line.strip():
            values = dict(zip(header, line.split()))
            rows.append({"clock": values["Time"], "gpu": int(values["gpu"]),
                         "sm": float(values["sm"]) if values["sm"] != "-" else 0.0,
                         "fb": float(values.get("fb", "0").replace("-", "0"))})
    return pd.DataFrame(rows, columns=["clock", "gpu", "sm", "fb"])


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def report(out: Path, name: str) -> tuple[float, float] | None:
    path = out / f"manifest_{name}.parquet"
    if not path.exists():
        return None
    manifest = pd.read_parquet(path)
    failures = pd.read_parquet(out / f"failures_{name}.parquet")
    print(f"\n== run {name}: {len(manifest)} ok, {len(failures)} failed")
    for _, failure in failures.iterrows():
        print(f"   FAILED {failure.clip_id}: {failure.error[:200]}")
    ok = True
    actors = manifest.groupby(manifest.inpaint_worker.map(gpu_of)).inpaint_worker.unique()
    for gpu, workers in actors.items():
        print(f"   {gpu}: inpainting actor(s) {sorted(w.split('pid=')[1] for w in workers)}")
        ok &= len(workers) == 1
    ok &= len(actors) == EXPECTED_GPUS[name]
    sam2 = sorted(set(manifest.segment_worker) - {""})
    print(f"   SAM2 actor(s): {sam2}")
    print(f"   placement check (one inpainting actor per GPU, {EXPECTED_GPUS[name]} GPU(s)): "
          f"{'PASS' if ok else 'FAIL'}")
    rate, busy, intervals = 0.0, [], {}
    frames = dmon(out / f"dmon_{name}.txt")
    for gpu, clips in manifest.sort_values("inpaint_finished").groupby(manifest.inpaint_worker.map(gpu_of)):
        ends = clips.inpaint_finished.tolist()
        intervals[gpu] = len(ends) - 1
        if len(ends) >= 2:
            rate += (len(ends) - 1) / (ends[-1] - ends[0])
        index = int(gpu.split("gpu=")[1].split(",")[0])
        first, last = clock(clips.inpaint_started.min()), clock(clips.inpaint_finished.max())
        window = frames[(frames.gpu == index) & (frames.clock >= first) & (frames.clock <= last)]
        between = defaultdict(int)
        starts, finishes = clips.inpaint_started.tolist(), clips.inpaint_finished.tolist()
        for _, sample in window[window.sm < 50].iterrows():
            where = "inside a clip" if any(clock(s) <= sample.clock <= clock(f) for s, f in zip(starts, finishes)) \
                else "between clips"
            between[where] += 1
        full = (window.sm >= 95).mean() if len(window) else float("nan")
        print(f"   {gpu}: {len(clips)} clips, inpaint {clips.time_inpaint_s.mean():.1f} s/clip, peak "
              f"allocated {clips.peak_gpu_mem_gb.max():.2f} GiB, dmon fb peak "
              f"{frames[frames.gpu == index].fb.max() / 1024:.2f} GiB; SM >= 95% in {full:.0%} of "
              f"{len(window)} 1-s samples from the first to the last clip; below 50%: {dict(between)}")
        busy.append(full)
        if "memory_plan" in clips:
            print(f"   {gpu}: memory plan {', '.join(sorted(set(clips.memory_plan.fillna('-'))))}")
        if "attention_backend" in clips:
            print(f"   {gpu}: attention kernel {', '.join(sorted(set(clips.attention_backend.fillna('-'))))}")
        if "step_s_max" in clips:
            print(f"   {gpu}: denoising step median {clips.step_s_median.median():.3f} s, slowest step per clip "
                  f"{[round(x, 2) for x in clips.step_s_max]} s")
    gaps_report(manifest)
    samples = out / f"samples_{name}.csv"
    if samples.exists():
        s = pd.read_csv(samples)
        print(f"   driver RSS peak {s.driver_peak_rss_mb.max():.0f} MiB; object store used max "
              f"{s.object_store_used_mb.max():.1f} MiB; clips in .work max {s.work_clips.max()} "
              f"({s.work_mb.max():.0f} MiB)")
    short = [gpu for gpu, count in intervals.items() if count < 2]
    print(f"   steady state: {rate * 3600:.1f} clips/hour (intervals per GPU: {sorted(intervals.values())}"
          + (f"; fewer than 2 on {short}: not a steady state)" if short else ")"))
    if not ok:
        sys.exit(f"placement check failed for run {name}")
    return rate, manifest.time_inpaint_s.mean()


PART_NAMES = {"time_prompt_s": "T5", "time_encode_s": "uploads + VAE encodes", "time_decode_s": "decode",
              "time_convert_s": "to uint8 + back", "time_load_s": "read arrays", "time_condition_s": "prepare",
              "time_save_s": "save result"}


def gaps_report(manifest: pd.DataFrame) -> None:
    """Per actor: the GPU's idle time between clips and the work outside the loop."""
    if "gpu_started" not in manifest:
        print("   no GPU timeline in this manifest (a run before the timeline was recorded)")
        return
    for worker, actor in sorted(gpu_idle.actor_gaps(manifest.to_dict("records")).items()):
        where = gpu_of(worker)
        idle, loops = gpu_idle.median_and_max(actor.idle), gpu_idle.median_and_max(actor.between_loops)
        if idle:
            late = gpu_idle.median_and_max(actor.waiting_for_clip)
            print(f"   {where}: GPU idle between clips: median {idle[0]:.3f} s, max {idle[1]:.3f} s "
                  f"({len(actor.idle)} gaps: one clip's frames back -> the next clip's first GPU work); of it "
                  f"before the next clip reached the actor: median {late[0]:.3f} s, max {late[1]:.3f} s")
            print(f"   {where}: last step -> next clip's first step: median {loops[0]:.2f} s, max {loops[1]:.2f} s; "
                  f"calls handed over: median {statistics.median(actor.handover):.2f} s (negative: overlapped)")
        parts = gpu_idle.outside_loop(actor.clips[1:] or actor.clips)
        gpu = ", ".join(f"{PART_NAMES[p]} {parts[p]:.2f}" for p in gpu_idle.GPU_PARTS)
        host = ", ".join(f"{PART_NAMES[p]} {parts[p]:.2f}" for p in gpu_idle.HOST_PARTS)
        print(f"   {where}: outside the loop per clip (median s, clips after the first): GPU: {gpu} "
              f"(sum {sum(parts[p] for p in gpu_idle.GPU_PARTS):.2f}); host: {host}")


def stock_ratio(out: Path, one: tuple[float, float] | None) -> None:
    """The ``one`` run's steady-state seconds per clip against stock diffusers' I2V end to end."""
    path = out / "stock.json"
    if not path.exists() or not one:
        return
    stock = json.loads(path.read_text())["stock"]
    manifest = pd.read_parquet(out / "manifest_one.parquet").sort_values("inpaint_finished")
    per_clip = 1 / one[0] if one[0] else float("nan")
    first, rest = manifest.time_inpaint_s.iloc[0], manifest.time_inpaint_s.iloc[1:]
    print(f"\nstock diffusers I2V end to end: {stock['seconds_per_clip']:.1f} s per clip "
          f"({stock['steps']} steps, step median {stock['step_s']['median_s']:.3f} s; "
          f"{stock.get('what', stock['mode'])})")
    print(f"batch job (run one): {per_clip:.1f} s per clip in the steady state; inpainting "
          f"{rest.median():.1f} s per clip after the first (median), the first {first:.1f} s: "
          f"first clip's extra {first - rest.median():.1f} s (compile, warm-up)")
    print(f"exact clip ratio vs stock: {per_clip / stock['seconds_per_clip']:.2f}")


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("out", type=Path, help="the folder bench/gpu_two.sh wrote")
    out = parser.parse_args().out
    if not out.is_dir():
        _common.refuse(f"{out} is not a folder")
    results = {name: report(out, name) for name in EXPECTED_GPUS}
    if results["two"] and results["one"]:
        print(f"\ntwo-GPU scaling efficiency: {results['two'][0] / (2 * results['one'][0]):.2f}")
    stock_ratio(out, results["one"])
    if results["one"] and results["free"]:
        print(f"32 GB cap ratio: {results['one'][1] / results['free'][1]:.2f} "
              "(mean inpaint s/clip on one GPU: capped at 31 GiB / uncapped)")


if __name__ == "__main__":
    main()
