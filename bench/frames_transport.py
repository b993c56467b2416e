"""Where a clip's frames travel between stages: `.npy` files in a work folder, or Ray's object store.

    python bench/frames_transport.py [--clips 40] [--mb 80] [--model-seconds 1.0] [--actors 1]

Machine: CPUs only (4 logical CPUs for Ray; 2 cores did) and a few GB of memory; the project's
packages.

The pipeline's shape with its heavy data only: prepare (a CPU task makes a clip's frames, ``--mb``
MB), a model stage (an actor pool of ``--actors``, ``--model-seconds`` per clip, returns a result of
the same size), write (a CPU task reads the result and drops it). One row per block. Run twice:

* ``files``: what vp-ray does. Arrays go to ``.npy`` files under a work folder and rows carry
  paths; the bound on clips in flight is vp-ray's backpressure policy (``vp_ray.runtime.backpressure``).
* ``objects``: the arrays travel in the rows, through Ray's object store, bounded by Ray Data's
  own backpressure (object-store budget) alone.

Sampled every 0.2 s: bytes in the work folder, object-store use, bytes spilled to disk. Prints one
JSON line per mode.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import _common

_common.require_modules("ray")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import ray  # noqa: E402

from vp_ray.runtime.backpressure import PER_ACTOR_KEY, PREPARERS_KEY, WRITERS_KEY, WorkBound  # noqa: E402


def frames(mb: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=mb * 2**20, dtype=np.uint8)


def PrepareClips(batch: pd.DataFrame, mode: str, work: str, mb: int) -> pd.DataFrame:  # noqa: N802 - op name
    clip = int(batch["clip"].iloc[0])
    array = frames(mb, clip)
    if mode == "objects":
        return pd.DataFrame({"clip": [clip], "data": [array]})
    path = Path(work) / f"{clip}.frames.npy"
    np.save(path, array)
    return pd.DataFrame({"clip": [clip], "data": [str(path)]})


class InpaintClips:
    def __init__(self, mode: str, seconds: float):
        self.mode, self.seconds = mode, seconds

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        data = batch["data"].iloc[0]
        array = data if self.mode == "objects" else np.load(data)
        time.sleep(self.seconds)
        result = array[::-1].copy()
        if self.mode == "objects":
            return pd.DataFrame({"clip": batch["clip"], "data": [result]})
        out = data.replace(".frames.npy", ".result.npy")
        np.save(out, result)
        Path(data).unlink()
        return pd.DataFrame({"clip": batch["clip"], "data": [out]})


def WriteClips(batch: pd.DataFrame, mode: str) -> pd.DataFrame:  # noqa: N802 - op name
    data = batch["data"].iloc[0]
    array = data if mode == "objects" else np.load(data)
    checksum = int(array[:: 2**16].sum())
    if mode == "files":
        Path(data).unlink()
    return pd.DataFrame({"clip": batch["clip"], "checksum": [checksum]})


def spilled_mb() -> float:
    from ray._private.internal_api import memory_summary

    found = re.search(r"Spilled (\d+) MiB", memory_summary(stats_only=True))
    return float(found[1]) if found else 0.0


def run(mode: str, args: argparse.Namespace, work: Path) -> dict:
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = False
    if mode == "files":
        from ray.data._internal.execution.backpressure_policy import (
            ENABLED_BACKPRESSURE_POLICIES,
            ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
        )

        ctx.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [*ENABLED_BACKPRESSURE_POLICIES, WorkBound])
        ctx.set_config(PER_ACTOR_KEY, 2)
        ctx.set_config(WRITERS_KEY, 1)
        ctx.set_config(PREPARERS_KEY, 1)
    peaks = {"work_mb": 0.0, "object_store_mb": 0.0, "spilled_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        total = ray.cluster_resources().get("object_store_memory", 0)
        while not stop.wait(0.2):
            used = (total - ray.available_resources().get("object_store_memory", total)) / 2**20
            size = sum(p.stat().st_size for p in work.glob("*.npy") if p.exists()) / 2**20
            peaks.update(work_mb=max(peaks["work_mb"], size), object_store_mb=max(peaks["object_store_mb"], used))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    ds = (ray.data.from_pandas(pd.DataFrame({"clip": range(args.clips)}))
          .repartition(target_num_rows_per_block=1)
          .map_batches(PrepareClips, batch_size=1, batch_format="pandas", num_cpus=1,
                       fn_kwargs={"mode": mode, "work": str(work), "mb": args.mb})
          .map_batches(InpaintClips, batch_size=1, batch_format="pandas", num_cpus=0.5,
                       compute=ray.data.ActorPoolStrategy(size=args.actors, max_tasks_in_flight_per_actor=2),
                       fn_constructor_kwargs={"mode": mode, "seconds": args.model_seconds})
          .map_batches(WriteClips, batch_size=1, batch_format="pandas", num_cpus=1, fn_kwargs={"mode": mode}))
    rows = ds.take_all()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    ideal = args.clips * args.model_seconds / args.actors
    return {"mode": mode, "clips": len(rows), "mb_per_clip": args.mb, "wall_s": round(wall, 1),
            "model_busy": round(ideal / wall, 3), "peak_work_mb": round(peaks["work_mb"]),
            "peak_object_store_mb": round(peaks["object_store_mb"]), "spilled_mb": spilled_mb()}


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--mb", type=int, default=80)
    parser.add_argument("--model-seconds", type=float, default=1.0)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--object-store-mb", type=int, default=2048)
    parser.add_argument("--modes", default="files,objects")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        ray.init(num_cpus=4, object_store_memory=args.object_store_mb * 2**20, include_dashboard=False,
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        work = Path(tempfile.mkdtemp(prefix="vp-frames-"))
        try:
            print(json.dumps(run(mode, args, work)), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            ray.shutdown()


if __name__ == "__main__":
    main()
