"""Clip folders are committed whole, and a resumed run can tell complete ones from stale ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vp_ray import outputs
from vp_ray.manifest import Ledger
from vp_ray.rows import ClipRecord, new_row

CFG = {"model": {"name": "classic", "num_gpus": 0, "inpaint_radius": 5}, "seed": 1, "target_fps": 8.0,
       "max_seconds": 6.0, "dilate_size": 32, "resize_mode": "stretch", "restore_size": False,
       "crf": 17, "min_frames": 9, "mask_only": False}


def row(clip_id="a", **fields):
    return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")), **fields}


def write_two_files(folder):
    (folder / "result.mp4").write_bytes(b"x" * 10)
    (folder / "mask0.png").write_bytes(b"y" * 5)


def test_committed_clip_is_complete_until_a_file_changes(tmp_path):
    fp = outputs.fingerprint(CFG, row())
    outputs.commit_clip(tmp_path, "a", {"fingerprint": fp}, write_two_files)
    assert outputs.is_complete(tmp_path, "a", fp)
    assert not outputs.is_complete(tmp_path, "a", "another-fingerprint")
    (outputs.clip_dir(tmp_path, "a") / "result.mp4").write_bytes(b"truncated")
    assert not outputs.is_complete(tmp_path, "a", fp)


def test_failed_write_leaves_no_folder_under_the_final_name(tmp_path):
    def crash(folder):
        (folder / "result.mp4").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        outputs.commit_clip(tmp_path, "a", {}, crash)
    assert not outputs.clip_dir(tmp_path, "a").exists()
    assert list((tmp_path / "clips").iterdir()) == []


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "clips" / ".a.tmp-1234").mkdir(parents=True)
    assert outputs.remove_stale_temporaries(tmp_path) == 1
    assert list((tmp_path / "clips").iterdir()) == []


def test_fingerprint_follows_output_settings_not_resources():
    base = outputs.fingerprint(CFG, row())
    assert outputs.fingerprint({**CFG, "model": {**CFG["model"], "num_gpus": 1}}, row()) == base
    assert outputs.fingerprint({**CFG, "seed": 2}, row()) != base
    assert outputs.fingerprint(CFG, row(prompt="other")) != base
    # The same row after a trip through Ray/pandas (numpy scalars) hashes the same.
    assert outputs.fingerprint(CFG, row(start_frame=np.int64(0), fps=np.float64("nan"))) == base


def test_comparison_video_has_four_panels():
    frames = np.full((2, 4, 6, 3), 100, np.uint8)
    masks = np.zeros((2, 4, 6), bool)
    masks[:, 1, 1] = True
    panels = outputs.comparison_frames(frames, masks, frames)
    assert panels.shape == (2, 4, 24, 3)
    assert panels[0, 1, 6 + 1].tolist() == [0, 0, 0]          # masked: object blacked out
    assert panels[0, 1, 12 + 1].tolist() == [255, 255, 255]  # mask panel


def test_ledger_writes_one_row_per_clip(tmp_path):
    fp = outputs.fingerprint(CFG, row("old"))
    outputs.commit_clip(tmp_path, "old", {"fingerprint": fp, "num_frames": 17}, write_two_files)
    ledger = Ledger(str(tmp_path))
    ledger.add(row("new", status="ok", output_dir=str(tmp_path / "clips/new"), num_frames=49))
    ledger.add(row("old", status="done_before"))
    ledger.add(row("bad", status="failed", failed_stage="prepare", error_type="decode", error="boom"))
    manifest_path, failures_path = ledger.write()
    import pandas as pd

    manifest = pd.read_parquet(manifest_path).set_index("clip_id")
    assert sorted(manifest.index) == ["new", "old"]
    assert manifest.loc["old", "num_frames"] == 17  # read back from the earlier run's meta.json
    failures = pd.read_parquet(failures_path)
    assert failures.to_dict("records")[0]["error_type"] == "decode"
    assert ledger.duplicates() == []
    assert json.loads((outputs.clip_dir(tmp_path, "old") / "meta.json").read_text())["files"] == {
        "mask0.png": 5, "result.mp4": 10}
