"""The driver's shards of the rows to do: complete clips skipped before Ray starts, limit and ragged lines applied."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow.parquet as pq
import pytest

from vp_ray import graph, outputs, todo
from vp_ray.config import ClassicModelConfig, ClusterConfig, Config, DatasetConfig, DatasetFormat, Sam2Config
from vp_ray.records import plan_dataset
from vp_ray.stages import RunContext, pipeline
from vp_ray.stages.normalize import NormalizeRecords


def run_cfg(tmp_path, path, fmt="csv", limit=-1) -> Config:
    # cluster.address=auto: a running cluster (none here: a run that needs Ray would fail)
    return Config(dataset=DatasetConfig(name="t", format=DatasetFormat[fmt], path=str(path), limit=limit,
                                        default_prompt="a background"),
                  model=ClassicModelConfig(), cluster=ClusterConfig(name="t", address="auto"), sam2=Sam2Config(),
                  output_dir=str(tmp_path / "out"), seed=0, report=False)


def setup(tmp_path, fmt, rows=6, limit=-1):
    frame = pd.DataFrame({"clip_id": [f"c{i}" for i in range(rows)], "video_path": [f"v{i}.mp4" for i in range(rows)],
                          "points": ["[[1, 2]]"] * rows})
    path = tmp_path / f"clips.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    cfg = run_cfg(tmp_path, path, fmt, limit)
    return cfg, plan_dataset(cfg)


def commit(cfg, plan, clip_id, seed=0):
    """Commit ``clip_id`` as the write stage of a run of ``cfg`` (with this ``seed``) would."""
    raw = {"clip_id": clip_id.encode(), "video_path": f"v{clip_id[1:]}.mp4".encode(), "points": b"[[1, 2]]"}
    run = RunContext.of(dataclasses.replace(cfg, seed=seed), plan)
    row = NormalizeRecords(cfg, plan, run).normalize_one(raw)
    fp = run.clip_settings.fingerprint(row)
    outputs.commit_clip(cfg.output_dir, clip_id, lambda folder: (folder / "result.mp4").write_bytes(b"x"),
                        lambda: {**row, "status": "ok", "fingerprint": fp})


def write_todo(cfg, plan, add_done):
    return todo.write_todo(cfg, RunContext.of(cfg, plan), plan, add_done)


def shards(plan):
    return pq.read_table(plan.read_path).to_pandas()


def ids(frame):
    return [bytes(v).decode() if isinstance(v, bytes) else v for v in frame.clip_id]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_complete_clips_leave_the_dataset_and_the_rest_stay_to_run(tmp_path, fmt):
    cfg, plan = setup(tmp_path, fmt)
    commit(cfg, plan, "c1")
    commit(cfg, plan, "c4")
    commit(cfg, plan, "c2", seed=7)  # other settings: to redo
    (outputs.clip_dir(cfg.output_dir, "c4") / "result.mp4").write_bytes(b"damaged")  # to redo
    done = []
    left = write_todo(cfg, plan, done.append)
    assert [row["clip_id"] for row in done] == ["c1"] and done[0]["status"] == "done_before"
    assert left.pending == 5 and ids(shards(left)) == ["c0", "c2", "c3", "c4", "c5"]
    assert list(shards(left).columns) == ["clip_id", "video_path", "points"]
    assert left.path == plan.path  # relative paths still resolve against the dataset's folder


def test_a_first_run_writes_every_row_in_shards_of_a_few_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(todo, "SHARD_ROWS", 4)
    cfg, plan = setup(tmp_path, "csv", rows=10)
    left = write_todo(cfg, plan, pytest.fail)
    files = sorted(p.name for p in (tmp_path / "out" / todo.TODO_DIR).iterdir())
    assert files == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    assert [pq.read_metadata(left.read_path + "/" + f).num_rows for f in files] == [4, 4, 2]
    assert left.pending == 10 and ids(shards(left)) == [f"c{i}" for i in range(10)]
    assert shards(left).video_path.map(type).eq(bytes).all()  # CSV text as bytes, as the first stage reads it


def test_the_limit_counts_rows_of_the_dataset_not_rows_left(tmp_path):
    cfg, plan = setup(tmp_path, "csv", limit=3)
    commit(cfg, plan, "c0")
    commit(cfg, plan, "c5")  # beyond the limit: neither done nor pending
    done = []
    left = write_todo(cfg, plan, done.append)
    assert [row["clip_id"] for row in done] == ["c0"]
    assert left.pending == 2 and ids(shards(left)) == ["c1", "c2"]


def test_ragged_csv_lines_are_not_written(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_text('clip_id,video_path,points\na,a.mp4,"[[1, 2]]"\nb,b.mp4\nc,c.mp4,"[[1, 2]]",x\nd,d.mp4,"[[1, 2]]"\n')
    cfg = run_cfg(tmp_path, path)
    plan = plan_dataset(cfg)
    left = write_todo(cfg, plan, pytest.fail)
    assert [r.line for r in plan.ragged] == [3, 4] and plan.total == 4
    assert left.pending == 2 and ids(shards(left)) == ["a", "d"]


def test_a_finished_run_resumed_starts_no_ray(tmp_path, monkeypatch):
    cfg, plan = setup(tmp_path, "csv", rows=3)
    for clip_id in ("c0", "c1", "c2"):
        commit(cfg, plan, clip_id)
    monkeypatch.setattr(graph, "preflight", pipeline)   # the stages, unchecked (no SAM2 weights here)
    monkeypatch.setattr(graph, "connect", lambda *args: pytest.fail("Ray started for nothing"))
    result = graph.run(cfg)
    assert [r["status"] for r in result.ledger.done] == ["done_before"] * 3 and not result.ledger.failed
    assert pd.read_parquet(result.manifest_path).clip_id.tolist() == ["c0", "c1", "c2"]
    assert not (tmp_path / "out" / todo.TODO_DIR).exists()
