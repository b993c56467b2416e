"""Dataset readers and record checks: CSV, Parquet, VPData, and the bad rows users send."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from vp_ray.clip import records
from vp_ray.clip.records import DatasetPlan, plan_dataset
from vp_ray.config import Config, DatasetConfig, DatasetFormat, Layout
from vp_ray.errors import ClipError, ConfigError
from vp_ray.stages.lineup import run_context
from vp_ray.stages.read import ReadRecords, ragged_row_failure


def dataset_cfg(**fields) -> DatasetConfig:
    return DatasetConfig(**{"name": "test", "path": "", "default_prompt": "a background", **fields})


def run_cfg(seed=0, **dataset) -> Config:
    return Config(dataset=dataset_cfg(**dataset), seed=seed)


def normalize_stage(cfg: Config, plan: DatasetPlan) -> ReadRecords:
    return ReadRecords(cfg, plan, run_context(cfg, plan))


def plan_at(folder, duplicates=None):
    """The plan of a dataset file in ``folder``."""
    return DatasetPlan(path=f"{folder}/clips.csv", format="csv", columns=[], total=0,
                       duplicates=duplicates or {}, ragged=[])


def normalize(raw, **dataset):
    return records.normalize(raw, dataset_cfg(**dataset), "/data")


def test_generic_row_resolves_paths_and_defaults():
    record = normalize({"video_path": "clips/a.mp4", "mask_path": "masks/a.npz", "mask_id": "3"})
    assert record.clip_id == "a_m3"
    assert record.video_path == "/data/clips/a.mp4"
    assert record.mask_path == "/data/masks/a.npz"
    assert (record.mask_kind, record.mask_id) == ("npz", 3)
    assert record.prompt == "a background"  # empty prompt -> dataset default
    assert record.end_frame == -1 and math.isnan(record.fps) and record.seed == -1


@pytest.mark.parametrize("mask_path,kind", [("m.mp4", "video"), ("pngs", "png_dir"), ("m.npz", "npz")])
def test_mask_kind_is_inferred_from_the_path(mask_path, kind):
    raw = {"video_path": "a.mp4", "mask_path": mask_path, "mask_id": 1}
    assert normalize(raw).mask_kind == kind


def test_click_points_and_box_are_normalized_to_json():
    record = normalize({"video_path": "a.mp4", "points": "[[10, 20], [30, 40, 0]]"})
    assert record.mask_kind == "points"
    assert record.points == "[[10.0, 20.0, 1], [30.0, 40.0, 0]]"
    assert normalize({"video_path": "a.mp4", "box": "[1, 2, 30, 40]"}).mask_kind == "box"


def test_vpdata_row_follows_the_vpdata_folder_tree():
    dataset = {"layout": Layout.vpdata, "video_root": "/vp", "mask_root": "/vp"}
    row = {"path": "000000000855_854996_seg_696_890.mp4", "mask_id": 2, "start_frame": 10,
           "end_frame": 110, "fps": 30, "caption": "a street"}
    record = normalize(row, **dataset)
    assert record.video_path == ("/vp/pexels/pexels/raw_video/000000000/"
                                 "000000000855_854996_seg_696_890.mp4")
    assert record.mask_path == "/vp/video_inpainting/pexels/000000000855_854996_seg_696_890/all_masks.npz"
    assert (record.mask_kind, record.mask_id, record.start_frame, record.end_frame) == ("npz", 2, 10, 110)
    assert record.prompt == "a street" and record.fps == 30
    videovo = normalize({**row, "path": "abcdef123.0.mp4"}, **dataset)
    assert videovo.video_path == "/vp/videovo/raw_video/abcdef/abcdef123.0.mp4"
    assert videovo.mask_path == "/vp/video_inpainting/videovo/abcdef123/all_masks.npz"


@pytest.mark.parametrize("raw,message", [
    ({"video_path": "a.mp4"}, "no mask source"),
    ({"video_path": "a.mp4", "mask_path": "m.npz"}, "needs a mask_id"),
    ({"video_path": "a.mp4", "points": "[[1, 2, 5]]"}, "label"),
    ({"video_path": "a.mp4", "points": "not json"}, "not JSON"),
    ({"video_path": "a.mp4", "points": "[[1, 2, 0]]"}, "positive"),
    ({"video_path": "a.mp4", "box": "[10, 10, 5, 20]"}, "empty"),
    ({"video_path": "a.mp4", "box": "[1, 2]"}, "[x0, y0, x1, y1]"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "fps": "0"}, "fps 0.0"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "fps": "nan"}, "NaN"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "fps": "100000"}, "not a usable frame rate"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "start_frame": "x"}, "not a number"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "start_frame": 5, "end_frame": 5}, "not after"),
    ({"video_path": "a.mp4", "points": "[[1, 2]]", "mask_kind": "lasso"}, "not one of"),
    ({"clip_id": "../../etc", "video_path": "a.mp4", "points": "[[1, 2]]"}, "not allowed"),
    ({"clip_id": "/abs/path", "video_path": "a.mp4", "points": "[[1, 2]]"}, "not allowed"),
    ({"clip_id": ".hidden", "video_path": "a.mp4", "points": "[[1, 2]]"}, "not allowed"),
    ({"video_path": b"a.mp4", "prompt": b"caf\xe9", "points": "[[1, 2]]"}, "not valid UTF-8"),
    ({"prompt": "x", "points": "[[1, 2]]"}, "no video path"),
])
def test_bad_rows_raise_a_clip_error_naming_the_problem(raw, message):
    with pytest.raises(ClipError, match=message.replace("[", r"\[").replace("]", r"\]")):
        normalize(raw)


def test_unknown_and_missing_columns_fail_before_anything_runs(tmp_path):
    path = tmp_path / "clips.csv"
    pd.DataFrame({"video": ["a.mp4"], "colour": ["red"]}).to_csv(path, index=False)
    cfg = run_cfg(path=str(path))
    with pytest.raises(ConfigError) as info:
        plan_dataset(cfg)
    assert "unknown column(s) ['colour', 'video']" in str(info.value)
    assert "missing column 'video_path'" in str(info.value)
    cfg.dataset.ignore_columns = ["colour", "video"]
    with pytest.raises(ConfigError, match="missing column 'video_path'"):
        plan_dataset(cfg)


def test_missing_dataset_file_is_a_config_error(tmp_path):
    cfg = run_cfg(path=str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="not found"):
        plan_dataset(cfg)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_preflight_counts_rows_and_finds_duplicate_ids(tmp_path, fmt):
    frame = pd.DataFrame({"clip_id": ["a", "b", "a", "c"], "video_path": ["x.mp4"] * 4,
                          "points": ["[[1, 2]]"] * 4})
    path = tmp_path / f"clips.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    plan = plan_dataset(run_cfg(format=DatasetFormat[fmt], path=str(path)))
    assert plan.total == 4
    assert plan.duplicates == {"a": 2}
    assert plan.needs_segmentation


def test_normalize_stage_turns_bad_rows_into_failed_rows(tmp_path):
    cfg = Config(dataset=dataset_cfg(), output_dir=str(tmp_path))
    stage = normalize_stage(cfg, plan_at("/data", duplicates={"dup": 2}))
    batch = pd.DataFrame([
        {"clip_id": b"good", "video_path": b"a.mp4", "points": b"[[1, 2]]"},
        {"clip_id": b"dup", "video_path": b"b.mp4", "points": b"[[1, 2]]"},
        {"clip_id": b"bad", "video_path": b"c.mp4", "points": None},
        {"clip_id": b"txt", "video_path": b"d.mp4", "points": b"[[1, 2]]", "prompt": b"\xff\xfe"},
    ])
    out = stage(batch).set_index("clip_id")
    assert out.loc["good", "status"] == "pending"
    assert out.loc["dup", "status"] == "failed" and "appears 2 times" in out.loc["dup", "error"]
    assert "no mask source" in out.loc["bad", "error"] and out.loc["bad", "failed_stage"] == "read"
    assert "not valid UTF-8" in out.loc["txt", "error"]
    assert all(out.loc[k, "error"].startswith(f"clip '{k}'") for k in ("dup", "bad", "txt"))


def test_vpdata_row_with_a_bad_caption_keeps_the_id_of_its_path():
    """Failures must join back to ids: a bad caption does not hide a good path."""
    cfg = Config(dataset=dataset_cfg(layout=Layout.vpdata), output_dir="/tmp/out")
    raw = {"path": b"0000001_clip.mp4", "mask_id": b"1", "start_frame": b"0", "end_frame": b"49", "fps": b"30",
           "caption": b"caf\xe9 on a street"}
    out = normalize_stage(cfg, plan_at("/data"))(pd.DataFrame([raw])).iloc[0]
    assert out.status == "failed" and "not valid UTF-8" in out.error
    expected = "0000001_clip_m1_0-49"
    assert out.clip_id == records.clip_id_of(records.clean({**raw, "caption": b"x"}), Layout.vpdata) == expected


@pytest.mark.parametrize("path", ["../x.mp4", "a/b.mp4", "/abs.mp4", "clip.avi", ".mp4"])
def test_vpdata_path_that_is_not_a_file_name_is_invalid(path):
    with pytest.raises(ClipError, match="invalid VPData path"):
        normalize({"path": path, "mask_id": 1, "start_frame": 0, "end_frame": 9, "fps": 30, "caption": "x"},
                  layout=Layout.vpdata, video_root="/vp", mask_root="/vp")


def test_ragged_csv_lines_anywhere_become_failures_named_by_their_id(tmp_path):
    """A line with a stray comma, early (in pyarrow's first 1 MiB block) or late, is one failed
    row, not a refused or crashed run."""
    path = tmp_path / "clips.csv"
    lines = ["clip_id,video_path,points", 'early,a.mp4,"[[1, 2]]",oops']
    lines += [f'c{i},{"v" * 40}{i}.mp4,"[[1, 2]]"' for i in range(25000)]  # about 1.5 MB
    lines += ["late,b.mp4"]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 1 << 20
    plan = plan_dataset(run_cfg(path=str(path)))
    assert plan.total == 25002 and [r.line for r in plan.ragged] == [2, 25003]
    failures = [ragged_row_failure(r, plan.columns, Layout.generic) for r in plan.ragged]
    assert [f["clip_id"] for f in failures] == ["early", "late"]
    assert all(f["status"] == "failed" and f["failed_stage"] == "read" for f in failures)
    assert "line 25003 has 2 field(s) but the header has 3" in failures[1]["error"]
    limited = plan_dataset(run_cfg(path=str(path), limit=5))
    assert (limited.total, [r.line for r in limited.ragged]) == (6, [2])


def test_ids_whose_hashes_collide_are_not_called_duplicates(tmp_path, monkeypatch):
    """The preflight keeps 8 bytes per row; equal hashes are checked against the ids themselves."""
    monkeypatch.setattr(records, "_hash64", lambda text: 7)  # every id collides
    frame = pd.DataFrame({"clip_id": ["a", "b", "a", "c"], "video_path": ["x.mp4"] * 4, "points": ["[[1, 2]]"] * 4})
    frame.to_csv(tmp_path / "clips.csv", index=False)
    plan = plan_dataset(run_cfg(path=str(tmp_path / "clips.csv")))
    assert plan.duplicates == {"a": 2} and plan.total == 4
