"""Watching a run: its metrics on Ray's Prometheus endpoint, its per-clip logs, and the dry run."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import PROGRAMS, REPO
from support import free_ports

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


def metric(lines: list[str], name: str, **tags) -> float:
    """The value of the sample of ``name`` whose tags include ``tags`` (summed over the others)."""
    total, found = 0.0, False
    for line in lines:
        match = re.match(r"(\w+)\{(.*)\} (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if all(labels.get(key) == value for key, value in tags.items()):
            total, found = total + float(match.group(3)), True
    assert found, f"no {name} {tags} in:\n" + "\n".join(lines)
    return total


@pytest.mark.slow
def test_metrics_of_a_run_are_on_the_prometheus_endpoint(tmp_path):
    csv = dataset_with_a_bad_row(tmp_path)
    overrides = [f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={csv}", *SMALL]
    done = subprocess.run([sys.executable, str(PROGRAMS / "metrics_run.py"), str(free_ports(1)[0]),
                           json.dumps(overrides)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = json.loads(done.stdout.strip().splitlines()[-1])
    assert metric(lines, "ray_vp_ray_clips_total", outcome="ok", model="classic") == 2
    assert metric(lines, "ray_vp_ray_clips_total", outcome="failed", stage="prepare") == 1
    # Every finished clip's stages timed, and the actor's last clip's frames per second.
    assert metric(lines, "ray_vp_ray_stage_seconds_count", stage="inpaint") == 2
    assert metric(lines, "ray_vp_ray_stage_seconds_count", stage="write") == 2
    assert metric(lines, "ray_vp_ray_inpaint_frames_per_second", model="classic") > 0
    metric(lines, "ray_vp_ray_clips_waiting", stage="inpaint")


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
