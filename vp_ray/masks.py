"""Object masks: bool ``[T, H, W]``, True where the object to remove is.

Loaded from VPData ``all_masks.npz`` label maps, mask videos or PNG folders, always for the
same source frame numbers as the video, and checked against the video's size.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import cv2
import numpy as np

from vp_ray.errors import ClipError


def _check(masks: np.ndarray, indices: np.ndarray, expect_hw: tuple[int, int], source: str) -> np.ndarray:
    if masks.ndim != 3:
        raise ClipError(f"masks in {source} have shape {masks.shape}; expected [frames, height, width]",
                        kind="mask")
    if tuple(masks.shape[1:]) != tuple(expect_hw):
        raise ClipError(f"masks in {source} have shape {masks.shape[1]}x{masks.shape[2]} but the video is "
                        f"{expect_hw[0]}x{expect_hw[1]} (height x width)", kind="mask")
    needed = int(indices.max()) + 1 if len(indices) else 0
    if len(masks) < needed:
        raise ClipError(f"{source} has {len(masks)} mask frames but the clip needs source frame "
                        f"{needed - 1} (at least {needed} frames)", kind="mask")
    return masks[indices]


def load_npz_masks(path: str | os.PathLike, mask_id: int, indices: np.ndarray,
                   expect_hw: tuple[int, int]) -> np.ndarray:
    """VPData ``all_masks.npz``: a uint8 label map [frames, H, W]; the object is ``labels == mask_id``."""
    if not os.path.isfile(path):
        raise ClipError(f"mask file not found: {path}", kind="mask")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = "arr_0" if "arr_0" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise ClipError(f"{path} holds arrays {keys}; expected arr_0", kind="mask")
            labels = archive[key]
    except ClipError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise ClipError(f"cannot read mask file {path}: {error}", kind="mask") from None
    clip_labels = _check(labels, indices, expect_hw, str(path))
    masks = clip_labels == mask_id
    if not masks.any() and not (labels == mask_id).any():
        present = [int(v) for v in np.unique(clip_labels) if v != 0]
        raise ClipError(f"mask_id {mask_id} does not occur in {path}; object ids present: "
                        f"{present[:10]}", kind="mask")
    return masks  # may be empty on these frames: the caller reports an empty mask


def load_mask_video(path: str | os.PathLike, indices: np.ndarray, expect_hw: tuple[int, int]) -> np.ndarray:
    from vp_ray.video import read_video

    if not os.path.isfile(path):
        raise ClipError(f"mask video not found: {path}", kind="mask")
    frames, _ = read_video(path)
    return _check(frames.max(axis=-1) > 127, indices, expect_hw, str(path))


def load_png_masks(folder: str | os.PathLike, indices: np.ndarray, expect_hw: tuple[int, int]) -> np.ndarray:
    files = sorted(Path(folder).glob("*.png")) if Path(folder).is_dir() else []
    if not files:
        raise ClipError(f"no PNG masks in {folder}", kind="mask")
    needed = int(indices.max()) + 1
    if len(files) < needed:
        raise ClipError(f"{folder} has {len(files)} PNG masks but the clip needs {needed}", kind="mask")
    masks = []
    for i in indices:
        image = cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise ClipError(f"cannot read mask {files[i]}", kind="mask")
        masks.append(image > 127)
    return _check(np.stack(masks), np.arange(len(indices)), expect_hw, str(folder))


def dilate_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Grow each mask with a size x size box kernel, so the fill covers the object's fringe."""
    if size <= 0:
        return masks.astype(bool)
    kernel = np.ones((size, size), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)


def save_vpdata_masks(path: str | os.PathLike, masks: np.ndarray) -> None:
    """Write masks as a VPData ``all_masks.npz`` (arr_0 label map, object = 1), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.npz")
    np.savez_compressed(tmp, arr_0=np.asarray(masks, bool).astype(np.uint8))
    os.replace(tmp, path)


def mask_stats(masks: np.ndarray) -> dict[str, float]:
    per_frame = masks.reshape(len(masks), -1).mean(axis=1)
    return {"area": float(per_frame.mean()), "area_frame0": float(per_frame[0]),
            "empty_frames": int((per_frame == 0).sum())}
