"""What is measured on one clip, under each protocol, and how clips add up.

``vpbench`` is the authors' evaluation (``evaluate/eval_inpainting.py`` and ``evaluate/metrics.py`` of
VideoPainter), surprises included (README, "Evaluation"):

* the reference goes through their float32 round trip, which lowers 8-bit values 1..63 by one;
* with ``replace_gt`` the result is composited: the result inside the hole, the reference outside;
* the "masked" PSNR/SSIM/LPIPS/MSE/MAE black out the hole of the *result only* (the reference keeps
  its content there), so with the composite they do not depend on the result at all;
* the masked CLIP scores keep the hole and black out the rest;
* the benchmark's averages weight every frame (a long clip counts more); temporal consistency is
  averaged per clip; I3D runs with BatchNorm on each video's own statistics.

``hole`` measures what the names promise: each metric inside the hole and outside it, over those
pixels only, both images masked the same way, on the result as written (no composite, no round trip);
a clip's values are the mean of its frames and the benchmark's the mean of its clips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vp_ray.config import EvalProtocol
from vp_ray.evaluation import pixel
from vp_ray.evaluation.frames import ClipFrames, replace_gt, vpbench_reference
from vp_ray.evaluation.learned import LearnedMetrics, i3d_features, temporal_consistency


@dataclass
class ClipScores:
    frames: dict[str, list[float]]                     # each per-frame metric, frame by frame
    clip: dict[str, float | None]                      # per-clip metrics (temporal consistency)
    real_features: np.ndarray | None = None            # I3D features of the reference and the result
    fake_features: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Protocol:
    name: str
    frame_metrics: tuple[str, ...]
    clip_metrics: tuple[str, ...]
    frame_weighted: bool    # benchmark averages over all frames (True) or over clips' means (False)
    score: Callable[..., ClipScores]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.frame_metrics + self.clip_metrics


def _unit(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64) / 255.0


def _clip_scores(learned: LearnedMetrics, image: np.ndarray, hole: np.ndarray,
                 prompt: str) -> tuple[float | None, float | None]:
    """CLIP score of the whole frame, and of the frame with all but the hole blacked out."""
    if learned.clip_score is None:
        return None, None
    inside = (image * hole[..., None]).astype(np.uint8)
    return learned.clip_score.score(image, prompt), learned.clip_score.score(inside, prompt)


def _temporal(learned: LearnedMetrics, frames: np.ndarray, hole: np.ndarray) -> tuple[float | None, float | None]:
    if learned.temporal is None or len(frames) < 2:
        return None, None
    return temporal_consistency(learned.temporal, frames), temporal_consistency(learned.temporal, frames, hole)


def score_vpbench(frames: ClipFrames, prompt: str, learned: LearnedMetrics, replace: bool = True) -> ClipScores:
    reference = vpbench_reference(frames.reference)
    result = replace_gt(frames.result, reference, frames.hole) if replace else frames.result
    values: dict[str, list[float]] = {name: [] for name in VPBENCH.frame_metrics}
    for ref, res, hole in zip(reference, result, frames.hole):
        o, c = _unit(ref), _unit(res)
        c_outside = c * (~hole)[..., None]   # the result's hole blacked out; the reference untouched
        for prefix, comp in (("", c), ("masked_", c_outside)):
            values[prefix + "psnr"].append(pixel.psnr(o, comp))
            values[prefix + "ssim"].append(pixel.ssim(o, comp))
            values[prefix + "mse"].append(pixel.mse(o, comp))
            values[prefix + "mae"].append(pixel.mae(o, comp))
            values[prefix + "lpips"].append(learned.lpips.distance(o, comp) if learned.lpips else None)
        whole, inside = _clip_scores(learned, res, hole, prompt)
        values["clip_score"].append(whole)
        values["masked_clip_score"].append(inside)
        values["masked_region_clip_score"].append(inside)  # the region caption: the record's one prompt
    plain, masked = _temporal(learned, result, frames.hole)
    scores = ClipScores(values, {"temporal_consistency": plain, "masked_temporal_consistency": masked})
    if learned.i3d is not None:
        scores.real_features = i3d_features(learned.i3d, reference, batch_statistics=True)
        scores.fake_features = i3d_features(learned.i3d, result, batch_statistics=True)
    return scores


def score_hole(frames: ClipFrames, prompt: str, learned: LearnedMetrics, replace: bool = True) -> ClipScores:
    del replace  # the result is scored as written
    values: dict[str, list[float]] = {name: [] for name in HOLE.frame_metrics}
    for ref, res, hole in zip(frames.reference, frames.result, frames.hole):
        r, c = _unit(ref), _unit(res)
        for prefix, region in (("hole_", hole), ("out_", ~hole)):
            keep = region[..., None]
            values[prefix + "psnr"].append(pixel.psnr(r, c, region))
            values[prefix + "mse"].append(pixel.mse(r, c, region))
            values[prefix + "mae"].append(pixel.mae(r, c, region))
            values[prefix + "ssim"].append(pixel.ssim(r * keep, c * keep, region))
            values[prefix + "lpips"].append(learned.lpips.distance(r * keep, c * keep)
                                            if learned.lpips and region.any() else None)
        whole, inside = _clip_scores(learned, res, hole, prompt)
        values["clip_score"].append(whole)
        values["hole_clip_score"].append(inside)
    plain, inside = _temporal(learned, frames.result, frames.hole)
    scores = ClipScores(values, {"temporal_consistency": plain, "hole_temporal_consistency": inside})
    if learned.i3d is not None:
        scores.real_features = i3d_features(learned.i3d, frames.reference, batch_statistics=False)
        scores.fake_features = i3d_features(learned.i3d, frames.result, batch_statistics=False)
    return scores


_PIXEL = ("psnr", "ssim", "lpips", "mse", "mae")
VPBENCH = Protocol(
    "vpbench",
    frame_metrics=_PIXEL + ("clip_score",) + tuple(f"masked_{m}" for m in _PIXEL)
    + ("masked_clip_score", "masked_region_clip_score"),
    clip_metrics=("temporal_consistency", "masked_temporal_consistency"),
    frame_weighted=True, score=score_vpbench)
HOLE = Protocol(
    "hole",
    frame_metrics=tuple(f"hole_{m}" for m in _PIXEL) + tuple(f"out_{m}" for m in _PIXEL)
    + ("clip_score", "hole_clip_score"),
    clip_metrics=("temporal_consistency", "hole_temporal_consistency"),
    frame_weighted=False, score=score_hole)
PROTOCOLS = {p.name: p for p in (VPBENCH, HOLE)}


def protocol_for(choice: EvalProtocol) -> Protocol:
    """The protocol ``eval.protocol`` chooses."""
    return PROTOCOLS[choice.value]


# ----------------------------------------------------------------------------- adding up

def clip_means(protocol: Protocol, frames: dict[str, list[float]]) -> dict[str, float | None]:
    """A clip's value of each frame metric: the mean of its frames.

    ``vpbench`` keeps the authors' plain mean (one identical frame makes the PSNR inf); ``hole`` skips
    the frames where a region is empty (nan). None: the metric was not computed.
    """
    out: dict[str, float | None] = {}
    for name in protocol.frame_metrics:
        column = frames[name]
        if not column or any(v is None for v in column):
            out[name] = None
            continue
        values = np.asarray(column, np.float64)
        if not protocol.frame_weighted:
            values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if values.size else float("nan")
    return out


def overall(protocol: Protocol, rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The benchmark's numbers from the scored clips' rows (their means and ``frames``)."""
    out: dict[str, float | None] = {}
    for name in protocol.columns:
        pairs = [(row[name], row["frames"]) for row in rows if row.get(name) is not None]
        if not pairs or len(pairs) < len(rows):
            out[name] = None
            continue
        values = np.array([v for v, _ in pairs], np.float64)
        if protocol.frame_weighted and name in protocol.frame_metrics:
            counts = np.array([n for _, n in pairs], np.float64)
            out[name] = float((values * counts).sum() / counts.sum())
        else:
            values = values[~np.isnan(values)]
            out[name] = float(values.mean()) if values.size else None
    return out


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> tuple[float | None, str]:
    """FVID from the clips' I3D features (one row per clip), as the authors compute it: Fréchet
    distance of the two Gaussians fitted to them. Returns (value, note); None when it cannot be had."""
    import warnings

    from scipy import linalg

    if len(real) < 2:
        return None, "FVID needs at least 2 clips"
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    with warnings.catch_warnings():  # fewer clips than features: the product is singular, as it was for the authors
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1.dot(s2))
    note = ""
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
        note = "singular product: 1e-6 added to the covariances' diagonals"
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            return None, f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in the covariance root"
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)), note
