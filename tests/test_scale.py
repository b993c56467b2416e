"""Scale: backpressure keeps the prepared clips bounded however slow the model is."""

from __future__ import annotations

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
