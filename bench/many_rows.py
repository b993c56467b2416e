"""Many rows through the user's command: `launch.py model=sim` over a CSV or Parquet of tiny clips,
then the same command again (a resume of a finished run).

    python bench/many_rows.py --rows 10000 --format csv [--gpus 2] [--clip-seconds 0.2] [--out DIR]

Machine: CPUs only (2 cores: about 40 minutes for 10,000 rows, 4 for 1,000); the project's packages.

The first run's ``run_samples.csv`` (sampled every second on the driver) gives the driver's RSS, the
object store in use and the clips (and MiB) waiting in ``<output_dir>/.work`` over time; the second
run's wall time is the cost of a resume when everything is done. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

_common.require_modules("ray", "hydra", "omegaconf", "av")

import pandas as pd  # noqa: E402
from scale_sim import FRAMES, clips_csv  # noqa: E402

REPO = _common.REPO


def launch(args: argparse.Namespace, dataset: Path, out: Path) -> tuple[float, str]:
    command = [sys.executable, str(REPO / "launch.py"), f"output_dir={out}", f"dataset={args.format}",
               f"dataset.path={dataset}", "model=sim", f"model.seconds_per_frame={args.clip_seconds / FRAMES}",
               "model.height=48", "model.width=64", "dilate_size=2", "cluster.sample_every_s=1",
               f"cluster.num_gpus={args.gpus}", f"cluster.num_cpus={args.gpus + 4}",
               f"hydra.run.dir={out.parent / 'logs' / str(time.time_ns())}"]
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"launch.py exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wall, done.stdout + done.stderr


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--gpus", type=int, default=2, help="logical GPUs: one sim actor each")
    parser.add_argument("--clip-seconds", type=float, default=0.2, help="sim model time per clip")
    parser.add_argument("--out", default=None, help="folder for the run (default: a temporary one)")
    args = parser.parse_args()

    folder = Path(args.out or tempfile.mkdtemp(prefix="vp-rows-"))
    folder.mkdir(parents=True, exist_ok=True)
    dataset = clips_csv(folder, args.rows)
    if args.format == "parquet":
        pd.read_csv(dataset).to_parquet(dataset.with_suffix(".parquet"), index=False)
        dataset = dataset.with_suffix(".parquet")
    out = folder / "out"
    wall, _ = launch(args, dataset, out)
    samples = pd.read_csv(out / "run_samples.csv")
    manifest = pd.read_parquet(out / "manifest.parquet")
    failures = pd.read_parquet(out / "failures.parquet")
    samples.to_csv(folder / "run_samples_first.csv", index=False)
    resume_wall, log = launch(args, dataset, out)
    skipped = re.search(r"(\d+) clip\(s\) complete from an earlier run, skipped in ([\d.]+) s", log)
    report = {
        "rows": args.rows, "format": args.format, "gpus": args.gpus, "clip_seconds": args.clip_seconds,
        "ok": int((manifest.status == "ok").sum()), "failed": len(failures), "wall_s": round(wall, 1),
        "clips_per_s": round(len(manifest) / wall, 2),
        "driver_rss_mb_first_last_max": [float(samples.driver_rss_mb.iloc[0]), float(samples.driver_rss_mb.iloc[-1]),
                                         float(samples.driver_rss_mb.max())],
        "object_store_used_max_mb": float(samples.object_store_used_mb.max()),
        "work_clips_max": int(samples.work_clips.max()), "work_mb_max": float(samples.work_mb.max()),
        "resume_wall_s": round(resume_wall, 1),
        "resume_skip": {"clips": int(skipped[1]), "seconds": float(skipped[2])} if skipped else None,
        "samples": str(folder / "run_samples_first.csv"),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
