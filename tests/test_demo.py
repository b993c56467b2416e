"""The synthetic demo dataset (vp_ray/clip/demo.py) and the scores (vp_ray/evaluation/clip_scores.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from vp_ray.clip import masks as mask_io
from vp_ray.clip import video
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.evaluation import clip_scores

SMALL = {"height": 120, "width": 180, "num_frames": 16}
COLUMNS = ["clip_id", "video_path", "prompt", "mask_kind", "mask_path", "mask_id", "ground_truth_path"]


def test_demo_clips_vary_and_their_masks_and_truth_match(tmp_path):
    csv = ensure_demo_dataset(tmp_path, **SMALL)
    rows = pd.read_csv(csv)
    assert list(rows.columns) == COLUMNS and len(rows) == 4
    shapes, rates = {}, {}
    for row in rows.to_dict("records"):
        frames, fps = video.read_video(tmp_path / row["video_path"])
        truth, _ = video.read_video(tmp_path / row["ground_truth_path"])
        masks = mask_io.load_npz_masks(tmp_path / row["mask_path"], row["mask_id"],
                                       np.arange(len(frames)), frames.shape[1:3])
        assert truth.shape == frames.shape and masks.all(axis=(1, 2)).sum() == 0 and masks.any(axis=(1, 2)).all()
        outside = ~mask_io.dilate_masks(masks, 5)
        assert np.abs(frames.astype(int) - truth)[outside].mean() < 2.0  # composite = background there
        shapes[row["clip_id"]], rates[row["clip_id"]] = frames.shape[1:3], fps
        if row["clip_id"] == "demo00_landscape":
            assert masks.all(axis=0).any()  # some background is never visible: cv2.inpaint is exercised
        else:
            assert not masks.all(axis=0).any()
    assert shapes["demo00_landscape"] == (120, 180)
    assert shapes["demo01_portrait"][0] > shapes["demo01_portrait"][1]
    assert shapes["demo02_odd_size"][0] % 8 and shapes["demo02_odd_size"][1] % 8
    assert rates["demo03_fps24"] == 24.0 and rates["demo00_landscape"] == 8.0


def test_demo_is_generated_once_and_again_when_asked_for_other_clips(tmp_path):
    csv = ensure_demo_dataset(tmp_path, num_clips=2, **SMALL)
    video_file = tmp_path / pd.read_csv(csv).video_path[0]
    written = video_file.stat().st_mtime_ns
    assert ensure_demo_dataset(tmp_path, num_clips=2, **SMALL) == csv
    assert video_file.stat().st_mtime_ns == written  # nothing rewritten

    video_file.unlink()  # a file gone: regenerated
    ensure_demo_dataset(tmp_path, num_clips=2, **SMALL)
    assert video_file.is_file()

    ensure_demo_dataset(tmp_path, num_clips=3, **SMALL)  # other parameters: regenerated
    assert len(pd.read_csv(csv)) == 3 and json.loads((tmp_path / "demo.json").read_text())["num_clips"] == 3


def test_psnr_on_uint8_frames_and_under_a_mask():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    assert clip_scores.psnr(a, b) == math.inf
    b[0, 0, 0] = 255  # one pixel wrong by 255 on every channel
    mask = np.zeros((2, 4, 4), bool)
    mask[0, 0, :2] = True
    assert clip_scores.psnr(a, b, mask) == pytest.approx(10 * np.log10(2))  # half the masked pixels wrong
    assert clip_scores.masked_psnr(a, b, mask) == clip_scores.psnr(a, b, mask)
    assert clip_scores.psnr(a, b) == pytest.approx(10 * np.log10(32))
    assert math.isnan(clip_scores.psnr(a, b, np.zeros((2, 4, 4), bool)))
    with pytest.raises(ValueError, match="shapes"):
        clip_scores.psnr(a, b[:1])
