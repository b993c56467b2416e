"""The data path prepares a VPData record's pipeline inputs as the original's ``infer/inpaint.py`` does.

``tests/data/parity/vpdata17.npz`` holds what the original made of the VPData-layout clip under
``tests/data/vpdata/`` (README beside the parity data: "Case vpdata17"): the masked video, the
masks and the first-frame image after its pipeline's processors, at 64x96. Our prepare stage
(decode, resample, resize, masks) and the inpainter's conditioning must give the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, compose_config
from vp_ray.clip import workdir
from vp_ray.clip.records import plan_dataset
from vp_ray.models.videopainter import condition_inputs
from vp_ray.stages.lineup import run_context
from vp_ray.stages.prepare import PrepareClips
from vp_ray.stages.read import ReadRecords

CLIP = REPO / "tests" / "data" / "vpdata"
CAPTURED = REPO / "tests" / "data" / "parity" / "vpdata17.npz"


def prepare(tmp_path: Path, *overrides: str) -> dict:
    """The VPData record through the read and prepare stages; returns its row."""
    ref = np.load(CAPTURED)
    cfg = compose_config([
        "dataset=pexels", f"dataset.path={CLIP / 'vpdata.csv'}", f"dataset.video_root={CLIP}",
        f"dataset.mask_root={CLIP}", "model=tiny", f"output_dir={tmp_path}",
        f"dilate_size={int(ref['dilate_size'])}", "max_seconds=2", *overrides])
    plan = plan_dataset(cfg)
    run = run_context(cfg, plan)
    batch = pd.read_csv(CLIP / "vpdata.csv")
    for stage in (ReadRecords, PrepareClips):
        batch = stage(cfg, plan, run)(batch)
    row = batch.iloc[0].to_dict()
    assert row["status"] != "failed", row.get("error")
    return row


def conditioned(row: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, and the video and masks the pipeline gets; frame 0 filled with the original frame
    (the capture's stand-in for FLUX.1-Fill)."""
    frames = workdir.load_array(row["work_dir"], workdir.FRAMES)
    masks = workdir.load_array(row["work_dir"], workdir.MASKS)
    masked = workdir.load_array(row["work_dir"], workdir.MASKED_VIDEO) \
        if workdir.has_array(row["work_dir"], workdir.MASKED_VIDEO) else None
    video, masks = condition_inputs(frames, masks, True, "flux", lambda frame, mask: frames[0], masked)
    return frames, video, masks


def test_vpdata_record_gets_the_original_pipeline_inputs(tmp_path):
    ref = np.load(CAPTURED)
    row = prepare(tmp_path)
    frames, video, masks = conditioned(row)
    assert row["num_frames"] == int(ref["num_frames"]) == len(frames)
    np.testing.assert_array_equal(frames, ref["frames"])     # Lanczos, not area averaging
    np.testing.assert_array_equal(masks, ref["masks"])       # dilated at the source size, then resized
    np.testing.assert_array_equal(video, ref["video"])       # hole of the undilated mask, cut before resizing
    np.testing.assert_array_equal(video[0], ref["image"])    # the image condition is video frame 0


def test_opencv_preprocess_is_the_other_path(tmp_path):
    """``preprocess=opencv`` is a real alternative: other pixels, a wider hole (the dilated mask)."""
    ref = np.load(CAPTURED)
    frames, video, masks = conditioned(prepare(tmp_path, "preprocess=opencv"))
    assert np.abs(frames.astype(int) - ref["frames"]).max() > 8
    holes = (video == 0).all(axis=-1)[1:]
    assert holes.sum() > (ref["video"] == 0).all(axis=-1)[1:].sum()
    np.testing.assert_array_equal(holes, masks[1:])   # blacked out exactly where it is filled


@pytest.mark.parametrize("mode", ["pad", "crop"])
def test_reference_preprocess_keeps_mask_and_hole_aligned_under_pad_and_crop(tmp_path, mode):
    row = prepare(tmp_path, f"resize_mode={mode}", "model.height=64", "model.width=64")
    frames, video, masks = conditioned(row)
    assert frames.shape[1:3] == masks.shape[1:] == (64, 64)
    hole = (video == 0).all(axis=-1) & ~(frames == 0).all(axis=-1)
    assert hole[1:].any() and not (hole[1:] & ~masks[1:]).any()   # the hole lies inside the filled region
