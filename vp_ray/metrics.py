"""Scores against a known clean background."""

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
