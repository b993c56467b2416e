"""SAM2 segmentation: clicks or a box on frame 0 -> a mask on every frame.

Built on the official ``sam2`` package's video predictor (``init_state``,
``add_new_points_or_box``, ``propagate_in_video``, ``reset_state``). What is ours:

* frames come from memory (``init_state`` reads a JPEG folder or an mp4): the prepared clip
  is handed to it directly, preprocessed as its loader does, with no JPEG round trip;
* prompts are checked and mapped into the model frame before SAM2 sees them (``vp_ray.clip.prompts``);
* hole filling works without sam2's compiled extension (``vp_ray.models.sam2.connected_components``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from typing import Any, Callable, Optional

import numpy as np

from vp_ray.clip.prompts import Box, Point, check_prompts
from vp_ray.config import Dtype, Sam2Config, Sam2Device
from vp_ray.errors import ConfigError
from vp_ray.models import gpu
from vp_ray.models.sam2.connected_components import use_compiled_or_opencv

log = logging.getLogger(__name__)
IMAGE_MEAN = (0.485, 0.456, 0.406)  # sam2's load_video_frames defaults
IMAGE_STD = (0.229, 0.224, 0.225)
DTYPES = {Dtype.bfloat16: "bfloat16", Dtype.float16: "float16", Dtype.float32: None}  # autocast; float32: none


# ----------------------------------------------------------------------------- the model

class Segmenter:
    """One loaded SAM2 video predictor; segments one clip at a time."""

    def __init__(self, predictor, device, mask_threshold: float = 0.0, dtype: Optional[str] = "bfloat16"):
        self.predictor = predictor
        self.device = device
        self.mask_threshold = mask_threshold
        self.dtype = dtype

    def segment_clip(self, frames: np.ndarray, points: list[Point], box: Optional[Box] = None,
                     progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """Masks (bool [T, H, W]) of the object marked on frame 0 (``frames``: uint8 [T, H, W, 3];
        prompts in its pixels), propagated over every frame. ``progress(done, total)`` per frame."""
        import torch

        count, height, width = frames.shape[:3]
        check_prompts(points, box, width, height)
        masks = np.zeros((count, height, width), bool)
        with torch.inference_mode(), self._autocast():
            state = self._init_state(frames)
            try:
                self.predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **_prompt(points, box))
                for done, (index, _, logits) in enumerate(self.predictor.propagate_in_video(state), 1):
                    masks[index] = (logits[0, 0] > self.mask_threshold).cpu().numpy()
                    if progress:
                        progress(done, count)
            finally:
                self.predictor.reset_state(state)
        return masks

    def segment_first_frame(self, frame: np.ndarray, points: list[Point], box: Optional[Box] = None,
                            state: Optional[dict] = None) -> tuple[np.ndarray, dict]:
        """The mask (bool [H, W]) ``segment_clip`` gives frame 0 for these prompts (the first frame's
        output comes from its own prompts alone, before any propagation), and the predictor state
        holding the frame's image features: given back with the same ``frame``, it skips the image
        encoder, so that each further click costs only SAM2's prompt encoder and mask decoder."""
        import torch

        height, width = frame.shape[:2]
        check_prompts(points, box, width, height)
        with torch.inference_mode(), self._autocast():
            if state is None:
                state = self._init_state(frame[None])
            else:
                self.predictor.reset_state(state)
            _, _, logits = self.predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, **_prompt(points, box))
        return (logits[0, 0] > self.mask_threshold).cpu().numpy(), state

    def _autocast(self):
        import torch

        if self.device.type == "cuda" and self.dtype:
            return torch.autocast("cuda", dtype=getattr(torch, self.dtype))
        return contextlib.nullcontext()

    def _init_state(self, frames: np.ndarray) -> dict:
        """sam2's ``init_state`` on in-memory frames.

        ``init_state`` gets its frames from the module-level ``load_video_frames`` (JPEG folder
        or mp4 only) and then builds a state dict whose layout changes between sam2 releases.
        Swapping the loader for the duration of the call keeps all of sam2's own state building;
        copying that instead would break on the next release. A Ray actor runs one clip at a time.
        """
        import sam2.sam2_video_predictor as video_predictor
        import torch
        import torch.nn.functional as F

        size = self.predictor.image_size
        images = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        # The loader resizes to a size x size square with PIL's bicubic filter (antialiased).
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True,
                               align_corners=False).clamp_(0, 1)
        mean = torch.tensor(IMAGE_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(IMAGE_STD, device=self.device)[:, None, None]
        images = (images - mean) / std
        height, width = frames.shape[1:3]

        def from_memory(**_):
            return images, height, width

        original = video_predictor.load_video_frames
        video_predictor.load_video_frames = from_memory
        try:
            return self.predictor.init_state(video_path="<frames in memory>")
        finally:
            video_predictor.load_video_frames = original


def _prompt(points: list[Point], box: Optional[Box]) -> dict[str, Any]:
    """Clicks and a box as ``add_new_points_or_box`` takes them."""
    prompt: dict[str, Any] = {}
    if points:
        prompt["points"] = np.array([p[:2] for p in points], np.float32)
        prompt["labels"] = np.array([p[2] for p in points], np.int32)
    if box is not None:
        prompt["box"] = np.array(box, np.float32)
    return prompt


def model_config_name(name: str) -> str:
    """A sam2 model config name as sam2's Hydra finds it: ``configs/sam2/sam2_hiera_l.yaml``,
    ``configs/sam2.1/sam2.1_hiera_l.yaml``; short names (``sam2.1_hiera_l``) are expanded."""
    from importlib.resources import files

    if not name.endswith(".yaml"):
        name += ".yaml"
    if "/" not in name:
        name = f"configs/{'sam2.1' if name.startswith('sam2.1') else 'sam2'}/{name}"
    package = files("sam2")
    if not package.joinpath(name).is_file():
        known = sorted(f"configs/{d.name}/{f.name}" for d in package.joinpath("configs").iterdir()
                       if d.is_dir() for f in d.iterdir() if f.name.endswith(".yaml"))
        raise ConfigError(f"sam2.config {name!r} is not a model config of the sam2 package; "
                          f"known: {', '.join(known)}")
    return name


@contextlib.contextmanager
def _sam2_hydra():
    """sam2 composes its model configs through the global Hydra it initialises at import time;
    a Hydra app (ours) may own that global now. Borrow it for sam2, then give it back."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("sam2", version_base="1.2"):
            yield
    finally:
        restore_gh_from_backup(backup)


def _build(sam2_cfg: Sam2Config, config: str, device: str):
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    overrides = [f"++model.image_size={sam2_cfg.image_size}"] if sam2_cfg.image_size else []
    with _sam2_hydra(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # random_init: the same weights in every actor and every run
        return build_sam2_video_predictor(config, ckpt_path=None, device=device,
                                          hydra_overrides_extra=overrides)


def _load_checkpoint(predictor, checkpoint: str, config: str) -> None:
    """sam2's own loader (``torch.load(weights_only=True)``: a file cannot run code; strict keys),
    with errors that say what is wrong."""
    from sam2.build_sam import _load_checkpoint

    try:
        _load_checkpoint(predictor, checkpoint)
    except pickle.UnpicklingError as error:
        raise ConfigError(f"SAM2 checkpoint {checkpoint} holds more than tensors and is refused "
                          f"(loaded with weights_only=True): {str(error).splitlines()[0]}") from None
    except KeyError as error:
        raise ConfigError(f"SAM2 checkpoint {checkpoint} has no {error} entry: not a SAM2 checkpoint") from None
    except RuntimeError as error:
        cause = str(error).splitlines()[0][:200] if str(error) else "missing or unexpected weights, logged above"
        raise ConfigError(f"SAM2 checkpoint {checkpoint} does not fit model config {config} ({cause}); "
                          "SAM 2.1 checkpoints need configs/sam2.1/sam2.1_hiera_*.yaml, SAM 2 ones "
                          "configs/sam2/sam2_hiera_*.yaml") from None


def require_checkpoint(sam2_cfg: Sam2Config) -> None:
    """A ConfigError if the configured SAM2 checkpoint is not there (random weights need none)."""
    if not sam2_cfg.random_init and not os.path.isfile(sam2_cfg.checkpoint):
        raise ConfigError(f"SAM2 checkpoint not found: {sam2_cfg.checkpoint} (SAM2 turns clicks and "
                          "boxes into masks; see ckpt/README.md, or give masks as files instead; "
                          "sam2.random_init=true runs without weights, for tests)")


def load_segmenter(sam2_cfg: Sam2Config) -> Segmenter:
    """The official SAM2 video predictor for the ``sam2`` config group, with real weights or
    (``random_init``) none."""
    import torch

    if sam2_cfg.device is Sam2Device.auto:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = sam2_cfg.device.value
    config = model_config_name(sam2_cfg.config)
    require_checkpoint(sam2_cfg)
    checkpoint = None if sam2_cfg.random_init else sam2_cfg.checkpoint
    use_compiled_or_opencv()
    gpu.limit_memory(torch.device(device), sam2_cfg.gpu_memory_limit_gb)
    predictor = _build(sam2_cfg, config, device)
    if checkpoint is not None:
        _load_checkpoint(predictor, checkpoint, config)
    log.info("SAM2 %s from %s on %s", config, checkpoint or "random weights", device)
    return Segmenter(predictor, torch.device(device), sam2_cfg.mask_threshold, DTYPES[sam2_cfg.dtype])
