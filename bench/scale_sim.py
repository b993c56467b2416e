"""Scheduling efficiency of the pipeline on many logical GPUs over several fake nodes, with model=sim.

    python bench/scale_sim.py --gpus 8 --nodes 2 --clips 200 --clip-seconds 4 [--out DIR]

Machine: CPUs only (no GPU: the GPUs are Ray's logical ones); the project's packages.

Starts a ``ray.cluster_utils.Cluster`` (a head without GPUs, ``--nodes`` nodes sharing ``--gpus``
logical GPUs), writes a CSV of ``--clips`` tiny 9-frame clips and runs the batch job on it with
``model=sim`` at ``--clip-seconds`` per clip (one inpainting actor per GPU). Reports:

    scheduling efficiency = achieved clips/s / (GPUs / seconds per clip)

in steady state: from the moment as many clips have finished as there are GPUs (every actor has
loaded and done one) to the last one. Also where the actors ran, the driver's peak RSS, the
object store and the most clips that waited in .work. The machine's own cores do the decode and
encode of every clip, so the clip time must leave them room (see bench/RESULTS.md).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import _common

_common.require_modules("ray", "hydra", "omegaconf", "av")

import pandas as pd  # noqa: E402

from vp_ray.clip.demo import ensure_demo_dataset  # noqa: E402
from vp_ray.config import compose, load_config  # noqa: E402
from vp_ray.runtime import graph  # noqa: E402

FRAMES = 9


def clips_csv(folder: Path, count: int) -> Path:
    rows = pd.read_csv(ensure_demo_dataset(folder / "demo", num_clips=4, num_frames=FRAMES, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(folder / "demo" / p) for p in rows[column]]
    many = pd.concat([rows] * (count // len(rows) + 1)).head(count)
    many["clip_id"] = [f"clip{i:06d}" for i in range(count)]
    many.to_csv(folder / "clips.csv", index=False)
    return folder / "clips.csv"


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--out", default=None, help="folder for the run (default: a temporary one)")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    folder = Path(args.out or tempfile.mkdtemp(prefix="vp-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv = clips_csv(folder, args.clips)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 0})
    per_node = args.gpus // args.nodes
    for _ in range(args.nodes):  # logical CPUs: one per actor plus room for the CPU stages
        cluster.add_node(num_cpus=per_node + 4, num_gpus=per_node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    cfg = load_config(compose([
        f"output_dir={folder / 'out'}", "dataset=csv", f"dataset.path={csv}", "model=sim",
        f"model.seconds_per_frame={args.clip_seconds / FRAMES}", "model.height=48", "model.width=64",
        "dilate_size=2", "cluster.sample_every_s=1", f"cluster.write_concurrency={max(2, args.gpus // 4)}",
        f"cluster.prepare_concurrency={max(2, args.gpus // 4)}"]))
    start = time.time()
    result = graph.run(cfg)
    wall = time.time() - start
    manifest = pd.read_parquet(folder / "out" / "manifest.parquet")
    finished = manifest.inpaint_finished.sort_values().to_numpy()
    steady = (len(finished) - args.gpus) / (finished[-1] - finished[args.gpus - 1])
    ideal = args.gpus / args.clip_seconds
    samples = pd.read_csv(folder / "out" / "run_samples.csv")
    actors = manifest.inpaint_worker.str.extract(r"node=(\S+) gpu=(\S+) pid=(\d+)")
    report = {
        "gpus": args.gpus, "nodes": args.nodes, "clips": args.clips, "clip_seconds": args.clip_seconds,
        "ok": result.ledger.done_count, "failed": result.ledger.failed_count, "wall_s": round(wall, 1),
        "steady_clips_per_s": round(steady, 3), "ideal_clips_per_s": round(ideal, 3),
        "scheduling_efficiency": round(steady / ideal, 3),
        "actors": int(actors[2].nunique()), "nodes_used": int(actors[0].nunique()),
        "gpus_with_two_actors": int((actors.groupby([0, 1])[2].nunique() > 1).sum()),
        "driver_peak_rss_mb": float(samples.driver_peak_rss_mb.max()),
        "object_store_used_max_mb": float(samples.object_store_used_mb.max()),
        "work_clips_max": int(samples.work_clips.max()),
    }
    print(json.dumps(report))
    print(f"scheduling efficiency at {args.gpus} GPUs: {steady / ideal:.2f}")
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
