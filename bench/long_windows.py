"""Seconds and peak GPU memory of long clips: 1, 2 and 4 windows of 49 frames (480x720).

    python bench/long_windows.py [--steps 2] [--windows 1,2,4] [--id] [--cap GIB] [--out bench/long_windows.json]
    python bench/long_windows.py --tiny --windows 1,2 --id   # CPU smoke run on tiny models

The full-size random-weight pipeline of ``bench_videopainter.py`` through the production
``VideoPainterInpainter.inpaint_clip`` with resident weights and VAE tiling (a 32 GB card's
plan), clips of 48n + 1 frames (n windows sharing their boundary frame). ``--id`` also runs them
with ID resampling (random LoRA of the released rank). Each result is written as soon as it is
measured, so a run cut short keeps what it measured. ``--cap 31`` holds the actor to 31 GiB
(``model.gpu_memory_limit_gb``, a 32 GB card) and lets ``memory_mode=auto`` plan within it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_videopainter import PROMPT, build_pipeline  # noqa: E402

from vp_ray.config import VideoPainterModelConfig, schema_defaults  # noqa: E402
from vp_ray.models.videopainter import VideoPainterInpainter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--windows", default="1,2,4")
    parser.add_argument("--id", action="store_true", help="also with ID resampling (+ a random rank-256 LoRA)")
    parser.add_argument("--id-only", action="store_true", help="with ID resampling only (implies --id)")
    parser.add_argument("--cap", type=float, default=None, help="GiB the actor may allocate (memory_mode=auto)")
    parser.add_argument("--out", default="bench/long_windows.json")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke run)")
    args = parser.parse_args(argv)
    args.id = args.id or args.id_only
    cuda = not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    height, width = (480, 720) if cuda else (64, 96)
    pipe = build_pipeline(args.tiny, device, dtype)
    cfg = {**schema_defaults(VideoPainterModelConfig), "memory_mode": "resident", "vae_tiling": True,
           "num_inference_steps": args.steps, "height": height, "width": width,
           "dtype": "bfloat16" if cuda else "float32"}
    if args.cap:
        cfg.update(memory_mode="auto", vae_tiling=None, gpu_memory_limit_gb=args.cap,
                   id_resampling=args.id)   # auto plans for ID resampling's state when it will be on
    inpainter = VideoPainterInpainter(cfg, pipe=pipe)
    counts = [int(n) for n in args.windows.split(",")]
    rng = np.random.default_rng(0)
    longest = 48 * max(counts) + 1
    frames = rng.integers(0, 256, (longest, height, width, 3), dtype=np.uint8)
    masks = np.zeros((longest, height, width), dtype=bool)
    masks[:, height // 4:3 * height // 4, width // 4:3 * width // 4] = True
    report = {"device": torch.cuda.get_device_name() if cuda else "cpu (tiny)", "steps": args.steps,
              "cap_gib": args.cap, "plan": [inpainter.memory_mode, inpainter.vae_tiles],
              "weights_gib": torch.cuda.memory_allocated() / 2**30 if cuda else 0.0, "runs": []}
    inpainter.inpaint_clip(frames[:49], masks[:49], PROMPT, seed=0)  # warm-up

    def measure(label: str) -> None:
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
            Path(args.out).write_text(json.dumps(report, indent=1))

    if not args.id_only:
        measure("chained")
    if args.id:
        from vp_ray.models.id_lora import load_id_lora, write_tiny_id_lora

        lora = write_tiny_id_lora("/tmp/vp_id_lora/pytorch_lora_weights.safetensors", pipe.transformer, rank=256)
        load_id_lora(pipe, lora)
        if inpainter.memory_mode == "resident":   # under offload, accelerate's hooks move the weights
            pipe.to(device, dtype)
        pipe.enable_id_resampling(0.5)
        measure("id_resampling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
