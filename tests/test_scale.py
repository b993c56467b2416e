"""Scale: backpressure keeps the prepared clips bounded however slow the model is."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import compose_config

from vp_ray import graph
from vp_ray.demo import ensure_demo_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory):
    """16 tiny clips (4 videos, each listed 4 times under other ids)."""
    folder = tmp_path_factory.mktemp("many")
    rows = pd.read_csv(ensure_demo_dataset(folder, num_clips=4, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(folder / p) for p in rows[column]]
    many = pd.concat([rows.assign(clip_id=[f"c{i}_{j}" for j in range(4)]) for i in range(4)])
    many.to_csv(folder / "many.csv", index=False)
    return folder / "many.csv"


def test_a_slow_model_never_lets_prepare_run_ahead(ray_local, tmp_path, many_clips):
    """Prepare takes milliseconds, the model 1 s per clip: without a bound, prepare decodes the
    whole dataset into .work before the model has done two clips (13 of 16 seen)."""
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={many_clips}",
                          "model=sim", "model.seconds_per_frame=0.12", "model.num_gpus=0", "model.height=48",
                          "model.width=64", "dilate_size=2", "cluster.sample_every_s=0.1",
                          "cluster.prepared_per_actor=2"])
    result = graph.run(cfg)
    assert (len(result.ledger.done), result.ledger.failed) == (16, []), result.interrupted
    samples = pd.read_csv(tmp_path / "out" / "run_samples.csv")
    # 2 waiting for the one actor + 2 taken by it (one runs, one waits at it) + 2 being written.
    assert 1 <= samples.work_clips.max() <= 2 + 2 + cfg["cluster"]["write_concurrency"]
