"""Scale: a node lost mid-run costs retries, not clips, and a node added gets actors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROGRAMS, REPO

from vp_ray.clip.demo import ensure_demo_dataset

pytestmark = pytest.mark.slow


def test_a_node_lost_mid_run_costs_retries_not_clips_and_a_node_added_gets_actors(tmp_path):
    """Three fake nodes in one machine (ray.cluster_utils): 2 GPU nodes of 1 logical GPU. The model
    lets 2 clips through and holds the rest at its gate; the node to be lost is removed while one of
    its actors holds a clip, a node is added, and the gate opens once an actor there holds a clip
    (cluster=multinode lets the inpainting pool grow onto it)."""
    rows = pd.read_csv(ensure_demo_dataset(tmp_path / "demo", num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(tmp_path / "demo" / p) for p in rows[column]]
    many = pd.concat([rows] * 2).assign(clip_id=[f"c{i:02d}" for i in range(8)])
    many.to_csv(tmp_path / "clips.csv", index=False)
    done = subprocess.run([sys.executable, str(PROGRAMS / "node_loss.py"), str(tmp_path / "clips.csv"),
                           str(tmp_path / "out"), str(tmp_path / "gate")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["failed"] == [], report["errors"]
    assert sorted(report["done"]) == sorted(many.clip_id) and report["duplicates"] == []
    nodes = {worker.split()[0] for worker in report["workers"]}
    assert f"node={report['added']}" in nodes  # the pool grew onto the new node
    folders = sorted(p.name for p in (tmp_path / "out" / "clips").iterdir())
    assert folders == sorted(many.clip_id)  # each clip written once, none half-written
