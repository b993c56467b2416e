"""Quality scores of every clip that need no ground truth, computed by the write stage.

A reviewer who watches a removal looks for four faults; each score measures one of them on the arrays
the write stage holds (the model-size source frames, the result before encoding, the object's masks
and the dilated hole the inpainter filled), so no video is decoded again:

``qa_drift``    the background changed: mean absolute difference between the result and the source
                outside the hole, in 8-bit levels (0: untouched; the hole protocol's ``out_mae`` x 255,
                with the source as the reference).
``qa_flicker``  the fill is less steady than the rest: each frame of the result (its luma) is predicted
                from the one before by optical flow (OpenCV's DIS on the result itself); the median
                prediction error inside the hole over the median outside it, averaged over the frame
                pairs, each plus one level (1: as steady as the background). Medians, because an edge
                that moves (an object, the hole's outline sliding over the background) leaves errors
                along it that no flow predicts (what it uncovers was not in the frame before): a thin
                band that a median ignores, where a fill that changes as a whole moves the median.
``qa_seam``     the hole's outline shows: the mean gradient of the result on the hole's outline (the
                pixels within one of it) over the mean gradient 3 to ``SEAM_BAND`` pixels away on
                either side (out of reach of the gradient's 3x3 kernel from the outline), each plus
                one level per pixel (1: the outline is as sharp as its surroundings).
``qa_object``   the object is painted back: of the colours the object has and its surroundings (a ring
                around the hole in the source) lack, the share found again where the object was in the
                result (0: none of them; 1: the object's colours all came back).

Frames wider than ``width`` pixels are shrunk to it first: flicker and seam run on the result's luma
averaged over the pixels each small one covers (INTER_AREA); drift and object on the pixels the small
frame picks (nearest: every fourth pixel of every fourth row of a 720-wide frame, their colours
unmixed), so drift is the full-size mean, sampled. At full size the scores would cost 28 to 41 % of
the write stage's time for a 49-frame 480x720 clip, against 3 to 4 % at 180 (bench/RESULTS.md,
"Quality scores in the write stage").
A score that cannot be measured is None: no hole, a one-frame clip (flicker), an object whose colours
its surroundings share (object). ``judge`` names the scores over their thresholds (``qa.max_*``): such
a clip is ``suspect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from vp_ray.config import QAConfig

# Each score's column, its threshold's key under ``qa``, and the short name ``qa_flags`` lists.
SCORES = {"qa_drift": "max_drift", "qa_flicker": "max_flicker", "qa_seam": "max_seam", "qa_object": "max_object"}
SEAM_BAND = 5        # pixels (of the shrunk frame) on either side of the outline that the seam compares with
RING = 6             # width in pixels (of the shrunk frame) of the surroundings the object is told from
COLOUR_LEVELS = 8    # per channel, for the object's colours (32 levels each: tolerant of small shifts)
MIN_DISTINCT = 0.25  # the share of the object's colours its surroundings must lack for qa_object to mean anything


def short_name(column: str) -> str:
    return column.removeprefix("qa_")


def score_clip(source: np.ndarray, result: np.ndarray, holes: np.ndarray, objects: np.ndarray,
               width: int = 180) -> dict[str, float | None]:
    """Every score of one clip. ``source``, ``result``: uint8 ``[T, H, W, 3]``; ``holes`` (the dilated
    masks the inpainter filled), ``objects`` (the object's own masks): bool ``[T, H, W]``."""
    size = shrunk_size(*result.shape[1:3], width)
    luma = np.stack([shrink(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), size) for frame in result])
    source, result, holes, objects = (pick(a, size) for a in (source, result, holes, objects))
    return {"qa_drift": drift(source, result, holes),
            "qa_flicker": flicker(luma, holes),
            "qa_seam": seam(luma, holes),
            "qa_object": object_share(source, result, holes, objects)}


def judge(scores: Mapping[str, Any], qa: QAConfig) -> list[str]:
    """The short names of the scores over their thresholds (a threshold of None never flags)."""
    flags = []
    for column, key in SCORES.items():
        value, limit = scores.get(column), getattr(qa, key)
        if value is not None and limit is not None and np.isfinite(value) and value > limit:
            flags.append(short_name(column))
    return flags


def describe(scores: Mapping[str, Any], flags: list[str], qa: QAConfig) -> str:
    """The flagged scores with their thresholds: ``seam 2.51 > 2, object 1.00 > 0.5``."""
    return ", ".join(f"{name} {scores[f'qa_{name}']:.2f} > {getattr(qa, SCORES[f'qa_{name}']):g}" for name in flags)


# ----------------------------------------------------------------------------- the scores

def drift(source: np.ndarray, result: np.ndarray, holes: np.ndarray) -> float | None:
    """Mean absolute difference outside the hole, in levels, over every pixel and channel."""
    total, count = 0.0, 0
    for src, res, hole in zip(source, result, holes):
        outside = np.logical_not(hole).view(np.uint8)
        pixels = cv2.countNonZero(outside)
        if pixels:
            total += sum(cv2.mean(cv2.absdiff(src, res), mask=outside)[:3]) / 3 * pixels
            count += pixels
    return total / count if count else None


def flicker(luma: np.ndarray, holes: np.ndarray) -> float | None:
    """Flow-compensated change from frame to frame inside the hole over outside it (see the module)."""
    if len(luma) < 2:
        return None
    flow_of = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    height, width = luma.shape[1:3]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    medians = []
    for t in range(1, len(luma)):
        flow = flow_of.calc(luma[t], luma[t - 1], None)  # luma[t](p) ~ luma[t - 1](p + flow(p))
        predicted = cv2.remap(luma[t - 1], grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        error = cv2.absdiff(luma[t], predicted)
        inside = holes[t].view(np.uint8)
        if inside.any() and not inside.all():
            medians.append((_median(error, inside), _median(error, 1 - inside)))
    if not medians:
        return None
    inside, outside = np.mean(medians, axis=0)
    return float((inside + 1) / (outside + 1))


def _median(values: np.ndarray, mask: np.ndarray) -> float:
    """Median of the uint8 ``values`` where ``mask`` is set, by their histogram (no copy of the pixels)."""
    counts = cv2.calcHist([values], [0], mask, [256], [0, 256]).ravel().cumsum()
    return float(np.searchsorted(counts, counts[-1] / 2))


def seam(luma: np.ndarray, holes: np.ndarray) -> float | None:
    """Gradient on the hole's outline over the gradient beside it (see the module)."""
    near, band = np.ones((5, 5), np.uint8), np.ones((2 * SEAM_BAND + 1,) * 2, np.uint8)
    sums, counts = np.zeros(2), np.zeros(2)
    for frame, hole in zip(luma, holes):
        mask = hole.view(np.uint8)
        if not mask.any() or mask.all():
            continue
        # Sobel's 3x3 kernels weigh a slope of one level per pixel as 8.
        gradient = (np.abs(cv2.Sobel(frame, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(frame, cv2.CV_32F, 0, 1))) / 8
        outline = cv2.dilate(mask, None) - cv2.erode(mask, None)   # 3x3: one pixel each side
        within_two = cv2.dilate(mask, near) - cv2.erode(mask, near)
        beside = (cv2.dilate(mask, band) - cv2.erode(mask, band)) & (1 - within_two)
        for i, region in enumerate((outline, beside)):
            pixels = cv2.countNonZero(region)
            sums[i] += cv2.mean(gradient, mask=region)[0] * pixels
            counts[i] += pixels
    if not counts.all():
        return None
    on, off = sums / counts
    return float((on + 1) / (off + 1))


def object_share(source: np.ndarray, result: np.ndarray, holes: np.ndarray, objects: np.ndarray) -> float | None:
    """Share of the object's distinctive colours found again in the result where the object was."""
    ring_kernel = np.ones((2 * RING + 1,) * 2, np.uint8)
    rings = np.stack([cv2.dilate(hole.view(np.uint8), ring_kernel) & (1 - hole.view(np.uint8)) for hole in holes])
    if not objects.any() or not rings.any():
        return None
    removed, surroundings = colours(source, objects), colours(source, rings)
    distinct = np.maximum(removed - surroundings, 0.0)  # colour mass the surroundings cannot explain
    if distinct.sum() < MIN_DISTINCT:
        return None
    return float(np.minimum(colours(result, objects), distinct).sum() / distinct.sum())


def colours(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Normalized colour histogram (``COLOUR_LEVELS`` per channel) of the pixels of ``frames`` (uint8
    ``[T, H, W, 3]``) where ``masks`` is set."""
    counts = np.zeros((COLOUR_LEVELS,) * 3, np.float64)
    for frame, mask in zip(frames, masks):
        counts += cv2.calcHist([frame], [0, 1, 2], mask.view(np.uint8), [COLOUR_LEVELS] * 3, [0, 256] * 3)
    return counts.ravel() / max(1.0, counts.sum())


# ----------------------------------------------------------------------------- sizes

def shrunk_size(height: int, width: int, target: int) -> tuple[int, int]:
    """(height, width) at most ``target`` wide, aspect kept; frames already narrower keep their size."""
    if width <= target:
        return height, width
    return max(1, round(height * target / width)), target


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One image at ``size`` (height, width), each pixel the mean of what it covers."""
    if image.shape[:2] == size:
        return image
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)


def pick(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames or masks at ``size`` by nearest pixel: masks stay masks, colours stay as they were."""
    if frames.shape[1:3] == size:
        return frames
    as_bytes = frames.view(np.uint8)
    picked = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_NEAREST) for f in as_bytes])
    return picked.view(bool) if frames.dtype == bool else picked
