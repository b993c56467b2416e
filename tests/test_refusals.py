"""Runs that cannot start: refused in one line on stderr with exit code 2, before Ray starts, with no
folder left behind; the dry run refuses what the run refuses and names failures as the run does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO, compose_config

from vp_ray.clip import records
from vp_ray.errors import ConfigError
from vp_ray.runtime import dryrun, todo
from vp_ray.stages import lineup
from vp_ray.stages.read import ragged_row_failure

DEMO = ["dataset.demo_num_clips=1", "dataset.demo_num_frames=9", "model.height=64", "model.width=96"]


def launch(*overrides, cwd=REPO, env=None):
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def refusal(done) -> str:
    """The one line a refused run prints (and checks that it is one line, exit code 2, no traceback)."""
    assert done.returncode == 2, (done.stdout + done.stderr)[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "HYDRA_FULL_ERROR" not in done.stderr and "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.mark.parametrize("overrides,words", [
    (["model.memory_mode=resdent"], ["model.memory_mode", "not in 'ClassicModelConfig'"]),  # model=classic has none
    (["model=videopainter", "model.memory_mode=resdent"],
     ["model.memory_mode", "expected one of [auto, resident, text_encoder_offload"]),
    (["resize_mode=squash"], ["resize_mode", "expected one of [stretch, pad, crop]"]),
    (["preprocess=fancy"], ["preprocess", "expected one of [reference, opencv]"]),
    (["model=fancy"], ["model=fancy", "classic, faulty, sim, tiny, videopainter"]),
])
def test_a_bad_setting_is_refused_in_one_line_with_exit_code_2(tmp_path, overrides, words):
    line = refusal(launch(*overrides, f"output_dir={tmp_path / 'out'}"))
    assert all(word in line for word in words), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("added", ["+foo=1", "+model.num_inference_step=3"])
def test_a_key_added_with_a_plus_that_no_schema_knows_is_refused(tmp_path, added):
    with pytest.raises(ConfigError, match=f"{added[1:].split('=')[0]}: not a setting"):
        compose_config([f"output_dir={tmp_path}", added])


def test_hydra_full_error_still_shows_the_whole_trace(tmp_path):
    done = launch("resize_mode=squash", f"output_dir={tmp_path / 'out'}", env={"HYDRA_FULL_ERROR": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr
    assert "Invalid value 'squash', expected one of [stretch, pad, crop]" in done.stderr


def test_a_uri_output_dir_is_refused_without_creating_a_folder(tmp_path):
    line = refusal(launch("output_dir=s3://bucket/x", cwd=tmp_path))
    assert "output_dir=s3://bucket/x" in line
    assert list(tmp_path.iterdir()) == []  # no ./s3:/bucket


@pytest.mark.parametrize("dry_run", ["false", "true"])
def test_too_few_cpus_are_refused_alike_by_the_run_and_the_dry_run_leaving_no_folder(tmp_path, dry_run):
    """classic holds 1 CPU for its actor; the prepare/write tasks need 1 more."""
    done = launch(f"output_dir={tmp_path / 'out'}", f"dataset.path={tmp_path / 'demo'}", *DEMO,
                  "cluster.num_cpus=1", f"dry_run={dry_run}")
    line = refusal(done)
    assert "the Ray cluster has 1 CPU(s) but needs at least 2" in line
    assert "Ray" not in done.stdout and not (tmp_path / "out").exists()


def test_a_refusal_leaves_an_earlier_runs_results_as_they_were(tmp_path):
    out = tmp_path / "out"
    (out / "clips" / "a").mkdir(parents=True)
    earlier = {out / "manifest.parquet": b"earlier manifest", out / "failures.parquet": b"earlier failures",
               out / "clips" / "a" / "meta.json": b"{}"}
    for path, data in earlier.items():
        path.write_bytes(data)
    refusal(launch(f"output_dir={out}", f"dataset.path={tmp_path / 'demo'}", *DEMO, "cluster.num_cpus=1"))
    assert sorted(out.rglob("*")) == sorted([*earlier, out / "clips", out / "clips" / "a"])
    assert all(path.read_bytes() == data for path, data in earlier.items())


def write_csv(path, text):
    path.write_text(text)
    return path


def plan_of(tmp_path, csv, *overrides):
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={csv}",
                          f"sam2.checkpoint={tmp_path / 'no_sam2.pt'}", *overrides])
    return cfg, records.plan_dataset(cfg)


def test_an_empty_points_column_does_not_need_sam2(tmp_path):
    csv = write_csv(tmp_path / "clips.csv", "clip_id,video_path,mask_path,mask_id,points,box\n"
                                            "a,a.mp4,a.npz,1,,\nb,b.mp4,b.npz,1,,\n")
    cfg, plan = plan_of(tmp_path, csv)
    assert not plan.needs_segmentation
    assert "segment" not in [stage.name for stage in lineup.preflight(cfg, plan)]  # no missing-SAM2 refusal


def test_an_unknown_model_name_is_refused_before_the_run_also_without_inpainting(tmp_path):
    csv = write_csv(tmp_path / "clips.csv", "clip_id,video_path,mask_path,mask_id\na,a.mp4,a.npz,1\n")
    cfg, plan = plan_of(tmp_path, csv, "model.name=fancy", "mask_only=true")
    with pytest.raises(ConfigError, match="model.name 'fancy' is not a known model: classic, faulty, sim, tiny"):
        lineup.preflight(cfg, plan)


def test_a_row_with_a_click_or_a_box_needs_sam2(tmp_path):
    for column, value in (("points", '"[[1, 2, 1]]"'), ("box", '"[1, 2, 3, 4]"')):
        csv = write_csv(tmp_path / f"{column}.csv", "clip_id,video_path,mask_path,mask_id,points,box\n"
                                                    "a,a.mp4,a.npz,1,,\n"
                                                    f"b,b.mp4,,,{value if column == 'points' else ''},"
                                                    f"{value if column == 'box' else ''}\n")
        cfg, plan = plan_of(tmp_path, csv)
        assert plan.needs_segmentation, column
        with pytest.raises(ConfigError, match="SAM2 checkpoint not found"):
            lineup.preflight(cfg, plan)


def test_a_header_only_csv_is_refused_as_empty_not_for_sam2(tmp_path):
    csv = write_csv(tmp_path / "clips.csv", "clip_id,video_path,points,box\n")
    with pytest.raises(ConfigError, match=r"has no rows") as refused:
        plan_of(tmp_path, csv)
    assert "SAM2" not in str(refused.value)


def test_the_dry_run_names_ragged_lines_as_the_run_does(tmp_path):
    csv = write_csv(tmp_path / "clips.csv", "clip_id,video_path,mask_path,mask_id\n"
                                            "a,a.mp4,a.npz,1\n"
                                            "b,b.mp4,b.npz,1,extra\n"       # ragged, with an id
                                            ",,\n"                          # ragged, nothing to name it by
                                            "c,c.mp4,c.npz,1\n")
    cfg, plan = plan_of(tmp_path, csv)
    run_names = [ragged_row_failure(r, plan.columns, cfg.dataset.layout)["clip_id"] for r in plan.ragged]
    assert run_names == ["b", "line-4"]
    _, failures = dryrun.check_rows(cfg, todo.write_todo(cfg))
    ragged = [clip_id for clip_id, why in failures if "wrong number of fields" in why or "CSV line" in why]
    assert ragged == run_names
