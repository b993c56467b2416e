"""SAM2 segmentation: clicks or a box on frame 0 -> a mask on every frame.

Built on the official ``sam2`` package's video predictor (``init_state``,
``add_new_points_or_box``, ``propagate_in_video``). Two things are ours:

* frames come from memory (sam2's ``init_state`` reads a JPEG folder or an mp4 through
  decord): we hand it the already-decoded frames, preprocessed exactly as its loader does;
* sam2's hole-filling post-processing needs its compiled ``_C`` extension, which is often
  missing or built for another torch (``undefined symbol``). Without it sam2 silently skips
  the step; we put an OpenCV implementation of the same function in its place instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import cv2
import numpy as np

from vp_ray.errors import ClipError, ConfigError

log = logging.getLogger(__name__)
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- _C fallback

def connected_components(mask):
    """OpenCV twin of sam2's ``_C.get_connected_componnets`` (8-connectivity).

    mask: [N, 1, H, W] tensor, nonzero = foreground. Returns (labels, areas), both
    [N, 1, H, W] int32: component label per foreground pixel (0 = background) and the
    area of the pixel's component (0 = background).
    """
    import torch

    binary = (mask > 0).to(torch.uint8).cpu().numpy()
    labels = np.zeros(binary.shape, np.int32)
    areas = np.zeros(binary.shape, np.int32)
    for i in range(binary.shape[0]):
        _, lab, stats, _ = cv2.connectedComponentsWithStats(binary[i, 0], connectivity=8)
        labels[i, 0] = lab
        areas[i, 0] = np.where(lab > 0, stats[lab, cv2.CC_STAT_AREA], 0)
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def ensure_postprocessing() -> bool:
    """Use sam2's compiled ``_C`` if it works, else our OpenCV version. True if ``_C`` is used."""
    import sam2.utils.misc as misc
    import torch

    try:
        from sam2 import _C

        _C.get_connected_componnets(torch.zeros(1, 1, 4, 4, dtype=torch.uint8))
        return True
    except Exception as error:  # noqa: BLE001 - ImportError, undefined symbol, no CUDA ...
        if misc.get_connected_components is not connected_components:
            log.info("sam2's _C extension is unavailable (%s); hole filling uses OpenCV instead",
                     str(error).splitlines()[0][:120])
            misc.get_connected_components = connected_components
        return False


# ----------------------------------------------------------------------------- placement

@dataclass(frozen=True)
class Sam2Placement:
    """Resources of the SAM2 pool and what is left per inpainting actor.

    Fractional GPUs pack onto the first GPUs instead of spreading, so "SAM2 at 0.25 next to
    VideoPainter at 0.75 on every GPU" silently loses inpainting actors once the SAM2 pool
    has more than one actor. The modes below are safe whatever Ray packs where:

    * ``cpu``: SAM2 runs on CPUs; inpainting actors keep whole GPUs.
    * ``shared``: k SAM2 actors take ``gpu_fraction`` each and every inpainting actor asks
      for ``1 - k * gpu_fraction``: even if all k land on one GPU, that GPU still has room
      for its inpainting actor, so all N are placed.
    * ``dedicated``: the k SAM2 actors share ``dedicated_gpus`` whole GPUs (packing is then
      what we want); the inpainting pool gets the other GPUs.
    """

    mode: str
    sam2_num_gpus: float
    inpaint_num_gpus: float
    inpaint_gpus_available: float


def plan_placement(sam2_cfg: dict[str, Any], model_num_gpus: float, cluster_gpus: float) -> Sam2Placement:
    mode = sam2_cfg["placement"]
    if mode == "auto":
        mode = "shared" if cluster_gpus >= 1 and model_num_gpus > 0 else "cpu"
    size = sam2_cfg["pool_size"]
    if mode == "cpu":
        return Sam2Placement("cpu", 0.0, model_num_gpus, cluster_gpus)
    if cluster_gpus < 1:
        raise ConfigError(f"sam2.placement={mode} needs GPUs but the Ray cluster has none")
    if mode == "shared":
        taken = size * sam2_cfg["gpu_fraction"]
        if not 0 < taken < model_num_gpus:
            raise ConfigError(f"sam2.pool_size x sam2.gpu_fraction = {taken:g} must be below the "
                              f"inpainting actor's {model_num_gpus:g} GPU")
        return Sam2Placement("shared", sam2_cfg["gpu_fraction"], round(model_num_gpus - taken, 4),
                             cluster_gpus)
    if mode == "dedicated":
        dedicated = sam2_cfg["dedicated_gpus"]
        if dedicated >= cluster_gpus:
            raise ConfigError(f"sam2.dedicated_gpus={dedicated} leaves no GPU for inpainting "
                              f"(cluster has {cluster_gpus:g})")
        return Sam2Placement("dedicated", dedicated / size, model_num_gpus, cluster_gpus - dedicated)
    raise ConfigError(f"sam2.placement {mode!r} is not auto, cpu, shared or dedicated")


# ----------------------------------------------------------------------------- prompts

def parse_prompts(points_json: str, box_json: str, placement=None, coords: str = "source"):
    """Points ``[(x, y, label)]`` and box ``(x0, y0, x1, y1)`` in the model frame's pixels."""
    from vp_ray.video import to_model_coords

    points = [tuple(p) for p in json.loads(points_json)] if points_json else []
    box = tuple(json.loads(box_json)) if box_json else None
    if coords == "source" and placement is not None:
        points = [(*to_model_coords(x, y, placement), label) for x, y, label in points]
        if box is not None:
            box = (*to_model_coords(box[0], box[1], placement), *to_model_coords(box[2], box[3], placement))
    elif coords not in ("source", "model"):
        raise ValueError(f"prompt coordinates {coords!r} are not source or model")
    return points, box


def check_prompts(points, box, height: int, width: int, placement=None, coords: str = "source") -> None:
    """Raise a ClipError naming any click or box corner outside the frame."""
    def outside(x, y):
        return not (0 <= x <= width - 1 and 0 <= y <= height - 1)

    where = (f"the {placement.source_width}x{placement.source_height} source frame"
             if coords == "source" and placement is not None else f"the {width}x{height} frame")
    for x, y, _ in points:
        if outside(x, y):
            raise ClipError(f"click ({x:g}, {y:g}) (in model pixels) lies outside {where}", kind="bad_input")
    if box is not None and (outside(box[0], box[1]) or outside(box[2], box[3])):
        raise ClipError(f"box {tuple(round(v, 1) for v in box)} (in model pixels) goes outside {where}",
                        kind="bad_input")
    if not points and box is None:
        raise ClipError("no click or box to segment from", kind="bad_input")


# ----------------------------------------------------------------------------- the model

class Segmenter:
    def __init__(self, predictor, device):
        self.predictor = predictor
        self.device = device

    def segment_clip(self, frames: np.ndarray, points, box=None,
                     progress: Optional[Callable[[int, int], None]] = None,
                     threshold: float = 0.0) -> np.ndarray:
        """Masks (bool [T, H, W]) of the object marked on frame 0, propagated over every frame."""
        import torch

        count, height, width = frames.shape[:3]
        check_prompts(points, box, height, width, coords="model")
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                    else contextlib.nullcontext())
        masks = np.zeros((count, height, width), bool)
        with torch.inference_mode(), autocast:
            state = self._init_state(frames)
            kwargs = {}
            if points:
                kwargs["points"] = np.array([p[:2] for p in points], np.float32)
                kwargs["labels"] = np.array([p[2] for p in points], np.int32)
            if box is not None:
                kwargs["box"] = np.array(box, np.float32)
            self.predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **kwargs)
            for done, (index, _, logits) in enumerate(self.predictor.propagate_in_video(state), 1):
                masks[index] = (logits[0, 0] > threshold).cpu().numpy()
                if progress:
                    progress(done, count)
            self.predictor.reset_state(state)
        return masks

    def _init_state(self, frames: np.ndarray):
        """sam2's ``init_state`` with our frames instead of its file loader's."""
        import sam2.sam2_video_predictor as video_predictor
        import torch
        import torch.nn.functional as F

        size = self.predictor.image_size
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        # sam2's loader resizes with PIL's bicubic filter; torch's bicubic + antialias matches it closely.
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True,
                               align_corners=False).clamp(0, 1)
        images = (images - torch.tensor(IMAGE_MEAN)[:, None, None]) / torch.tensor(IMAGE_STD)[:, None, None]
        images = images.to(self.device)
        height, width = frames.shape[1:3]

        def from_memory(**_):
            return images, height, width

        original = video_predictor.load_video_frames
        video_predictor.load_video_frames = from_memory
        try:
            return self.predictor.init_state(video_path="<frames in memory>")
        finally:
            video_predictor.load_video_frames = original


def _ensure_sam2_hydra() -> None:
    """sam2 finds its model configs through a global Hydra it initialises at import time;
    a Hydra app that ran in this process since (ours) may have replaced it."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    initialize_config_module("sam2", version_base="1.2")


def load_segmenter(sam2_cfg: dict[str, Any]) -> Segmenter:
    """The official SAM2 video predictor, with real weights or (``random_init``) none."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    device_name = sam2_cfg["device"]
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoint = None if sam2_cfg["random_init"] else sam2_cfg["checkpoint"]
    if checkpoint is not None:
        import os

        if not os.path.isfile(checkpoint):
            raise ConfigError(f"SAM2 checkpoint not found: {checkpoint} (see ckpt/README.md; "
                              "sam2.random_init=true runs without weights, for tests)")
    overrides = [f"++model.image_size={sam2_cfg['image_size']}"] if sam2_cfg["image_size"] else []
    ensure_postprocessing()
    _ensure_sam2_hydra()
    # sam2 loads checkpoints with torch.load(weights_only=True): no pickled code runs.
    predictor = build_sam2_video_predictor(sam2_cfg["config"], ckpt_path=checkpoint, device=device_name,
                                           hydra_overrides_extra=overrides)
    if not sam2_cfg["random_init"]:
        log.info("SAM2 loaded from %s (%s) on %s", checkpoint, sam2_cfg["config"], device_name)
    return Segmenter(predictor, torch.device(device_name))
