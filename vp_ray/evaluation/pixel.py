"""Pixel metrics of one frame pair: PSNR, SSIM, MSE, MAE on values in [0, 1].

Each takes two float64 ``[H, W, 3]`` images in [0, 1] and an optional ``region`` (bool ``[H, W]``): with
a region, the mean runs over its pixels only (``protocol=hole``); without, over the whole frame (what
the authors' torchmetrics calls compute). An empty region gives nan: nothing was scored.
"""

from __future__ import annotations

import cv2
import numpy as np

# torchmetrics' SSIM defaults, as the authors construct it: Gaussian window of sigma 1.5, its size
# int(3.5 * sigma + 0.5) * 2 + 1 = 11, k1 = 0.01, k2 = 0.03, data range 1.
SSIM_SIGMA = 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2


def _mean(values: np.ndarray, region: np.ndarray | None) -> float:
    if region is None:
        return float(values.mean())
    picked = values[np.asarray(region, bool)]
    return float(picked.mean()) if picked.size else float("nan")


def mse(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    return _mean((a - b) ** 2, region)


def mae(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    return _mean(np.abs(a - b), region)


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """10 log10(1 / MSE) for a data range of 1: identical pixels give inf (as torchmetrics does)."""
    error = mse(a, b, region)
    if error == 0:
        return float("inf")
    return float(10 * np.log10(1.0 / error))


def _gaussian_window() -> np.ndarray:
    size = int(3.5 * SSIM_SIGMA + 0.5) * 2 + 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    return window / window.sum()


_WINDOW32 = _gaussian_window().astype(np.float32)


def _blur(image: np.ndarray) -> np.ndarray:
    # Reflection without repeating the edge (torch's "reflect" padding = OpenCV's REFLECT_101).
    return cv2.sepFilter2D(image, cv2.CV_32F, _WINDOW32, _WINDOW32, borderType=cv2.BORDER_REFLECT_101)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM index of every pixel and channel, ``[H, W, 3]``.

    As torchmetrics computes it from version 1.5 on: the images are reflection-padded by the
    window's radius and every pixel keeps its index, the border ones included (before 1.5 it
    cropped the border away). Negative local variances from rounding are clamped to 0. In float32,
    as torchmetrics computes it on the authors' float32 images.
    """
    a, b = a.astype(np.float32), b.astype(np.float32)
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = np.maximum(_blur(a * a) - mu_a ** 2, 0.0)
    var_b = np.maximum(_blur(b * b) - mu_b ** 2, 0.0)
    cov = _blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / \
        ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    return _mean(ssim_map(a, b).astype(np.float64), region)
