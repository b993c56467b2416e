"""Clips per hour of ``task=evaluate``'s pixel metrics on the CPU, one scoring process.

    python bench/evaluate_cpu.py [--clips 5] [--frames 49] [--out bench/runs/evaluate_cpu.json]

Machine: CPUs only (2 cores: about 2 minutes); the project's packages; no weights (the learned
metrics are off, as without their files).

One demo clip of ``--frames`` frames at 480x720 (8 fps) is made into a finished clip folder (its
clean background as ``result.mp4``, its masks as ``all_masks.npz``) and scored ``--clips`` times in
this process, as a scoring actor scores a clip: decode the result and the source, place the reference
and the hole on the result's frame, every pixel metric of every frame. Both protocols. The job runs
one such actor per CPU but one, so a node does about (CPUs - 1) x this rate. Prints one JSON line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import _common

_common.require_modules("torch", "av", "cv2")

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.evaluation.learned import LearnedMetrics
from vp_ray.evaluation.protocols import PROTOCOLS
from vp_ray.evaluation.runner import score_clip


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--clips", type=int, default=5, help="times the clip is scored (the fastest counts)")
    parser.add_argument("--frames", type=int, default=49, help="frames of the clip (49: one VideoPainter window)")
    _common.add_out(parser, "evaluate_cpu.json")
    args = parser.parse_args()
    if args.clips < 1 or args.frames < 2:
        _common.refuse("--clips must be >= 1 and --frames >= 2")

    work = Path(tempfile.mkdtemp(prefix="evaluate_cpu_"))
    try:
        demo = ensure_demo_dataset(work / "demo", num_clips=1, num_frames=args.frames).parent / "demo00_landscape"
        clip_dir = work / "out" / "clips" / "demo00_landscape"
        clip_dir.mkdir(parents=True)
        shutil.copy(demo / "background.mp4", clip_dir / "result.mp4")
        shutil.copy(demo / "all_masks.npz", clip_dir / "all_masks.npz")
        item = {"clip_id": "demo00_landscape", "clip_dir": str(clip_dir), "video_path": str(demo / "video.mp4"),
                "ground_truth_path": "", "prompt": "", "start_frame": 0, "end_frame": -1, "fps": math.nan,
                "max_seconds": math.nan, "source_fps": 8.0, "key": "bench"}
        results = {"machine": f"{os.cpu_count()} CPUs", "frames": args.frames, "size": "480x720", "clips": args.clips}
        for name, protocol in PROTOCOLS.items():
            cfg = {"output_dir": str(work / "out"), "target_fps": 8.0, "max_seconds": (args.frames - 1) / 8,
                   "dilate_size": 32, "resize_mode": "stretch",
                   "eval": {"protocol": name, "reference": "source", "dilate_size": None, "replace_gt": True,
                            "max_frames": None, "down_sample_fps": 8.0}}
            seconds = []
            for _ in range(args.clips):
                start = time.perf_counter()
                score_clip(item, cfg, LearnedMetrics(), protocol)
                seconds.append(time.perf_counter() - start)
            best = min(seconds)
            results[name] = {"seconds_per_clip": [round(s, 3) for s in seconds],
                             "clips_per_hour_one_process": round(3600 / best)}
        _common.write_json(args.out, results)
        print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
