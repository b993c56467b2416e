"""Scale: backpressure keeps the prepared clips bounded however slow the model is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

from vp_ray.demo import ensure_demo_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory):
    """16 tiny clips: 8 with mask files, 8 with a click for SAM2 (4 videos listed under many ids)."""
    folder = tmp_path_factory.mktemp("many")
    rows = pd.read_csv(ensure_demo_dataset(folder, num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(folder / p) for p in rows[column]]
    files = pd.concat([rows.assign(clip_id=[f"c{i}_{j}" for j in range(4)]) for i in range(2)])
    clicks = files.drop(columns=["mask_kind", "mask_path", "mask_id"]).assign(
        clip_id=lambda d: "click_" + d.clip_id, points="[[30, 20, 1]]")
    pd.concat([files, clicks]).to_csv(folder / "many.csv", index=False)
    return folder / "many.csv"


def test_a_slow_model_never_lets_prepare_run_ahead(tmp_path, many_clips):
    """Prepare takes milliseconds, the model 8 s to load and 1 s per clip, SAM2 shares its (logical)
    GPU. Without a bound, prepare decodes the whole dataset into .work before the model has done
    two clips; and while the model loads, Ray Data (all else idle) lets prepare run whatever the
    policies say: 11 of 16 clips waited in .work before actors were awaited first."""
    done = subprocess.run(
        [sys.executable, "launch.py", f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={many_clips}",
         "model=sim", "model.seconds_per_frame=0.12", "model.load_seconds=8", "model.height=48",
         "model.width=64", "dilate_size=2", "sam2=tiny_random", "sam2.placement=shared", "cluster.address=local",
         "cluster.num_gpus=1", "cluster.num_cpus=4", "cluster.sample_every_s=0.1", "cluster.prepared_per_actor=2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 16
    samples = pd.read_csv(tmp_path / "out" / "run_samples.csv")
    # 2 waiting for the one inpainting actor (being prepared, queued, being segmented, queued again)
    # + 2 taken by it (one runs, one waits at it) + 2 being written.
    assert 1 <= samples.work_clips.max() <= 2 + 2 + 2, list(samples.work_clips)


def test_a_fast_model_never_lets_results_pile_up_before_the_writers(tmp_path):
    """The other side of the model: an instant model and one writer (encoding is the slowest stage).
    Without a bound behind the model, its results wait in .work for the writer (measured: 60
    clips of 300 with 2 actors and 2 writers)."""
    rows = pd.read_csv(ensure_demo_dataset(tmp_path / "demo", num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(tmp_path / "demo" / p) for p in rows[column]]
    pd.concat([rows] * 10).assign(clip_id=[f"c{i:02d}" for i in range(40)]).to_csv(tmp_path / "clips.csv", index=False)
    done = subprocess.run(
        [sys.executable, "launch.py", f"output_dir={tmp_path / 'out'}", "dataset=csv",
         f"dataset.path={tmp_path / 'clips.csv'}", "model=sim", "model.seconds_per_frame=0", "model.height=48",
         "model.width=64", "dilate_size=2", "cluster.address=local", "cluster.num_gpus=1", "cluster.num_cpus=4",
         "cluster.sample_every_s=0.1", "cluster.prepared_per_actor=1", "cluster.prepare_concurrency=2",
         "cluster.write_concurrency=1"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "out" / "manifest.parquet")) == 40
    samples = pd.read_csv(tmp_path / "out" / "run_samples.csv")
    # 1 prepared waiting + 2 at the actor + (1 done by it + 1 being written) behind it.
    assert 1 <= samples.work_clips.max() <= 1 + 2 + 1 + 1, list(samples.work_clips)


NODES_SCRIPT = """
import json, sys, threading, time
from pathlib import Path
import pandas as pd, ray
from ray.cluster_utils import Cluster
from vp_ray import graph
from vp_ray.config import compose, to_plain_config

csv, out = sys.argv[1], Path(sys.argv[2])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 0})
nodes = [cluster.add_node(num_cpus=3, num_gpus=2) for _ in range(2)]
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
cfg = to_plain_config(compose([f"output_dir={out}", "dataset=csv", f"dataset.path={csv}", "model=sim",
                               "model.seconds_per_frame=0.5", "model.height=48", "model.width=64",
                               "dilate_size=2", "cluster=multinode", "cluster.include_dashboard=false",
                               "cluster.prepare_concurrency=2", "cluster.write_concurrency=2"]))
events, results = {}, []
# The run in a thread: Ray adds nodes only from the main thread (it sets signal handlers).
runner = threading.Thread(target=lambda: results.append(graph.run(cfg)))
runner.start()
clips = out / "clips"
while not clips.is_dir() or len(list(clips.glob("c*"))) < 6:
    time.sleep(0.2)
events["removed"] = nodes[0].node_id[:8]
cluster.remove_node(nodes[0], allow_graceful=False)  # lost mid-run, with its actors and tasks
events["added"] = cluster.add_node(num_cpus=3, num_gpus=2).node_id[:8]
runner.join()
result = results[0]
print("REPORT", json.dumps({**events, "done": [r["clip_id"] for r in result.ledger.done],
                  "failed": [r["clip_id"] for r in result.ledger.failed],
                  "duplicates": result.ledger.duplicates(),
                  "errors": [r["error"] for r in result.ledger.failed],
                  "workers": sorted({r["inpaint_worker"] for r in result.ledger.done})}))
ray.shutdown()
cluster.shutdown()
"""


def test_a_node_lost_mid_run_costs_retries_not_clips_and_a_node_added_gets_actors(tmp_path):
    """Three fake nodes in one machine (ray.cluster_utils): 2 GPU nodes of 2 logical GPUs, one
    killed after 6 clips are written, one added; cluster=multinode lets the inpainting pool grow (32
    clips of 4.5 s: about a minute of work left to grow into, with the model, not the writers, the
    slowest stage: Ray Data does not grow a pool while our bound holds it back)."""
    rows = pd.read_csv(ensure_demo_dataset(tmp_path / "demo", num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(tmp_path / "demo" / p) for p in rows[column]]
    many = pd.concat([rows] * 8).assign(clip_id=[f"c{i:02d}" for i in range(32)])
    many.to_csv(tmp_path / "clips.csv", index=False)
    done = subprocess.run([sys.executable, "-c", NODES_SCRIPT, str(tmp_path / "clips.csv"), str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["failed"] == [], report["errors"]
    assert sorted(report["done"]) == sorted(many.clip_id) and report["failed"] == [] and report["duplicates"] == []
    nodes = {worker.split()[0] for worker in report["workers"]}
    assert f"node={report.get('added')}" in nodes, report.get("error")  # the pool grew onto the new node
    assert len(nodes) >= 2
    folders = sorted(p.name for p in (tmp_path / "out" / "clips").iterdir())
    assert folders == sorted(many.clip_id)  # each clip written once, none half-written
