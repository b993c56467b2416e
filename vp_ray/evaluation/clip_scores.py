"""Scores of a whole clip against a reference (uint8 frames): PSNR, also of the inpainted region, and
SSIM, as ``python -m vp_ray.tools.compare`` reports them. The benchmark's per-frame metrics, as the
paper computes them, are ``pixel.py``'s."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 frames ``[T, H, W, 3]``; ``mask`` (bool ``[T, H, W]``) restricts it to
    those pixels. Identical pixels give inf; an empty mask gives nan (nothing was scored).
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare frames of shapes {a.shape} and {b.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[np.asarray(mask, bool)]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def masked_psnr(result: np.ndarray, truth: np.ndarray, masks: np.ndarray) -> float:
    """PSNR of the inpainted region only: what the inpainter actually had to invent."""
    return psnr(result, truth, masks)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of uint8 frames ``[T, H, W, 3]`` (Wang et al.'s Gaussian-window SSIM, as
    scikit-image computes it, over each frame's three channels; 1.0 = identical)."""
    from skimage.metrics import structural_similarity

    if a.shape != b.shape:
        raise ValueError(f"cannot compare frames of shapes {a.shape} and {b.shape}")
    return float(np.mean([structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False)
                          for x, y in zip(a, b)]))
