"""VideoPainter: the Python API and the inpainting stage's model, one object.

``VideoPainter.from_pretrained(ckpt)`` then ``.inpaint(video, masks, prompt)`` takes frames of any
size and length and gives them back at that size; the batch job's inpainting stage loads the same
class from the run's ``model.*`` settings (``model=videopainter`` / ``model=tiny``), one instance per
actor, and calls the two methods ``inpaint`` is made of: ``prepare_clip`` (the host's share) and
``inpaint_prepared`` (the GPU's).

Each clip is inpainted the way the original scripts call the pipeline: the masked video (object
blacked out) is both the video and, through its first frame, the image condition; with
``first_frame_gt`` frame 0 is filled (``first_frame_fill``) and its mask cleared; the generator is
seeded per clip. Clips shorter than 49 frames are mirrored to 49 and cut back (``pad_short_clips``).
Longer clips run in windows of 49 sharing their boundary frame (``long_video``; or none, the
reference's ``overlap=0``), the last one filled by mirroring the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vp_ray.clip.masks import black_out, fit_clip
from vp_ray.clip.video import placement_for, restore_frames
from vp_ray.config import VideoPainterModelConfig, model_settings, with_values
from vp_ray.models import WINDOW_FRAMES, Progress, gpu
from vp_ray.models.attention_backend import backbone_attention_shape, choose_attention
from vp_ray.models.checkpoint import DTYPES, load_pipeline, tree_paths
from vp_ray.models.compile_plan import decide as decide_compile
from vp_ray.models.compile_plan import decide_vae
from vp_ray.models.host_weights import HostWeights
from vp_ray.models.id_lora import ADAPTER, id_lora_path, load_id_lora, write_tiny_id_lora
from vp_ray.models.long_video import inpaint_windows, window_starts
from vp_ray.models.pipeline import VideoPainterPipeline
from vp_ray.models.speed import compile_blocks, compile_vae, fp8_linear_layers, require_fp8_gpu, reuse_attention
from vp_ray.models.timeline import ClipPhases, Timeline
from vp_ray.models.vae_tiling import enable_vae_tiling

log = logging.getLogger(__name__)

# Consecutive windows of a long clip share their boundary frame: result frame j is source frame j.
# (0, the reference's: 49 frames per window, the boundary frames of two windows blended into one.)
WINDOW_OVERLAP = 1

# GPU memory (GiB) of one 49x480x720 window with the full-size model in bf16, measured on an H200
# (bench/RESULTS.md: `bench_videopainter.py`, `long_windows.py --cap`). `memory_mode=auto` picks the
# fastest plan that fits the memory the actor may use (free memory, or its cap if lower).
PEAK_RESIDENT_GIB = 35.7          # everything resident, VAE untiled (the decode is the peak)
HEADROOM_GIB = 1.0                # the CUDA context and the allocator's slack
# T5 visiting the GPU per clip, large VAE tiles: 20.5 GiB allocated at the peak (T5's visit), but the
# allocator's cached blocks took its reserved memory to 25.4 GiB under a 26 GiB cap; it needs what the
# plan it replaced needed (resident + small tiles: 24.7 + 1.0), the cap it was run at. Untiled (26.3
# GiB allocated) it ran out of memory under a 31 GiB cap (5.8 GiB cached but unusable): auto never
# picks it.
NEED_TEXT_ENCODER_OFFLOAD_LARGE_TILES_GIB = 25.7
# (GiB needed, memory mode, VAE tiles), fastest first; below the last, model CPU offload + small
# tiles. Per clip, the second plan costs about 0.7 s more than the first on an H200 (T5 brought from
# pinned host memory 0.2 s, large tiles' encodes and decode 0.45 s), 1.9 s less than resident + small
# tiles.
MEMORY_PLANS = [
    (PEAK_RESIDENT_GIB + HEADROOM_GIB, "resident", "none"),
    (NEED_TEXT_ENCODER_OFFLOAD_LARGE_TILES_GIB, "text_encoder_offload", "large"),
]
# The VAE tiles of an explicitly chosen memory mode (vae_tiling=null).
TILES_OF_MODE = {"resident": "none", "text_encoder_offload": "large", "model_offload": "small",
                 "sequential_offload": "small"}
# ID resampling's attention builds doubled keys and values per block (extra K/V, the normed
# previous tokens, the concatenations): about 7 x 218 MB at 49x480x720 in bf16, freed per block.
# An estimate from the tensor sizes, not a measurement.
ID_RESAMPLING_TRANSIENT_GIB = 1.5


def block_outputs_gib(transformer_config, bytes_per_value: int = 2) -> float:
    """GiB of every block's output (text + video tokens, both CFG halves) at the model's sample
    size: 8.54 GiB for CogVideoX-5b-I2V in bf16."""
    c = transformer_config
    latent_frames = (c.sample_frames - 1) // 4 + 1
    video_tokens = latent_frames * (c.sample_height // c.patch_size) * (c.sample_width // c.patch_size)
    tokens = c.max_text_seq_length + video_tokens
    values = c.num_layers * 2 * tokens * c.num_attention_heads * c.attention_head_dim
    return values * bytes_per_value / 2**30


def id_resampling_state_gib(transformer_config, bytes_per_value: int = 2) -> float:
    """GiB that ID resampling may hold through a window: the previous window's block outputs at
    its last step, plus its attention's transient. It holds only the masked tokens of that output,
    but the plan is made before any mask is known: this is the most it can hold."""
    return block_outputs_gib(transformer_config, bytes_per_value) + ID_RESAMPLING_TRANSIENT_GIB


def attention_reuse_cache_gib(transformer_config, bytes_per_value: int = 2) -> float:
    """GiB that attention reuse holds: each block's attention output, kept between the steps that
    reuse it (the same size as the block outputs; H200: +8.3 GiB of peak, bench/RESULTS.md)."""
    return block_outputs_gib(transformer_config, bytes_per_value)


def plan_extras(model_cfg: VideoPainterModelConfig, transformer_config,
                bytes_per_value: int = 2) -> list[tuple[str, float]]:
    """(what, GiB) that the settings add to every plan's peak: ID resampling's state, attention
    reuse's cache."""
    extras = []
    if model_cfg["id_resampling"]:
        extras.append(("ID resampling", id_resampling_state_gib(transformer_config, bytes_per_value)))
    if model_cfg["approx_attention_reuse"] > 1:
        extras.append(("attention reuse", attention_reuse_cache_gib(transformer_config, bytes_per_value)))
    return extras


def describe_plan(memory_mode: str, vae_tiles: str) -> str:
    """A memory plan as the log, the manifest and the run's summary name it."""
    return memory_mode if vae_tiles == "none" else f"{memory_mode} + {vae_tiles} VAE tiles"


def plan_memory(available_gib: float, extra_gib: float = 0.0) -> tuple[str, str]:
    """(memory mode, VAE tiles) for an actor that may use ``available_gib``: resident untiled on 80
    GB+ cards; on a 32 GB card T5 visits the GPU per clip and the VAE runs in large tiles; model CPU
    offload below 25.7 GiB. ``extra_gib`` (ID resampling's state, attention reuse's cache) is added to
    every plan's peak."""
    available_gib -= extra_gib
    for needed, mode, tiles in MEMORY_PLANS:
        if available_gib >= needed:
            return mode, tiles
    return "model_offload", "small"


def padded_length(count: int, overlap: int = WINDOW_OVERLAP) -> int:
    """Frames a clip of ``count`` is inpainted as: one window of 49, or whole windows of 49 sharing
    ``overlap`` frames (48n + 1 with the default overlap 1, 49n with 0)."""
    if count <= WINDOW_FRAMES:
        return WINDOW_FRAMES
    stride = WINDOW_FRAMES - overlap
    return overlap + stride * -(-(count - overlap) // stride)


def fits_windows(count: int, overlap: int = WINDOW_OVERLAP) -> bool:
    """Whether ``count`` frames fill their windows without padding: 4k + 1 up to one window, whole
    windows sharing ``overlap`` frames beyond."""
    if count <= WINDOW_FRAMES:
        return count >= 1 and (count - 1) % 4 == 0
    return (count - overlap) % (WINDOW_FRAMES - overlap) == 0


def result_indices(count: int, window: int, overlap: int) -> np.ndarray:
    """For each of a clip's ``count`` frames, its frame in the joined result. Sharing a frame
    (overlap 1), result frame j is clip frame j; with overlap 0 the two boundary frames of two
    windows share the one result frame that blends them."""
    stride = window - overlap
    frames = np.arange(count)
    return (window - 1) * (frames // stride) + frames % stride


def mirrored_indices(length: int, total: int) -> np.ndarray:
    """0, 1, ..., length-1, length-2, ..., 0, 1, ...: ``total`` frame indices bouncing off both ends."""
    if length == 1:
        return np.zeros(total, dtype=int)
    period = 2 * (length - 1)
    phase = np.arange(total) % period
    return np.where(phase < length, phase, period - phase)


def condition_inputs(frames: np.ndarray, masks: np.ndarray, first_frame_gt: bool, first_frame_fill: str,
                     fill: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                     masked_video: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The video and masks the pipeline gets, prepared as the original scripts do.

    The object is blacked out in every frame (``masked_video`` when the data path made it, else
    ``frames`` under ``masks``). With ``first_frame_gt`` frame 0 becomes ground truth: its mask is
    cleared, so frame 0 (after ``first_frame_fill``) is kept and conditions the whole clip. The
    original fills it with FLUX.1-Fill; ``opencv`` is a light stand-in, ``none`` leaves the hole
    black as the original's single-clip demo does.
    """
    masks = masks.astype(bool)
    video = black_out(frames, masks) if masked_video is None else masked_video.copy()
    if first_frame_gt:
        if first_frame_fill == "flux":
            video[0] = fill(np.ascontiguousarray(frames[0]), masks[0])
        elif first_frame_fill == "opencv":
            import cv2

            video[0] = cv2.inpaint(np.ascontiguousarray(frames[0]), masks[0].astype(np.uint8), 5,
                                   cv2.INPAINT_TELEA)
        elif first_frame_fill != "none":
            raise ValueError(f"unknown first_frame_fill {first_frame_fill!r}: expected flux, opencv or none")
        masks[0] = False
    return video, masks


def check_clip(video: Any, masks: Any) -> None:
    """One clear error for what ``VideoPainter.inpaint`` cannot take: ``TypeError`` for a wrong array
    type, ``ValueError`` for shapes that disagree, no frames or an empty mask."""
    def shown(value: Any) -> str:
        return f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__

    if not (isinstance(video, np.ndarray) and video.dtype == np.uint8 and video.ndim == 4
            and video.shape[-1] == 3):
        raise TypeError(f"video: expected a uint8 numpy array [T, H, W, 3] (RGB), got {shown(video)}")
    if not (isinstance(masks, np.ndarray) and masks.dtype == bool and masks.ndim == 3):
        raise TypeError(f"masks: expected a bool numpy array [T, H, W] (True where the object is), got "
                         f"{shown(masks)}")
    if masks.shape != video.shape[:3]:
        raise ValueError(f"masks {masks.shape} do not match the video's frames {video.shape[:3]} ([T, H, W])")
    if len(video) == 0:
        raise ValueError("video: no frames (at least 1 is needed)")
    if not masks.any():
        raise ValueError("masks: empty on every frame, nothing to remove")


@dataclass
class PreparedClip:
    """A clip's inputs as the pipeline takes them (``VideoPainter.prepare_clip``), made on the host
    while the GPU may still work on the clip before. With a GPU they are in pinned memory, so that
    their upload is queued without the host waiting."""

    video: torch.Tensor       # uint8 [T, H, W, 3]: the masked video, padded to whole windows, frame 0 filled
    masks: torch.Tensor       # bool [T, H, W]; frame 0 cleared with first_frame_gt
    count: int                # the clip's own frames: the result is cut back to them
    prompt: str
    # (frame 0, its mask) for FLUX.1-Fill, which runs on the GPU in the clip's turn (first_frame_fill=flux)
    first_frame: tuple[np.ndarray, np.ndarray] | None = None
    overlap: int = WINDOW_OVERLAP   # frames consecutive windows share (0 or 1)


@dataclass
class InpaintedWindow:
    """One window of a clip, its latents decoded alone (the clip's frames decode the windows joined)."""

    start: int            # the clip's first frame in the window
    stop: int             # one past its last (a mirrored padding beyond the clip is cut)
    frames: np.ndarray    # uint8 [stop - start, H, W, 3]


@dataclass
class InpaintResult:
    """What ``VideoPainter.inpaint`` gives back, at the input's size."""

    frames: np.ndarray                          # uint8 [T, H, W, 3]: as many frames as the input
    windows: list[InpaintedWindow] | None = None  # with return_windows=True
    warnings: list[str] | None = None           # e.g. a prompt cut to the text encoder's length


def checkpoint_folders(checkpoint: str | Path | tuple[str | Path, str | Path]) -> tuple[Path, Path]:
    """(base model folder, branch folder) of a checkpoint root (``ckpt/``) or of such a pair."""
    if isinstance(checkpoint, (tuple, list)):
        if len(checkpoint) != 2:
            raise ValueError(f"checkpoint: expected a root folder or (base model folder, branch folder), "
                             f"got {len(checkpoint)} paths")
        return Path(checkpoint[0]), Path(checkpoint[1])
    return tree_paths(checkpoint)


def load_videopainter(model_cfg: VideoPainterModelConfig) -> VideoPainterPipeline:
    """The pipeline of ``model_cfg`` on the CPU, with the VideoPainterID LoRA loaded (inactive) when
    ``id_resampling`` is set; a tiny random tree is written first where ``create_tiny_if_missing`` asks."""
    base, branch = model_cfg["base_model_path"], model_cfg["branch_path"]
    if model_cfg["create_tiny_if_missing"] and not Path(base).exists() and not Path(branch).exists():
        from vp_ray.models.tiny import write_tiny_tree

        log.info("writing a tiny random checkpoint at %s and %s", base, branch)
        write_tiny_tree(base, branch)
    pipe = load_pipeline(base, branch, model_cfg["dtype"])
    if model_cfg["id_resampling"]:
        lora = Path(model_cfg["id_lora_path"])
        if model_cfg["create_tiny_if_missing"] and not lora.is_file():
            log.info("writing a tiny random VideoPainterID LoRA at %s", lora)
            write_tiny_id_lora(lora, pipe.transformer)
        load_id_lora(pipe, lora)
    return pipe


# Settings from_pretrained takes from its own arguments, not from **settings: where they come from.
OWN_ARGUMENTS = {"name": "fixed", "base_model_path": "the checkpoint argument",
                 "branch_path": "the checkpoint argument", "id_resampling": "the id_lora argument",
                 "id_lora_path": "the id_lora argument", "create_tiny_if_missing": "fixed"}


class VideoPainter:
    """VideoPainter loaded once on one device: ``from_pretrained`` then ``inpaint`` for any video.

    The batch job's inpainting actors are instances too, made from the run's ``model.*`` settings
    (``VideoPainter(model_cfg)``), and call the methods ``inpaint`` is made of (``prepare_clip``,
    ``inpaint_prepared``) on frames the prepare stage already fitted to the model's size; they also
    use the ``Inpainter`` protocol's memory ladder (``reduce_memory``, ``release_memory``)."""

    def __init__(self, model_cfg: VideoPainterModelConfig, pipe: VideoPainterPipeline | None = None,
                 device: str | torch.device | None = None):
        """Load the checkpoint named by ``model_cfg`` (or use ``pipe``, already built) onto ``device``
        (None: the GPU if there is one)."""
        self.cfg = model_cfg
        self.pipe = pipe if pipe is not None else load_videopainter(model_cfg)
        self.pipe.set_progress_bar_config(disable=True)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        # At rest the model is plain VideoPainter: ID resampling is switched on per call.
        self.pipe.disable_id_resampling()
        if self.has_id_lora:
            self.pipe.transformer.disable_adapters()
        self.compile_choice = decide_compile(model_cfg, self.device.type == "cuda")
        log.info("compiled blocks: %s", self.compile_choice.describe())
        if self.compile_choice.on:
            compile_blocks(self.pipe)
        self.vae_compile_choice = decide_vae(model_cfg, self.device.type == "cuda")
        log.info("compiled VAE: %s", self.vae_compile_choice.describe())
        if self.vae_compile_choice.on:
            compile_vae(self.pipe.vae, dynamic=False)
        if model_cfg["approx_attention_reuse"] > 1:
            reuse_attention(self.pipe, model_cfg["approx_attention_reuse"],
                            model_cfg["approx_attention_reuse_timesteps"])
        gpu.limit_memory(self.device, model_cfg["gpu_memory_limit_gb"])
        self.memory_mode, self.vae_tiles = self._resolve_memory_mode()
        if model_cfg["vae_tiling"] is not None:
            self.vae_tiles = "small" if model_cfg["vae_tiling"] else "none"
        self._apply_memory_mode()
        if model_cfg["approx_fp8_linear"]:
            require_fp8_gpu(self.device)
            fp8_linear_layers(self.pipe)
        # Timed with the weights in place (the memory plan made without the timer's tensors), before
        # any clip: a compiled block keeps the kernel in force at its first call.
        self.attention = choose_attention(
            model_cfg["attention_backend"], self.device, dtype=self.pipe.transformer.dtype,
            shape=lambda: backbone_attention_shape(self.pipe, model_cfg["height"], model_cfg["width"],
                                                   model_cfg["guidance_scale"], WINDOW_FRAMES))
        log.info(self.attention.reason)
        self.flux = self._load_flux(model_cfg) if model_cfg["first_frame_fill"] == "flux" else None
        self.last_warnings: list[str] = []
        # The last clip's GPU timeline (None if it failed): the stage records it in the clip's row.
        self.last_phases: ClipPhases | None = None

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path | tuple[str | Path, str | Path],
                        id_lora: str | Path | bool | None = None, memory_mode: str = "auto",
                        dtype: str | torch.dtype = "bfloat16", device: str | torch.device | None = None,
                        **settings: Any) -> VideoPainter:
        """VideoPainter from the checkpoint tree the batch job loads (``ckpt/README.md``).

        checkpoint: the tree's root (holding ``CogVideoX-5b-I2V/`` and ``VideoPainter/checkpoints/
        branch/``) or a (base model folder, branch folder) pair. id_lora: the VideoPainterID LoRA file
        (True: the root's ``VideoPainterID/checkpoints/pytorch_lora_weights.safetensors``); with it
        ``inpaint`` runs ID resampling unless a call says ``id_resampling=False``. memory_mode, dtype
        and ``settings`` are the batch job's ``model.*`` settings (vp_ray/config.py), e.g.
        ``num_inference_steps=50``, ``first_frame_fill="opencv"``, ``attention_backend="auto"``;
        ``height`` and ``width`` default to the checkpoint's frame (480x720 for the released one).
        """
        taken = sorted(key for key in settings if key in OWN_ARGUMENTS)
        if taken:
            raise ValueError(f"from_pretrained: {', '.join(taken)} cannot be given as settings (set by "
                             f"{', '.join(sorted({OWN_ARGUMENTS[key] for key in taken}))})")
        base, branch = checkpoint_folders(checkpoint)
        if id_lora is True:
            if isinstance(checkpoint, (tuple, list)):
                raise ValueError("id_lora=True needs a checkpoint root; give the LoRA file's path instead")
            id_lora = id_lora_path(checkpoint)
        values = {**settings, "name": "videopainter", "base_model_path": str(base),
                  "branch_path": str(branch), "memory_mode": memory_mode, "dtype": dtype_name(dtype),
                  "id_resampling": bool(id_lora)}
        if id_lora:
            values["id_lora_path"] = str(id_lora)
        cfg = model_settings(VideoPainterModelConfig, values)
        pipe = load_videopainter(cfg)
        # The frame the checkpoint was trained at: its latent grid times the VAE's scale.
        scale = pipe.vae_scale_factor_spatial
        frame = {"height": pipe.transformer.config.sample_height * scale,
                 "width": pipe.transformer.config.sample_width * scale}
        cfg = with_values(cfg, **{key: value for key, value in frame.items() if key not in settings})
        return cls(cfg, pipe=pipe, device=device)

    # ------------------------------------------------------------------ the Python API
    @torch.no_grad()
    def inpaint(self, video: np.ndarray, masks: np.ndarray, prompt: str = "", *, seed: int = 0,
                num_inference_steps: int | None = None, id_resampling: bool | None = None,
                overlap: int = WINDOW_OVERLAP, dilate_size: int = 0, resize_mode: str = "stretch",
                preprocess: str = "reference", return_windows: bool = False,
                progress: Progress = None) -> InpaintResult:
        """Remove the masked object from ``video``; the result has the input's size and length.

        video: uint8 [T, H, W, 3] RGB, any size and length; masks: bool [T, H, W], True where the
        object is. The frames are fitted to the model's size as the batch job fits them
        (``resize_mode``: stretch | pad | crop; ``preprocess``: reference | opencv; the hole is the
        object grown by ``dilate_size`` pixels, 0 here, 32 in the batch job's defaults) and brought
        back after. Per call only (nothing stays set for the next): ``num_inference_steps`` (None:
        the loaded settings'), ``id_resampling`` (None: on when a VideoPainterID LoRA was loaded),
        ``overlap``, the frames consecutive windows share (1; 0 as the reference). ``progress(step,
        steps)`` is called after each denoising step.
        """
        # 1. Check inputs
        check_clip(video, masks)
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
        # 2. Fit to the model's frame, as the prepare stage does
        placement = placement_for(video.shape[1], video.shape[2], self.cfg["height"], self.cfg["width"],
                                  resize_mode)
        fitted = fit_clip(video, masks, placement, preprocess, dilate_size)
        # 3. Inpaint at the model's size: the inpainting stage's two calls
        clip = self.prepare_clip(fitted.frames, fitted.masks, prompt, fitted.masked_video, overlap=overlap)
        windows: list[InpaintedWindow] | None = [] if return_windows else None
        frames = self.inpaint_prepared(clip, seed, progress, num_inference_steps=num_inference_steps,
                                       id_resampling=id_resampling, windows=windows)
        # 4. Back to the input's size
        if windows is not None:
            windows = [replace(window, frames=restore_frames(window.frames, placement)) for window in windows]
        return InpaintResult(restore_frames(frames, placement), windows, list(self.last_warnings))

    # ------------------------------------------------------------------ Inpainter protocol
    @property
    def memory_plan(self) -> str:
        """The plan in effect now: auto's choice, or the configured mode, after any OOM ladder step."""
        return describe_plan(self.memory_mode, self.vae_tiles)

    @property
    def attention_backend(self) -> str:
        """The attention kernel the clips run with: "flash", "cudnn", ..., or "pytorch" (PyTorch's order)."""
        return self.attention.name

    @property
    def compiled(self) -> str:
        """Whether the blocks and the VAE run compiled, and why ("on: auto, 200 steps per actor >= 55;
        VAE off: auto, 4 windows per actor < 68")."""
        return f"{self.compile_choice.describe()}; VAE {self.vae_compile_choice.describe()}"

    @property
    def has_id_lora(self) -> bool:
        """Whether the VideoPainterID LoRA is loaded (ID resampling can run)."""
        return ADAPTER in (getattr(self.pipe.transformer, "peft_config", None) or {})

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        return self.inpaint_prepared(self.prepare_clip(frames, masks, prompt, masked_video), seed, progress)

    def prepare_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str,
                     masked_video: np.ndarray | None = None, overlap: int = WINDOW_OVERLAP) -> PreparedClip:
        """The host's share of a clip, which needs no GPU: the frame count checked, a short clip mirrored
        to whole windows, the object blacked out, frame 0 filled (opencv) and unmasked. The inpainting
        stage runs it while the GPU works on the clip before, so it touches nothing that clip uses (the
        tokenizer, say, keeps settings between calls). ``frames`` are at the model's size."""
        cfg = self.cfg
        count = len(frames)
        if overlap not in (0, 1):
            raise ValueError(f"overlap {overlap}: consecutive windows share 0 or 1 frames")
        if count < 1 or not (cfg["pad_short_clips"] or fits_windows(count, overlap)):
            raise ValueError(f"{count} frames: expected a 4k+1 count up to {WINDOW_FRAMES}, or "
                             f"{WINDOW_FRAMES - overlap}n+{overlap} beyond (or pad_short_clips=true)")
        total = padded_length(count, overlap) if cfg["pad_short_clips"] else count
        if total != count:
            # Shorter windows come out as noise: mirror the clip to whole windows, cut back after.
            order = mirrored_indices(count, total)
            frames, masks = frames[order], masks[order]
            masked_video = None if masked_video is None else masked_video[order]
        flux = self.flux is not None and cfg["first_frame_gt"]
        first_frame = (np.ascontiguousarray(frames[0]), masks[0].astype(bool)) if flux else None
        video, masks = condition_inputs(frames, masks, cfg["first_frame_gt"],
                                        "none" if flux else cfg["first_frame_fill"], masked_video=masked_video)
        return PreparedClip(self._host_tensor(video), self._host_tensor(masks), count, prompt, first_frame,
                            overlap)

    @torch.no_grad()
    def inpaint_prepared(self, clip: PreparedClip, seed: int, progress: Progress = None, *,
                         num_inference_steps: int | None = None, id_resampling: bool | None = None,
                         windows: list[InpaintedWindow] | None = None) -> np.ndarray:
        """The GPU's share of a clip: FLUX.1-Fill's frame 0 if asked, T5, the windows, the decode.

        For this call only: ``num_inference_steps`` (None: the settings'), ``id_resampling`` (None: on
        when the VideoPainterID LoRA is loaded). ``windows``, if given, receives each window decoded
        alone (at the model's size)."""
        cfg = self.cfg
        steps = cfg["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"num_inference_steps {steps!r}: expected an integer >= 1")
        resampling = self._wants_id_resampling(id_resampling)
        self.last_warnings, self.last_phases = self._check_prompt_length(clip.prompt), None
        video = clip.video
        window_latents: list[torch.Tensor] = []
        keep_latents = None if windows is None else lambda _, latents: window_latents.append(latents)
        timeline = self.pipe.timeline = Timeline(self.device)
        try:
            if clip.first_frame is not None:
                timeline.mark("fill")
                video = video.clone()
                video[0] = torch.tensor(self.flux(*clip.first_frame, clip.prompt))

            # One window of the (padded) clip, or windows of 49 sharing ``clip.overlap`` frames.
            total = len(video)
            window = min(total, WINDOW_FRAMES)
            starts = window_starts(total, window, clip.overlap)
            done = [0]
            callback = None
            if progress is not None:
                def callback(pipe, step, timestep, tensors):
                    done[0] += 1
                    progress(done[0], steps * len(starts))
                    return {}

            with self.attention.in_force(), self._id_resampling(resampling):
                result = inpaint_windows(
                    self.pipe, video, clip.masks, window, overlap=clip.overlap, image=video[0],
                    prompt=clip.prompt, negative_prompt=cfg["negative_prompt"], guidance_scale=cfg["guidance_scale"],
                    num_inference_steps=steps, use_dynamic_cfg=cfg["use_dynamic_cfg"],
                    generator=torch.Generator().manual_seed(seed), replace_gt=cfg["replace_gt"],
                    mask_add=cfg["mask_add"], callback_on_step_end=callback, output_type="uint8",
                    on_window_latents=keep_latents)
            self.last_phases = timeline.read()
        finally:
            self.pipe.timeline = None
        for start, latents in zip(starts, window_latents):
            stop = min(start + window, clip.count)
            windows.append(InpaintedWindow(start, stop, self.pipe.decode(latents, "uint8")[:stop - start]))
        return result[result_indices(clip.count, window, clip.overlap)]

    def reduce_memory(self) -> bool:
        """OOM ladder: small VAE tiles + slicing first, then model CPU offload; False when both are on."""
        if self.vae_tiles != "small":
            self.vae_tiles = "small"
            self._apply_vae_tiles()
            return True
        if self.memory_mode in ("resident", "text_encoder_offload") and self.device.type == "cuda":
            self.memory_mode = "model_offload"
            self._apply_memory_mode()
            return True
        return False

    def release_memory(self) -> None:
        if self.pipe.id_resampling is not None:
            self.pipe.id_resampling.clear()
        # Model offload moves each model in when called and out when the next one is: a call
        # cut short leaves the transformer and branch on the GPU. This puts every model back.
        self.pipe.maybe_free_model_hooks()

    # ------------------------------------------------------------------ helpers
    def _wants_id_resampling(self, asked: bool | None) -> bool:
        if asked is None:
            return self.has_id_lora
        if asked and not self.has_id_lora:
            raise ValueError("id_resampling=True needs the VideoPainterID LoRA: VideoPainter.from_pretrained(..., "
                             "id_lora=...) (batch job: model.id_resampling=true)")
        if asked and not self.cfg["mask_add"]:
            raise ValueError("id_resampling=True needs mask_add=True (its token mask is the masked tokens)")
        return bool(asked)

    @contextmanager
    def _id_resampling(self, on: bool) -> Iterator[None]:
        """ID resampling for one call: the LoRA active and the resampling attention in place inside,
        the plain model again after, whatever happened (so it never carries over to the next call)."""
        if not on:
            yield
            return
        self.pipe.transformer.enable_adapters()
        self.pipe.enable_id_resampling(self.cfg["prev_clip_weight"])
        try:
            yield
        finally:
            self.pipe.disable_id_resampling()
            self.pipe.transformer.disable_adapters()

    def _load_flux(self, model_cfg: VideoPainterModelConfig):
        from vp_ray.models.flux_fill import FluxFirstFrame, missing_files, write_tiny_flux_fill

        path = model_cfg["flux_fill_path"]
        if model_cfg["create_tiny_if_missing"] and missing_files(path):
            log.info("writing a tiny random FLUX.1-Fill at %s", path)
            write_tiny_flux_fill(path)
        return FluxFirstFrame(path, getattr(torch, model_cfg["dtype"]), self.device,
                              model_cfg["flux_num_inference_steps"])

    def _check_prompt_length(self, prompt: str) -> list[str]:
        limit = self.pipe.transformer.config.max_text_seq_length
        tokens = len(self.pipe.tokenizer(prompt, add_special_tokens=True).input_ids)
        if tokens <= limit:
            return []
        message = f"prompt truncated to {limit} of its {tokens} T5 tokens"
        log.warning(message)
        return [message]

    def _host_tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` as a tensor, in pinned memory when a GPU will take it."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.pin_memory() if self.device.type == "cuda" else tensor

    def _resolve_memory_mode(self) -> tuple[str, str]:
        """(memory mode, VAE tiles) for the configured mode; ``auto`` plans with measured peaks."""
        mode = self.cfg["memory_mode"]
        if self.device.type != "cuda":
            return "resident", "none"
        if mode != "auto":
            return mode, TILES_OF_MODE[mode]
        # Its GPU, which need not be the process's current one ("cuda:1").
        index = self.device.index
        free_bytes, _ = torch.cuda.mem_get_info() if index is None else torch.cuda.mem_get_info(index)
        if self.cfg["gpu_memory_limit_gb"]:
            free_bytes = min(free_bytes, self.cfg["gpu_memory_limit_gb"] * 2**30)
        value_bytes = torch.finfo(self.pipe.transformer.dtype).bits // 8
        extras = plan_extras(self.cfg, self.pipe.transformer.config, value_bytes)
        mode, tiling = plan_memory(free_bytes / 2**30, sum(gib for _, gib in extras))
        log.info("memory=auto: %.1f GiB for this actor%s -> %s", free_bytes / 2**30,
                 "".join(f" ({gib:.1f} GiB of it for {what})" for what, gib in extras), describe_plan(mode, tiling))
        return mode, tiling

    def _apply_memory_mode(self) -> None:
        pipe = self.pipe
        pipe.remove_all_hooks()
        pipe.text_encoder_host = None   # offload's hooks move the text encoder from here on
        if self.memory_mode == "resident":
            pipe.to(self.device)
        elif self.memory_mode == "text_encoder_offload":
            for name, component in pipe.components.items():
                if isinstance(component, torch.nn.Module) and name != "text_encoder":
                    component.to(self.device)
            pipe.text_encoder_host = HostWeights(pipe.text_encoder)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()   # T5's GPU copy, if it had one
        elif self.memory_mode == "model_offload":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.enable_sequential_cpu_offload(device=self.device)
        self._apply_vae_tiles()

    def _apply_vae_tiles(self) -> None:
        if self.vae_tiles == "none":
            self.pipe.vae.disable_slicing()
            self.pipe.vae.disable_tiling()
        else:
            enable_vae_tiling(self.pipe.vae, self.vae_tiles, self.cfg["height"], self.cfg["width"])


def dtype_name(dtype: str | torch.dtype) -> str:
    """``torch.bfloat16`` or "bfloat16" -> "bfloat16" (the settings' spelling)."""
    if isinstance(dtype, torch.dtype):
        names = {value: name for name, value in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"dtype {dtype}: expected one of {', '.join(DTYPES)}")
        return names[dtype]
    return dtype
