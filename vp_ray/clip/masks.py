"""Object masks: bool ``[T, H, W]``, True where the object to remove is.

Loaded from VPData ``all_masks.npz`` label maps, mask videos or PNG folders, always for the
same source frame numbers as the video, and checked against the video's size; ``fit_clip`` makes a
clip's frames and object masks the model's inputs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.video import Placement, fit_frames, fit_masks, read_video
from vp_ray.config import Preprocess
from vp_ray.errors import ClipError


def _pick(masks: np.ndarray, indices: np.ndarray, expect_hw: tuple[int, int], source: str) -> np.ndarray:
    """The frames ``indices`` of ``masks`` [frames, H, W], after checking its shape against the video."""
    if masks.ndim != 3:
        raise ClipError(f"masks in {source} have shape {masks.shape}; expected [frames, height, width]",
                        kind="mask")
    if tuple(masks.shape[1:]) != tuple(expect_hw):
        raise ClipError(f"masks in {source} have shape {masks.shape[1]}x{masks.shape[2]} but the video "
                        f"is {expect_hw[0]}x{expect_hw[1]} (height x width)", kind="mask")
    needed = int(np.max(indices)) + 1 if len(indices) else 0
    if len(masks) < needed:
        raise ClipError(f"{source} has {len(masks)} mask frames but the clip needs source frame "
                        f"{needed - 1} (at least {needed} frames)", kind="mask")
    return masks[indices]


def _read_label_map(path: str | os.PathLike) -> np.ndarray:
    if not os.path.isfile(path):
        raise ClipError(f"mask file not found: {path}", kind="mask")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a plain .npy holding the label map
            return loaded
        with loaded as archive:
            keys = list(archive.keys())
            # VPData uses arr_0 (np.savez's default name); accept any name for a single array.
            key = "arr_0" if "arr_0" in keys else keys[0] if len(keys) == 1 else None
            if key is None:
                raise ClipError(f"{path} holds arrays {keys}; expected one, named arr_0", kind="mask")
            return archive[key]
    except ClipError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, zlib, format and OS errors all mean unreadable
        raise ClipError(f"cannot read mask file {path}: {type(error).__name__}: {error}", kind="mask") from None


def load_npz_masks(path: str | os.PathLike, mask_id: int, indices: np.ndarray,
                   expect_hw: tuple[int, int]) -> np.ndarray:
    """VPData ``all_masks.npz``: a uint8 label map [frames, H, W] indexed like the whole source
    video; the object is ``labels == mask_id``. Returns the masks of the source frames ``indices``.
    """
    labels = _read_label_map(path)
    masks = _pick(labels, indices, expect_hw, str(path)) == mask_id
    if not masks.any() and not (labels == mask_id).any():
        present = [int(v) for v in np.unique(labels) if v != 0]
        raise ClipError(f"mask_id {mask_id} does not occur in {path}; object ids present: "
                        f"{present[:10]}{' ...' if len(present) > 10 else ''}", kind="mask")
    return masks  # may be empty on these frames only: the caller reports an empty mask


def load_mask_video(path: str | os.PathLike, indices: np.ndarray, expect_hw: tuple[int, int]) -> np.ndarray:
    """A mask video: the object is where any channel is above 127 (robust to codec noise)."""
    if not os.path.isfile(path):
        raise ClipError(f"mask video not found: {path}", kind="mask")
    needed = int(np.max(indices)) + 1 if len(indices) else 1
    try:
        frames, _ = read_video(path, max_frames=needed)
    except ClipError as error:
        raise ClipError(f"mask video: {error}", kind="mask") from None
    return _pick(frames.max(axis=-1) > 127, indices, expect_hw, str(path))


def _natural_key(path: Path) -> list:
    """frame_2.png before frame_10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _binary(image: np.ndarray) -> np.ndarray:
    """A mask image (grey, RGB or RGBA; 8 or 16 bit) -> bool, object where any colour channel is bright."""
    if image.ndim == 3:
        image = image[..., :3].max(axis=-1)
    return image > np.iinfo(image.dtype).max // 2


def load_png_masks(folder: str | os.PathLike, indices: np.ndarray, expect_hw: tuple[int, int]) -> np.ndarray:
    """A folder of PNG masks, one per source frame, in natural file-name order."""
    files = sorted(Path(folder).glob("*.png"), key=_natural_key) if Path(folder).is_dir() else []
    if not files:
        raise ClipError(f"no PNG masks in {folder} (missing folder, or no *.png in it)", kind="mask")
    needed = int(np.max(indices)) + 1 if len(indices) else 0
    if len(files) < needed:
        raise ClipError(f"{folder} has {len(files)} PNG mask frames but the clip needs source frame "
                        f"{needed - 1} (at least {needed} frames)", kind="mask")
    masks = []
    for i in indices:
        image = cv2.imread(str(files[i]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ClipError(f"cannot read mask image {files[i]}", kind="mask")
        if image.shape[:2] != tuple(expect_hw):
            raise ClipError(f"mask image {files[i]} has shape {image.shape[0]}x{image.shape[1]} but the "
                            f"video is {expect_hw[0]}x{expect_hw[1]} (height x width)", kind="mask")
        masks.append(_binary(image))
    return np.stack(masks) if masks else np.zeros((0, *expect_hw), bool)


def require_object(masks: np.ndarray) -> np.ndarray:
    """``masks`` as booleans; a ClipError if no frame shows any object: there is nothing to remove."""
    masks = masks.astype(bool)
    if not masks.any():
        raise ClipError("the mask is empty on every frame: nothing to remove", kind="mask")
    return masks


def black_out(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``frames`` with the pixels under ``masks`` set to black (the original's masked video)."""
    return np.where(masks[..., None].astype(bool), np.uint8(0), frames)


def dilate_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Grow each mask with a size x size box kernel, so the fill also covers the object's fringe."""
    if size <= 0:
        return masks.astype(bool)
    kernel = np.ones((size, size), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) for m in masks]).astype(bool)


@dataclass(frozen=True)
class MaskRule:
    """How a clip's object masks become what the inpainter fills, decided once for the clip (by the
    prepare stage, ``vp_ray.clip.workdir.ClipInfo``) whether its masks come from a file or from SAM2."""

    dilate_size: int         # square kernel in pixels of the masks it is applied to (0: none)
    # The masked video blacks the object out undilated, as the original prepares it
    # (preprocess=reference); otherwise none is kept and the inpainter blacks out the dilated masks.
    black_out_object: bool

    def apply(self, frames: np.ndarray, objects: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(the masks the inpainter fills, the masked video it is conditioned on or None) for the
        object masks ``objects`` of ``frames``, both at the same size."""
        masks = dilate_masks(objects, self.dilate_size)
        return masks, black_out(frames, objects) if self.black_out_object else None


def index_like_source(masks: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Masks of the frames ``indices`` of a source video -> one mask per source frame from 0 to the
    last one used, as VPData files index them. A frame skipped by fps resampling (or before the
    clip's start) takes the mask of the nearest frame that was used."""
    indices = np.asarray(indices)
    frames = np.arange(int(indices[-1]) + 1)
    right = np.clip(np.searchsorted(indices, frames), 0, len(indices) - 1)
    left = np.clip(right - 1, 0, len(indices) - 1)
    nearest = np.where(np.abs(indices[left] - frames) <= np.abs(indices[right] - frames), left, right)
    return masks[nearest]


def save_vpdata_masks(path: str | os.PathLike, masks: np.ndarray) -> None:
    """Write masks as a VPData ``all_masks.npz`` (arr_0 uint8 label map, object = mask_id 1), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, arr_0=np.asarray(masks, bool).astype(np.uint8))


@dataclass
class FittedClip:
    """A clip as the model takes it, at the model's size."""

    frames: np.ndarray                # uint8 [T, H, W, 3]
    masks: np.ndarray                 # bool [T, H, W]: the hole (the object, dilated)
    masked_video: np.ndarray | None   # uint8 [T, H, W, 3]: the object blacked out at the source size
                                      # (``reference``); None: the inpainter blacks out ``masks``
    objects: np.ndarray               # bool [T, H, W]: the object masks as given, fitted (undilated)


def fit_clip(frames: np.ndarray, object_masks: np.ndarray, placement: Placement,
             preprocess: Preprocess | str = Preprocess.reference, dilate_size: int = 0) -> FittedClip:
    """Source frames and object masks -> the model's inputs, as the prepare stage makes them from a
    mask file (README, "Frames"): ``reference`` dilates by ``dilate_size`` source pixels and blacks
    out the undilated object at the source size, then resizes both; ``opencv`` resizes, then dilates
    by ``dilate_size`` pixels of the model frame."""
    try:
        preprocess = Preprocess(preprocess)
    except ValueError:
        raise ValueError(f"preprocess {preprocess!r} is not one of reference, opencv") from None
    rule = MaskRule(dilate_size, black_out_object=preprocess is Preprocess.reference)
    fitted = fit_frames(frames, placement, preprocess)
    objects = fit_masks(object_masks, placement, preprocess)
    if preprocess is Preprocess.reference:
        masks, masked_video = rule.apply(frames, object_masks)
        return FittedClip(fitted, fit_masks(masks, placement), fit_frames(masked_video, placement), objects)
    masks, _ = rule.apply(fitted, objects)
    return FittedClip(fitted, masks, None, objects)
