"""Mask loading, checking, dilation and the VPData mask file (vp_ray/clip/masks.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vp_ray.clip import masks as mask_io
from vp_ray.clip.video import write_video
from vp_ray.errors import ClipError

HW = (24, 32)


def label_map(frames: int = 6) -> np.ndarray:
    """Object 1 in the left half, object 3 in a box that moves right one pixel a frame."""
    labels = np.zeros((frames, *HW), np.uint8)
    labels[:, :, :16] = 1
    for t in range(frames):
        labels[t, 8:16, 18 + t:24 + t] = 3
    return labels


def test_npz_label_map_gives_the_ids_mask_on_the_chosen_frames(tmp_path):
    labels = label_map()
    np.savez_compressed(tmp_path / "all_masks.npz", labels)
    masks = mask_io.load_npz_masks(tmp_path / "all_masks.npz", 3, np.array([1, 4]), HW)
    assert masks.dtype == bool
    np.testing.assert_array_equal(masks, labels[[1, 4]] == 3)


def test_an_npz_with_one_array_under_another_name_is_accepted(tmp_path):
    np.savez(tmp_path / "labels.npz", labels=label_map())
    assert mask_io.load_npz_masks(tmp_path / "labels.npz", 1, np.arange(6), HW)[:, :, :16].all()


def test_masks_are_indexed_like_the_source_with_the_nearest_used_frame():
    masks = np.arange(3)[:, None, None] * np.ones((3, *HW), np.uint8)  # frame t holds the value t
    indexed = mask_io.index_like_source(masks, np.array([2, 6, 10]))  # e.g. 30 fps sampled at 8
    assert indexed.shape == (11, *HW)
    assert list(indexed[:, 0, 0]) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2]  # ties go to the earlier frame
    np.testing.assert_array_equal(indexed[[2, 6, 10]], masks)  # the used frames load back exactly


def test_saved_masks_load_back_as_mask_id_1(tmp_path):
    masks = label_map() == 3
    mask_io.save_vpdata_masks(tmp_path / "all_masks.npz", masks)
    with np.load(tmp_path / "all_masks.npz", allow_pickle=False) as archive:
        assert list(archive.keys()) == ["arr_0"] and archive["arr_0"].dtype == np.uint8
    np.testing.assert_array_equal(mask_io.load_npz_masks(tmp_path / "all_masks.npz", 1, np.arange(6), HW), masks)
    assert [p.name for p in tmp_path.iterdir()] == ["all_masks.npz"]  # no temporary file left behind


def write_npz(path, array=None, **arrays):
    np.savez(path, *([] if array is None else [array]), **arrays)


def truncated_npz(path):
    write_npz(path, label_map())
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize("make, mask_id, message", [
    (lambda p: None, 1, "not found"),
    (lambda p: p.write_bytes(b"not an npz file" * 10), 1, "cannot read"),
    (truncated_npz, 1, "cannot read"),
    (lambda p: write_npz(p, a=label_map(), b=label_map()), 1, "expected one, named arr_0"),
    (lambda p: write_npz(p, label_map()[0]), 1, "expected \\[frames, height, width\\]"),
    (lambda p: write_npz(p, np.zeros((6, 24, 30), np.uint8)), 1, "shape 24x30 but the video is 24x32"),
    (lambda p: write_npz(p, label_map(3)), 1, "has 3 mask frames but the clip needs source frame 5"),
    (lambda p: write_npz(p, label_map()), 7, r"mask_id 7 does not occur .*ids present: \[1, 3\]"),
])
def test_bad_npz_masks_raise_a_mask_error(tmp_path, make, mask_id, message):
    path = tmp_path / "all_masks.npz"
    make(path)
    with pytest.raises(ClipError, match=message) as error:
        mask_io.load_npz_masks(path, mask_id, np.arange(6), HW)
    assert error.value.kind == "mask" and str(path) in str(error.value)


def test_a_mask_id_absent_on_the_clips_frames_only_gives_empty_masks(tmp_path):
    labels = label_map()
    labels[3:] = 0  # object 3 leaves after frame 2: the caller reports the empty clip
    np.savez(tmp_path / "m.npz", labels)
    assert not mask_io.load_npz_masks(tmp_path / "m.npz", 3, np.array([3, 5]), HW).any()


def test_mask_video_is_thresholded_on_any_channel(tmp_path):
    masks = label_map(8) == 1
    frames = np.zeros((8, *HW, 3), np.uint8)
    frames[masks] = (0, 0, 255)  # a blue mask still counts
    write_video(tmp_path / "mask.mp4", frames, 8)
    loaded = mask_io.load_mask_video(tmp_path / "mask.mp4", np.array([0, 2, 7]), HW)
    assert (loaded != masks[[0, 2, 7]]).mean() < 0.02
    with pytest.raises(ClipError, match="at least 9 frames") as error:
        mask_io.load_mask_video(tmp_path / "mask.mp4", np.array([8]), HW)
    assert error.value.kind == "mask"
    with pytest.raises(ClipError, match="the video is 30x32"):
        mask_io.load_mask_video(tmp_path / "mask.mp4", np.array([0]), (30, 32))
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    for bad, message in ((tmp_path / "none.mp4", "not found"), (tmp_path / "junk.mp4", "corrupt")):
        with pytest.raises(ClipError, match=message) as error:
            mask_io.load_mask_video(bad, np.array([0]), HW)
        assert error.value.kind == "mask"


def test_png_masks_follow_natural_file_order(tmp_path):
    for i in range(12):  # 10.png sorts after 9.png, not after 1.png
        image = np.zeros((*HW, 3), np.uint8)
        image[i, :] = (0, 0, 255)  # red in OpenCV's BGR: any bright channel counts
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
    masks = mask_io.load_png_masks(tmp_path, np.array([2, 10, 11]), HW)
    assert [int(np.flatnonzero(m.any(axis=1))[0]) for m in masks] == [2, 10, 11]


def test_bad_png_masks_raise_a_mask_error(tmp_path):
    for folder in (tmp_path / "missing", tmp_path):  # no folder; a folder without PNGs
        with pytest.raises(ClipError, match="no PNG masks"):
            mask_io.load_png_masks(folder, np.array([0]), HW)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"m{i:03d}.png"), np.zeros(HW, np.uint8))
    with pytest.raises(ClipError, match="has 3 PNG mask frames .*at least 5 frames"):
        mask_io.load_png_masks(tmp_path, np.array([4]), HW)
    with pytest.raises(ClipError, match="the video is 20x32") as error:
        mask_io.load_png_masks(tmp_path, np.array([1]), (20, 32))
    assert error.value.kind == "mask"


def test_dilation_grows_by_a_square_box():
    masks = np.zeros((2, 9, 9), bool)
    masks[0, 4, 4] = True
    grown = mask_io.dilate_masks(masks, 3)
    assert grown[0].sum() == 9 and grown[0, 3:6, 3:6].all() and not grown[1].any()
    np.testing.assert_array_equal(mask_io.dilate_masks(masks, 0), masks)
