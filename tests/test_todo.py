"""The driver's shards of the rows to do, from its one read of the dataset: complete clips skipped before
Ray starts, limit and ragged lines applied."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pyarrow.parquet as pq
import pytest

from vp_ray.clip import outputs
from vp_ray.clip.records import plan_dataset
from vp_ray.config import ClassicModelConfig, ClusterConfig, Config, DatasetConfig, DatasetFormat, Sam2Config
from vp_ray.runtime import graph, todo
from vp_ray.stages.lineup import pipeline, run_context
from vp_ray.stages.read import ReadRecords


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
    run = run_context(dataclasses.replace(cfg, seed=seed), plan)
    row = ReadRecords(cfg, plan, run).read_one(raw)
    fp = run.clip_settings.fingerprint(row)
    outputs.commit_clip(cfg.output_dir, clip_id, lambda folder: (folder / "result.mp4").write_bytes(b"x"),
                        lambda: {**row, "status": "ok", "fingerprint": fp})


def shards(plan):
    return pq.read_table(plan.read_path).to_pandas()


def ids(frame):
    return [bytes(v).decode() if isinstance(v, bytes) else v for v in frame.clip_id]


def rows_to_do(cfg, add_done=pytest.fail):
    """The run's first steps: the dataset's one read, then the complete clips skipped."""
    plan = todo.write_todo(cfg)
    return todo.skip_complete(cfg, run_context(cfg, plan), plan, add_done)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_complete_clips_leave_the_dataset_and_the_rest_stay_to_run(tmp_path, fmt):
    cfg, plan = setup(tmp_path, fmt)
    commit(cfg, plan, "c1")
    commit(cfg, plan, "c4")
    commit(cfg, plan, "c2", seed=7)  # other settings: to redo
    (outputs.clip_dir(cfg.output_dir, "c4") / "result.mp4").write_bytes(b"damaged")  # to redo
    done = []
    left = rows_to_do(cfg, done.append)
    assert [row["clip_id"] for row in done] == ["c1"] and done[0]["status"] == "done_before"
    assert left.pending == 5 and sorted(ids(shards(left))) == ["c0", "c2", "c3", "c4", "c5"]
    assert list(shards(left).columns) == ["clip_id", "video_path", "points"]
    assert left.path == plan.path  # relative paths still resolve against the dataset's folder
    assert not (tmp_path / "out" / todo.TODO_DIR / todo.COMMITTED_DIR).exists()


def test_a_first_run_writes_every_row_in_shards_of_a_few_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(todo, "SHARD_ROWS", 4)
    cfg, _ = setup(tmp_path, "csv", rows=10)
    left = rows_to_do(cfg)
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
    left = rows_to_do(cfg, done.append)
    assert [row["clip_id"] for row in done] == ["c0"]
    assert left.pending == 2 and ids(shards(left)) == ["c1", "c2"]


def test_ragged_csv_lines_are_not_written(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_text('clip_id,video_path,points\na,a.mp4,"[[1, 2]]"\nb,b.mp4\n'
                    'c,c.mp4,"[[1, 2]]",x\nd,d.mp4,"[[1, 2]]"\n')
    cfg = run_cfg(tmp_path, path)
    left = rows_to_do(cfg)
    assert [r.line for r in left.ragged] == [3, 4] and left.total == 4
    assert left.pending == 2 and ids(shards(left)) == ["a", "d"]


def test_a_finished_run_resumed_starts_no_ray(tmp_path, monkeypatch):
    cfg, plan = setup(tmp_path, "csv", rows=3)
    for clip_id in ("c0", "c1", "c2"):
        commit(cfg, plan, clip_id)
    monkeypatch.setattr(graph, "preflight", pipeline)   # the stages, unchecked (no SAM2 weights here)
    monkeypatch.setattr(graph, "connect", lambda *args: pytest.fail("Ray started for nothing"))
    result = graph.run(cfg)
    assert result.ledger.table("done").status.tolist() == ["done_before"] * 3 and not result.ledger.failed_count
    assert pd.read_parquet(result.manifest_path).clip_id.tolist() == ["c0", "c1", "c2"]
    assert not (tmp_path / "out" / todo.TODO_DIR).exists()


class CountingFS:
    """The local file system, counting how often the dataset is opened."""

    def __init__(self):
        import pyarrow.fs as pafs

        self.fs, self.opened = pafs.LocalFileSystem(), 0

    def get_file_info(self, path):
        return self.fs.get_file_info(path)

    def open_input_stream(self, path):
        self.opened += 1
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self.opened += 1
        return self.fs.open_input_file(path)


class Stop(Exception):
    pass


def counted_run(tmp_path, monkeypatch, fmt, *overrides):
    """``graph.run`` up to Ray's start on 5 rows, one id twice, one clip complete from an earlier run;
    returns (times the dataset was opened, the run's job metadata or its result)."""
    from conftest import compose_config

    from vp_ray.clip import records

    frame = pd.DataFrame({"clip_id": ["c0", "c1", "c2", "c3", "c2"], "video_path": [f"v{i}.mp4" for i in range(5)],
                          "mask_path": ["m.npz"] * 5, "mask_id": [1] * 5})
    path = tmp_path / f"clips.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", f"dataset={fmt}", f"dataset.path={path}", *overrides])
    plan = plan_dataset(cfg)
    run = run_context(cfg, plan)
    row = ReadRecords(cfg, plan, run).read_one({"clip_id": b"c1", "video_path": b"v1.mp4",
                                                          "mask_path": b"m.npz", "mask_id": b"1"})
    outputs.commit_clip(cfg.output_dir, "c1", lambda folder: None,
                        lambda: {**row, "status": "ok", "fingerprint": run.clip_settings.fingerprint(row)})
    counting = CountingFS()
    monkeypatch.setattr(records, "dataset_fs", lambda path: (counting, path))
    started = {}

    def connect(cluster, metadata):
        started.update(metadata)
        raise Stop()

    monkeypatch.setattr(graph, "connect", connect)
    try:
        result = graph.run(cfg)
    except Stop:
        return counting.opened, started
    return counting.opened, result


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_run_reads_the_dataset_once(tmp_path, monkeypatch, fmt):
    """Once for its checks, the ids that repeat, the clips complete before and the rows to run."""
    opened, started = counted_run(tmp_path, monkeypatch, fmt)
    assert opened == 1
    assert started["clips_to_run"] == "4"  # c1 is complete; both rows of c2 run (and fail there: duplicates)


def test_a_dry_run_reads_the_dataset_once_and_leaves_nothing(tmp_path, monkeypatch):
    opened, result = counted_run(tmp_path, monkeypatch, "csv", "dry_run=true")
    assert opened == 1 and result.dry_run
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clips"]  # no .todo, no ledger
