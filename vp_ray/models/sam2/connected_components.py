"""SAM2's hole filling without its compiled extension.

sam2 fills small holes in every predicted mask (``fill_holes_in_mask_scores``, areas up to
``fill_hole_area=8`` in the video predictor) and removes small holes/sprinkles in the image
predictor. Both call ``sam2.utils.misc.get_connected_components``, which needs ``sam2._C``:
a CUDA-only kernel (CPU tensors are refused) that is absent when sam2 was installed with
``SAM2_BUILD_CUDA=0`` and fails with ``undefined symbol`` when built for another torch.
sam2 then skips the step with a warning, so masks differ slightly from those of a working
install. ``use_compiled_or_opencv`` puts an OpenCV function with the same outputs in its place.
"""

from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

log = logging.getLogger(__name__)


def connected_components(mask):
    """OpenCV twin of ``sam2._C.get_connected_componnets`` (8-connectivity).

    mask: [N, 1, H, W] tensor, nonzero = foreground. Returns (labels, areas), int32 tensors of
    the same shape on the same device: a component label per foreground pixel (0 on the
    background) and the area of the pixel's component (0 on the background). Labels number
    components differently from the kernel's; sam2 only uses ``labels > 0`` and the areas.
    """
    import torch

    binary = (mask > 0).to(torch.uint8).cpu().numpy()
    labels = np.zeros(binary.shape, np.int32)
    areas = np.zeros(binary.shape, np.int32)
    for i in range(binary.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(binary[i, 0], connectivity=8, ltype=cv2.CV_32S)
        labels[i, 0] = lab
        areas[i, 0] = np.where(lab > 0, stats[lab, cv2.CC_STAT_AREA], 0)
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


@functools.lru_cache(maxsize=None)
def compiled_kernel_error() -> str:
    """Why ``sam2._C`` cannot run here ("" if it works on this machine's GPU)."""
    import torch

    try:
        from sam2 import _C

        if not torch.cuda.is_available():
            return "no CUDA device for its kernel"
        _C.get_connected_componnets(torch.zeros(1, 1, 4, 4, dtype=torch.uint8, device="cuda"))
        return ""
    except Exception as error:  # noqa: BLE001 - ImportError, undefined symbol, kernel failure
        return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _dispatch(mask):
    even = mask.shape[-2] % 2 == 0 and mask.shape[-1] % 2 == 0  # the kernel's own requirement
    if mask.is_cuda and even and not compiled_kernel_error():
        import torch
        from sam2 import _C

        return _C.get_connected_componnets(mask.to(torch.uint8).contiguous())
    return connected_components(mask)


def use_compiled_or_opencv() -> None:
    """Make sam2's post-processing always run: ``_C`` for GPU masks where it works, OpenCV otherwise."""
    import sam2.utils.misc as misc

    if misc.get_connected_components is _dispatch:
        return
    misc.get_connected_components = _dispatch
    reason = compiled_kernel_error()
    if reason:
        log.info("sam2's compiled _C extension is unusable (%s): SAM2 hole filling runs on OpenCV", reason)
