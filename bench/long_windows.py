"""Seconds and peak GPU memory of long clips: 1, 2 and 4 windows of 49 frames (480x720).

    python bench/long_windows.py [--steps 2] [--windows 1,2,4] [--id | --id-only] [--card-gib 31 | --cap GIB]
                                 [--compile] [--out bench/runs/long_windows.json]
    python bench/long_windows.py --tiny --steps 1 --windows 1,2 --id   # CPU smoke run on tiny models

Machine: one CUDA GPU with at least 40 GiB (H100 or H200); diffusers, hydra-core and omegaconf
beside torch. The full-size random-weight pipeline of ``bench_videopainter.py`` goes through the
production ``VideoPainter.inpaint_clip`` with clips of 48n + 1 frames (n windows sharing
their boundary frame), in the memory plan that ``memory_mode=auto`` makes:

* by default, for an actor that may use ``--card-gib`` GiB (31: a 32 GB card), planned by auto's own
  ``plan_memory`` (with what ID resampling holds, under ``--id``), then run without a cap: the
  peaks are what the plan needs;
* with ``--cap GIB``, auto itself under that cap (``model.gpu_memory_limit_gb``), as an actor plans.

``--id`` also runs the clips with ID resampling (a random LoRA of the released rank). Each result
is written as soon as it is measured, so a run cut short keeps what it measured.

``--compile`` runs them with compiled blocks (``model.compile_blocks=true``). Each mode first
inpaints one warm-up clip of two windows (one if ``--windows`` has no longer clip), which compiles
every graph its clips need (``warmup_s``: the compile and one clip); the report then gives the
graphs compiled (``graphs``: torch.compile's count, which must not grow with the 42 blocks) and,
for the last clip of each mode, how far the compiled frames are from eager ones (``vs_eager``: the
same clip again with the blocks eager; largest and mean difference in levels of 8 bits).
"""

from __future__ import annotations

import json
import sys
import time

import _common

_common.require_modules("torch", "diffusers", "hydra", "omegaconf")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_videopainter import PROMPT, build_pipeline, remove_speed_options  # noqa: E402

from vp_ray.config import VideoPainterModelConfig, with_values  # noqa: E402
from vp_ray.models.videopainter import VideoPainter, describe_plan, plan_extras, plan_memory  # noqa: E402


def auto_plan(pipe, cfg: VideoPainterModelConfig, available_gib: float) -> tuple[str, str]:
    """(memory mode, VAE tiles) that ``memory_mode=auto`` picks for an actor that may use
    ``available_gib``, counting what the settings in ``cfg`` add (ID resampling's state)."""
    value_bytes = torch.finfo(pipe.transformer.dtype).bits // 8
    extras = plan_extras(cfg, pipe.transformer.config, value_bytes)
    return plan_memory(available_gib, sum(gib for _, gib in extras))


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--windows", default="1,2,4")
    parser.add_argument("--id", action="store_true", help="also with ID resampling (+ a random rank-256 LoRA)")
    parser.add_argument("--id-only", action="store_true", help="with ID resampling only (implies --id)")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--card-gib", type=float, default=31.0,
                      help="plan as auto does for an actor that may use this much (default 31: a 32 GB card)")
    plan.add_argument("--cap", type=float, default=None, help="hold the actor to GIB and let auto plan under it")
    parser.add_argument("--compile", action="store_true", help="compiled blocks (model.compile_blocks=true)")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke run)")
    _common.add_out(parser, "long_windows.json")
    args = parser.parse_args(argv)
    args.id = args.id or args.id_only
    counts = [int(n) for n in args.windows.split(",")]
    cuda = not args.tiny
    if cuda:
        _common.require_cuda("--tiny runs tiny models on the CPU")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    height, width = (480, 720) if cuda else (64, 96)
    pipe = build_pipeline(args.tiny, device, dtype)

    # 1. The plan: auto's choice for the card, or auto itself under the cap.
    cfg = with_values(VideoPainterModelConfig(name="videopainter"), num_inference_steps=args.steps, height=height,
                      width=width, dtype="bfloat16" if cuda else "float32",
                      id_resampling=args.id,   # auto plans for ID resampling's state when it will be on
                      compile_blocks=args.compile)
    planned = None
    if args.cap:
        cfg = with_values(cfg, memory_mode="auto", vae_tiling=None, gpu_memory_limit_gb=args.cap)
    else:
        planned = auto_plan(pipe, cfg, args.card_gib)
        cfg = with_values(cfg, memory_mode=planned[0], vae_tiling=None)   # vae_tiling None: the mode's own tiles
    inpainter = VideoPainter(cfg, pipe=pipe)
    if cuda and planned and (inpainter.memory_mode, inpainter.vae_tiles) != planned:
        sys.exit(f"auto plans {describe_plan(*planned)} for {args.card_gib:g} GiB, but memory_mode={planned[0]} "
                 f"gave {inpainter.memory_plan}")
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu (tiny)", "steps": args.steps,
              "card_gib": None if args.cap else args.card_gib, "cap_gib": args.cap, "plan": inpainter.memory_plan,
              "weights_gib": torch.cuda.memory_allocated() / 2**30 if cuda else 0.0,
              "compiled": inpainter.compiled, "runs": [], "modes": []}
    why = f"auto under a {args.cap:g} GiB cap" if args.cap else \
        f"auto's plan for {args.card_gib:g} GiB: {describe_plan(*planned)}"
    print(f"plan: {inpainter.memory_plan} ({why}{'' if cuda else '; on the CPU every model stays resident'})",
          flush=True)

    # 2. The clips: the longest's frames, a box over a quarter of every frame.
    rng = np.random.default_rng(0)
    longest = 48 * max(counts) + 1
    frames = rng.integers(0, 256, (longest, height, width, 3), dtype=np.uint8)
    masks = np.zeros((longest, height, width), dtype=bool)
    masks[:, height // 4:3 * height // 4, width // 4:3 * width // 4] = True
    if not args.compile:
        inpainter.inpaint_clip(frames[:49], masks[:49], PROMPT, seed=0)  # warm-up

    def measure(label: str) -> None:
        from torch._dynamo.utils import counters

        graphs_before = counters["stats"]["unique_graphs"]
        mode = {"mode": label}
        if args.compile:   # compiles the graphs of window 0 and, with two windows, of the later ones
            warmup = 48 * min(2, max(counts)) + 1
            start = time.perf_counter()
            inpainter.inpaint_clip(frames[:warmup], masks[:warmup], PROMPT, seed=0)
            mode.update(warmup_frames=warmup, warmup_s=time.perf_counter() - start)
        for windows in counts:
            count = 48 * windows + 1
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            out = inpainter.inpaint_clip(frames[:count], masks[:count], PROMPT, seed=0)
            if cuda:
                torch.cuda.synchronize()
            report["runs"].append({"mode": label, "windows": windows, "frames": int(len(out)),
                                   "seconds": time.perf_counter() - start,
                                   "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                                   "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0})
            print(json.dumps(report["runs"][-1]), flush=True)
            _common.write_json(args.out, report)
        if args.compile:
            mode["graphs"] = counters["stats"]["unique_graphs"] - graphs_before
            remove_speed_options(pipe)   # the last clip again, eager
            eager = inpainter.inpaint_clip(frames[:count], masks[:count], PROMPT, seed=0)
            difference = np.abs(out.astype(np.int16) - eager.astype(np.int16))
            mode["vs_eager"] = {"frames": int(count), "max_levels": int(difference.max()),
                                "mean_levels": float(difference.mean())}
        report["modes"].append(mode)
        print(json.dumps(mode), flush=True)
        _common.write_json(args.out, report)

    # 3. Chained windows, then the same with ID resampling.
    if not args.id_only:
        measure("chained")
    if args.id:
        from vp_ray.models.id_lora import load_id_lora, write_tiny_id_lora

        lora = write_tiny_id_lora("/tmp/vp_id_lora/pytorch_lora_weights.safetensors", pipe.transformer, rank=256)
        load_id_lora(pipe, lora)
        pipe.enable_id_resampling(0.5)
        # Placed again in the same plan, the LoRA's weights with the rest, as an actor loads them
        # (and, with --compile, its blocks compiled afresh, as in a new actor).
        remove_speed_options(pipe)
        torch._dynamo.reset()
        inpainter = VideoPainter(cfg, pipe=pipe)
        measure("id_resampling")
    print(f"report: {_common.write_json(args.out, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
