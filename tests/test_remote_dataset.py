"""The dataset file as a URI: file:// and S3 (a local S3-compatible server, moto), read by the driver
alone; every other path must be one that every node can open, and says so at compose time."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import REPO, compose_config

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.errors import ConfigError
from vp_ray.runtime import todo


def demo_rows(tmp_path, clips=2):
    """Demo clips with absolute paths (as a dataset kept away from its videos must give them)."""
    rows = pd.read_csv(ensure_demo_dataset(tmp_path / "demo", num_clips=clips, num_frames=9, height=48, width=64))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(tmp_path / "demo" / p) for p in rows[column]]
    return rows


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_uri_reads_like_a_path(tmp_path, fmt):
    rows = demo_rows(tmp_path)
    path = tmp_path / f"clips.{fmt}"
    rows.to_csv(path, index=False) if fmt == "csv" else rows.to_parquet(path)
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", f"dataset={fmt}", f"dataset.path=file://{path}"])
    assert cfg.dataset.path == str(path)
    plan = todo.write_todo(cfg)
    assert plan.pending == 2 and plan.base_dir == str(tmp_path)


@pytest.mark.parametrize("key", ["output_dir", "dataset.video_root", "sam2.checkpoint"])
def test_uris_elsewhere_are_refused_when_the_config_is_composed(tmp_path, key):
    with pytest.raises(ConfigError, match=f"{key}=s3://bucket/x: only dataset.path may be a URI"):
        compose_config([f"output_dir={tmp_path}", "dataset=csv", "dataset.path=s3://bucket/clips.csv",
                        f"{key}=s3://bucket/x"])


@pytest.fixture
def s3(monkeypatch):
    """A local S3-compatible server with a bucket, and the environment pointing at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="clips")
    yield client, env
    server.stop()


def test_a_dataset_on_s3_is_read_by_the_driver(tmp_path, s3):
    client, _ = s3
    rows = demo_rows(tmp_path)
    client.put_object(Bucket="clips", Key="set/clips.parquet", Body=rows.to_parquet())
    client.put_object(Bucket="clips", Key="set/clips.csv", Body=rows.to_csv(index=False).encode())
    for fmt in ("csv", "parquet"):
        cfg = compose_config([f"output_dir={tmp_path / fmt}", f"dataset={fmt}",
                              f"dataset.path=s3://clips/set/clips.{fmt}"])
        assert cfg.dataset.path == f"s3://clips/set/clips.{fmt}"
        plan = todo.write_todo(cfg)
        assert plan.total == 2 and plan.pending == 2 and plan.base_dir == ""
        assert pq.read_table(plan.read_path).num_rows == 2


@pytest.mark.slow
def test_launch_py_runs_a_dataset_from_s3(tmp_path, s3, ray_address):
    """End to end: the user's command on an S3 dataset with absolute video paths, and a row whose
    relative path cannot be resolved against a bucket fails by itself."""
    client, env = s3
    rows = demo_rows(tmp_path)
    rows = pd.concat([rows, rows.head(1).assign(clip_id="relative", video_path="videos/x.mp4")])
    client.put_object(Bucket="clips", Key="clips.csv", Body=rows.to_csv(index=False).encode())
    done = subprocess.run(
        [sys.executable, "launch.py", "dataset=csv", "dataset.path=s3://clips/clips.csv",
         f"output_dir={tmp_path / 'out'}", "model.height=48", "model.width=64", "dilate_size=2",
         f"cluster.address={ray_address}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, **env, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    failures = pd.read_parquet(tmp_path / "out" / "failures.parquet")
    assert sorted(manifest.clip_id) == sorted(rows.clip_id[:2]) and set(manifest.status) == {"ok"}
    assert failures.clip_id.tolist() == ["relative"] and "dataset file is remote" in failures.error[0]
