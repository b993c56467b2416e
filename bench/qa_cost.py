"""What the quality scores cost the write stage: one 49-frame 480x720 clip, written with and without them.

    python bench/qa_cost.py [--repeats 5] [--out bench/runs/qa_cost.json]

Machine: CPUs only (2 cores: about 2 minutes); the project's packages; no weights.

One demo clip (49 frames at 480x720, 8 fps; the classic inpainter) is prepared and inpainted once in this
process by the batch job's own stages. Its work folder is then written ``--repeats`` times with
``qa.enabled=true`` and as often with ``false``, alternately (a fresh copy each time: the write stage
removes the folder it has written): the write stage's whole work, decode of the work files, three H.264
encodes, the masks and pictures, the commit. Also timed alone, on the same arrays: ``score_clip`` as the
write stage calls it (flicker, seam and object on frames shrunk to ``qa.width``) and with every score at
full size. Each is timed by the wall clock and by the CPU time of this process (all its threads), the
measure that other jobs on a shared machine disturb least. Medians; a share is the scores' median over
the write stage's median without them. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _common

_common.require_modules("cv2", "av", "ray")

import dataclasses

import cv2
import pandas as pd

from vp_ray.clip import records, workdir
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.config import Config, compose, load_config
from vp_ray.evaluation import qa
from vp_ray.stages import RunContext
from vp_ray.stages.lineup import pipeline, run_context
from vp_ray.stages.write import WriteClips


def prepared_clip(work: Path) -> tuple[Config, RunContext, dict, Path]:
    """The config, the run's context, the row and the work folder of one demo clip after the inpainting stage."""
    csv = ensure_demo_dataset(work / "demo", num_clips=1, num_frames=49)
    cfg = load_config(compose([f"output_dir={work / 'out'}", "dataset=csv", f"dataset.path={csv}",
                               "max_seconds=6.0"]))
    plan = records.plan_dataset(cfg)
    run = run_context(cfg, plan)
    batch = pd.read_csv(csv)
    for stage in pipeline(cfg, plan)[:-1]:  # every stage but write
        batch = stage(cfg, plan, run)(batch)
    row = batch.to_dict("records")[0]
    if row["status"] != "pending":
        _common.refuse(f"the demo clip did not reach the write stage: {row['error']}")
    return cfg, run, row, Path(row["work_dir"])


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="writes with and without the scores (medians)")
    _common.add_out(parser, "qa_cost.json")
    args = parser.parse_args()
    if args.repeats < 1:
        _common.refuse("--repeats must be >= 1")

    work = Path(tempfile.mkdtemp(prefix="qa_cost_"))
    try:
        cfg, run, row, folder = prepared_clip(work)
        keep = work / "prepared"
        shutil.copytree(folder, keep)
        writers = {on: WriteClips(dataclasses.replace(cfg, qa=dataclasses.replace(cfg.qa, enabled=on)), None, run)
                   for on in (True, False)}
        times: dict[str, dict[str, list[float]]] = {clock: {} for clock in ("wall", "cpu")}

        def timed(name, call):
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            times["wall"].setdefault(name, []).append(time.perf_counter() - wall)
            times["cpu"].setdefault(name, []).append(time.process_time() - cpu)

        for _ in range(args.repeats):
            for on in (True, False):
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(keep, folder)
                timed("write_with_qa" if on else "write_without_qa", lambda on=on: writers[on].process(dict(row)))

        frames, result = workdir.load_array(keep, workdir.FRAMES), workdir.load_array(keep, workdir.RESULT)
        holes, objects = workdir.load_array(keep, workdir.MASKS), workdir.load_array(keep, workdir.MASKS_RAW)
        for _ in range(args.repeats):
            for name, width in (("scores", cfg.qa.width), ("scores_full_size", frames.shape[2])):
                timed(name, lambda width=width: qa.score_clip(frames, result, holes, objects, width))

        results = {"machine": f"{os.cpu_count()} CPUs, OpenCV threads {cv2.getNumThreads()}",
                   "clip": f"{len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}",
                   "qa_width": cfg.qa.width, "repeats": args.repeats}
        for clock, runs in times.items():
            median = {name: statistics.median(values) for name, values in runs.items()}
            base = median["write_without_qa"]
            results[clock] = {
                "seconds": {name: [round(v, 3) for v in values] for name, values in runs.items()},
                "median_seconds": {name: round(value, 3) for name, value in median.items()},
                "scores_share_of_write_percent": round(100 * median["scores"] / base, 1),
                "write_with_qa_over_without_percent": round(100 * (median["write_with_qa"] / base - 1), 1),
                "full_size_scores_share_percent": round(100 * median["scores_full_size"] / base, 1)}
        _common.write_json(args.out, results)
        print(json.dumps(results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
