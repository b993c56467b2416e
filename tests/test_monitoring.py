"""Watching a run before it starts: the dry run's plan and its GPU-hours estimate (the metrics of a
run on the endpoint Prometheus scrapes: tests/test_dashboard.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pandas as pd
from conftest import REPO

from vp_ray.clip.demo import ensure_demo_dataset

SMALL = ["model=classic", "dilate_size=2", "cluster.num_cpus=4"]

def dataset_with_a_bad_row(tmp_path, clips=2):
    csv = ensure_demo_dataset(tmp_path / "demo", num_clips=clips, num_frames=12)
    rows = pd.read_csv(csv)
    for col in ("video_path", "mask_path", "ground_truth_path"):
        rows[col] = [str(tmp_path / "demo" / p) for p in rows[col]]
    bad = {**rows.iloc[0].to_dict(), "clip_id": "gone", "video_path": str(tmp_path / "nope.mp4")}
    path = tmp_path / "clips.csv"
    pd.concat([rows, pd.DataFrame([bad])]).to_csv(path, index=False)
    return path


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    csv = dataset_with_a_bad_row(tmp_path, clips=3)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "launch.py", f"output_dir={out}", "dataset=csv", f"dataset.path={csv}",
                           "dry_run=true", *SMALL], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "to run: 3; complete from an earlier run: 0; will fail the checks: 1" in done.stdout, done.stdout
    assert "gone: video_path" in done.stdout and "does not exist" in done.stdout
    assert "inpainting actors (classic): 1" in done.stdout
    assert "no GPU time" in done.stdout
    assert "Ray" not in done.stderr and not out.exists()


def test_gpu_hours_estimate_follows_the_measured_seconds_per_clip():
    from vp_ray.config import ClassicModelConfig, MemoryMode, VideoPainterModelConfig
    from vp_ray.runtime.dryrun import seconds_per_clip

    model = VideoPainterModelConfig(name="videopainter", num_inference_steps=50, memory_mode=MemoryMode.auto)
    assert round(seconds_per_clip(model), 1) == 103.1  # bench/RESULTS.md: 50 steps on an H200
    offloaded = dataclasses.replace(model, memory_mode=MemoryMode.model_offload)
    assert seconds_per_clip(offloaded) > seconds_per_clip(model)
    assert seconds_per_clip(ClassicModelConfig(name="classic")) is None
