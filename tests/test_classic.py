"""The classic inpainter: temporal fill from the nearest frame, cv2.inpaint for never-seen pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vp_ray.clip import masks as mask_io
from vp_ray.clip import video
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.config import ClassicModelConfig
from vp_ray.evaluation import clip_scores
from vp_ray.models.classic import ClassicInpainter, nearest_visible_frame

INPAINTER = ClassicInpainter(ClassicModelConfig())


def static_scene(count=6, height=20, width=30):
    """A smooth static background and a 6x6 square object moving 4 px right each frame."""
    y, x = np.mgrid[0:height, 0:width]
    background = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
    masks = np.zeros((count, height, width), bool)
    for t in range(count):
        masks[t, 7:13, 2 + 4 * t:8 + 4 * t] = True
    frames = np.repeat(background[None], count, axis=0)
    frames[masks] = (255, 0, 255)
    return background, frames, masks


def test_pixels_seen_in_another_frame_get_the_background_exactly():
    background, frames, masks = static_scene()
    result = INPAINTER.inpaint_clip(frames, masks, "", 0)
    assert result.dtype == np.uint8 and result.shape == frames.shape
    np.testing.assert_array_equal(result, np.repeat(background[None], len(frames), axis=0))


def test_unmasked_pixels_are_returned_bit_identical():
    _, frames, masks = static_scene()
    noisy = frames ^ np.random.default_rng(0).integers(0, 8, frames.shape, dtype=np.uint8)
    masks[:, 15:18, 20:24] = True  # also a region hidden in every frame: cv2.inpaint's turn
    result = INPAINTER.inpaint_clip(noisy, masks, "", 0)
    np.testing.assert_array_equal(result[~masks], noisy[~masks])
    assert not np.array_equal(result[masks], noisy[masks])


def test_never_seen_pixels_are_filled_from_their_surroundings():
    background, frames, masks = static_scene()
    masks[:, 14:17, 20:23] = True
    frames[masks] = (255, 0, 255)
    result = INPAINTER.inpaint_clip(frames, masks, "", 0)
    hole = result[:, 14:17, 20:23].astype(int)
    assert np.abs(hole - background[14:17, 20:23]).max() < 30  # a smooth guess, not the object's magenta


def test_the_temporally_nearest_visible_frame_is_used():
    masks = np.zeros((5, 1, 1), bool)
    masks[1:4] = True  # visible on frames 0 and 4 only
    assert nearest_visible_frame(masks)[:, 0, 0].tolist() == [0, 0, 0, 4, 4]  # a tie takes the earlier
    frames = (np.arange(5, dtype=np.uint8) * 10)[:, None, None, None].repeat(3, axis=3)
    assert INPAINTER.inpaint_clip(frames, masks, "", 0)[:, 0, 0, 0].tolist() == [0, 0, 0, 40, 40]
    assert nearest_visible_frame(np.ones((3, 1, 1), bool)).ravel().tolist() == [-1, -1, -1]


def test_no_denoising_steps_are_reported_and_memory_cannot_be_reduced():
    """A classic clip takes milliseconds and has no steps: no "step i/n" lines in the run's log."""
    _, frames, masks = static_scene(count=3)
    calls = []
    INPAINTER.inpaint_clip(frames, masks, "", 0, progress=lambda i, total: calls.append((i, total)))
    assert calls == []
    assert INPAINTER.reduce_memory() is False


def test_bad_inputs_fail_clearly():
    # (A bad inpaint_method never reaches the inpainter: the config refuses it, tests/test_run.py.)
    _, frames, masks = static_scene()
    with pytest.raises(ValueError, match="masks"):
        INPAINTER.inpaint_clip(frames, masks[:, :10], "", 0)


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory):
    return ensure_demo_dataset(tmp_path_factory.mktemp("demo"), height=120, width=180)


# Measured masked PSNR (dB) at 120x180, masks dilated by 5, H.264 included: 31.6 (landscape:
# part of its background is never visible, cv2.inpaint guesses it), 40.4 (portrait),
# 41.1 (odd size), 41.4 (24 fps source).
MIN_PSNR = {"demo00_landscape": 29.0, "demo01_portrait": 38.0, "demo02_odd_size": 38.0, "demo03_fps24": 38.0}


def test_demo_clips_are_restored_close_to_their_true_background(demo_csv):
    for row in pd.read_csv(demo_csv).to_dict("records"):
        folder = demo_csv.parent
        clip = video.read_clip(folder / row["video_path"])
        truth = video.read_video(folder / row["ground_truth_path"])[0][clip.indices]
        raw = mask_io.load_npz_masks(folder / row["mask_path"], row["mask_id"], clip.indices,
                                     clip.frames.shape[1:3])
        masks = mask_io.dilate_masks(raw, 5)  # covers the codec's blur around the object
        result = INPAINTER.inpaint_clip(clip.frames, masks, row["prompt"], 0)
        np.testing.assert_array_equal(result[~masks], clip.frames[~masks])
        score = clip_scores.masked_psnr(result, truth, masks)
        assert score > MIN_PSNR[row["clip_id"]], (row["clip_id"], score)
