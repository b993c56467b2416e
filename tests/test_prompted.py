"""Click-prompted clips end to end: SAM2 (tiny, random) then inpainting, in the batch job and the
single-video command. Random SAM2 weights make the masks meaningless: only the mechanics count."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.errors import ConfigError
from vp_ray.runtime import graph
from vp_ray.tools import single

pytestmark = pytest.mark.slow
MASK_FILES = {"mask.mp4", "all_masks.npz", "frame0_original.png", "frame0_with_mask.png", "mask0.png",
              "meta.json"}
ALL_FILES = MASK_FILES | {"result.mp4", "result_vis.mp4"}


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    ensure_demo_dataset(folder, num_clips=1, num_frames=12, height=96, width=144, seed=5)
    return str(folder / "demo00_landscape" / "video.mp4")


def tiny_paths(tmp_path):
    return [f"model.base_model_path={tmp_path / 'ckpt/CogVideoX-5b-I2V'}",
            f"model.branch_path={tmp_path / 'ckpt/VideoPainter/checkpoints/branch'}",
            "model.create_tiny_if_missing=true"]


def test_clicked_and_boxed_clips_go_through_sam2_then_inpainting(ray_local, tmp_path, demo_video):
    """SAM2's masks and the masked video it leaves feed VideoPainter (tiny, at 64x96)."""
    rows = [{"clip_id": "click", "video_path": demo_video, "points": "[[30, 48, 1], [120, 20, 0]]"},
            {"clip_id": "box", "video_path": demo_video, "box": "[10, 20, 60, 80]"},
            {"clip_id": "outside", "video_path": demo_video, "points": "[[500, 48, 1]]"}]
    pd.DataFrame(rows).to_csv(tmp_path / "clicks.csv", index=False)
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv",
                          f"dataset.path={tmp_path / 'clicks.csv'}", "model=tiny", "sam2=tiny_random",
                          "dilate_size=2", *tiny_paths(tmp_path)])
    result = graph.run(cfg)
    assert sorted(result.ledger.table("done").clip_id) == ["box", "click"]
    (failure,) = result.ledger.table("failed").to_dict("records")
    assert failure["clip_id"] == "outside" and failure["failed_stage"] == "prepare"  # before SAM2
    assert "click (500, 48)" in failure["error"] and "outside the 144x96 source frame" in failure["error"]
    for clip_id in ("click", "box"):
        folder = tmp_path / "out" / "clips" / clip_id
        assert {p.name for p in folder.iterdir()} == ALL_FILES
        masks = np.load(folder / "all_masks.npz", allow_pickle=False)["arr_0"]
        assert masks.shape == (12, 96, 144)  # every frame segmented, at the source's size
        assert json.loads((folder / "meta.json").read_text())["time_segment_s"] >= 0
    # 144x96 source stretched to the tiny model's 96x64: the click (30, 48) lands on (20, 32).
    shown = cv2.cvtColor(cv2.imread(str(tmp_path / "out/clips/click/frame0_with_mask.png")), cv2.COLOR_BGR2RGB)
    assert shown[32, 20].tolist() == [0, 255, 0]  # the positive click, drawn where SAM2 got it


def test_mask_only_run_writes_masks_that_a_later_run_can_use(ray_local, tmp_path, demo_video):
    pd.DataFrame([{"clip_id": "c", "video_path": demo_video, "points": "[[30, 48, 1]]"}]).to_csv(
        tmp_path / "clicks.csv", index=False)
    base = [f"dataset.path={tmp_path / 'clicks.csv'}", "dataset=csv", "sam2=tiny_random",
            "model.height=64", "model.width=96", "dilate_size=0"]
    graph.run(compose_config([f"output_dir={tmp_path / 'masks'}", "mask_only=true", *base]))
    folder = tmp_path / "masks" / "clips" / "c"
    assert {p.name for p in folder.iterdir()} == MASK_FILES

    # The saved masks (source size and frame numbers) with the source video are a valid record
    # of the next run, also at another model size: its inpainting sees the masks SAM2 made.
    pd.DataFrame([{"clip_id": "c", "video_path": demo_video,
                   "mask_path": str(folder / "all_masks.npz"), "mask_id": 1}]).to_csv(
        tmp_path / "masks.csv", index=False)
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", "model=classic",
                          f"dataset.path={tmp_path / 'masks.csv'}", "model.height=96",
                          "model.width=144", "dilate_size=0"])
    result = graph.run(cfg)
    assert result.ledger.table("done").clip_id.tolist() == ["c"], result.ledger.table("failed")
    first = np.load(folder / "all_masks.npz", allow_pickle=False)["arr_0"]
    second = np.load(tmp_path / "out" / "clips" / "c" / "all_masks.npz", allow_pickle=False)["arr_0"]
    np.testing.assert_array_equal(first, second)


def test_missing_sam2_weights_stop_the_run_before_it_starts(tmp_path, demo_video):
    pd.DataFrame([{"video_path": demo_video, "points": "[[30, 48, 1]]"}]).to_csv(tmp_path / "c.csv", index=False)
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={tmp_path / 'c.csv'}",
                          f"sam2.checkpoint={tmp_path / 'sam2_hiera_large.pt'}"])
    with pytest.raises(ConfigError, match="SAM2 checkpoint not found"):
        graph.run(cfg)


def test_single_video_command_writes_the_demo_files(tmp_path, demo_video):
    out = tmp_path / "single"
    code = single.main(["--video", demo_video, "--click_x", "30", "--click_y", "48", "--point", "120", "20", "0",
                        "--prompt", "a wall", "--output_dir", str(out), "--model", "tiny",
                        "--num_inference_steps", "2", "--dilate_size", "4", "sam2=tiny_random",
                        *tiny_paths(tmp_path)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == ALL_FILES
    meta = json.loads((out / "meta.json").read_text())
    assert meta["prompt"] == "a wall" and meta["mask_kind"] == "points"


def test_single_video_mask_only_writes_only_mask_files(tmp_path, demo_video):
    out = tmp_path / "masks"
    code = single.main(["--video", demo_video, "--box", "10", "20", "60", "80", "--output_dir", str(out),
                        "--mask_only", "--model", "classic", "sam2=tiny_random", "model.height=64",
                        "model.width=96"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == MASK_FILES


def test_single_video_bad_click_fails_clearly_before_sam2_loads(tmp_path, demo_video, caplog):
    code = single.main(["--video", demo_video, "--click_x", "-5", "--click_y", "10", "--output_dir",
                        str(tmp_path / "o"), "--model", "classic", "sam2=tiny_random"])
    assert code == 1
    assert "failed at prepare" in caplog.text and "click (-5, 10)" in caplog.text and "outside" in caplog.text
    assert "segmenting" not in caplog.text  # SAM2 never loaded
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_single_video_missing_sam2_weights_leave_nothing_behind(tmp_path, demo_video, caplog):
    out = tmp_path / "o"
    code = single.main(["--video", demo_video, "--click_x", "30", "--click_y", "48", "--output_dir", str(out),
                        "--model", "classic", f"sam2.checkpoint={tmp_path / 'sam2_hiera_large.pt'}"])
    assert code == 2
    assert "SAM2 checkpoint not found" in caplog.text and "dataset" not in caplog.text
    assert not out.exists()


def test_single_video_defaults_are_the_run_config_and_help_shows_them(tmp_path, demo_video, capsys):
    args = single.parse_args(["--video", demo_video, "--click_x", "1", "--click_y", "2", "--output_dir", "o"])
    launch_default = compose_config([f"output_dir={tmp_path}"])
    cfg = single.build_config(args)
    assert cfg.model == launch_default.model  # launch.py's default model, with its settings
    for key in ("seed", "dilate_size", "target_fps", "max_seconds"):
        assert getattr(cfg, key) == getattr(launch_default, key)
    with pytest.raises(SystemExit):
        single.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert f"(default: {launch_default.model.name})" in shown and "(default: 42)" in shown
    assert "50 for videopainter, 4 for tiny" in " ".join(shown.split())  # each model's own steps


def test_single_video_needs_something_to_remove(tmp_path, demo_video):
    with pytest.raises(SystemExit):
        single.main(["--video", demo_video, "--output_dir", str(tmp_path)])


def test_single_video_missing_weights_fail_before_any_work(tmp_path, demo_video, caplog):
    code = single.main(["--video", demo_video, "--click_x", "30", "--click_y", "48", "--output_dir",
                        str(tmp_path / "o"), "--model", "videopainter",
                        f"model.base_model_path={tmp_path / 'none'}", f"model.branch_path={tmp_path / 'nob'}"])
    assert code == 2
    assert "VideoPainter checkpoint incomplete" in caplog.text and "model_index.json" in caplog.text
    assert not (tmp_path / "o" / ".vp_ray").exists()  # nothing decoded or segmented
