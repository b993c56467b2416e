"""``model=videopainter`` / ``model=tiny``: the Inpainter over ``VideoPainterPipeline``.

One instance per actor loads the weights once. Each clip is inpainted the way the original
scripts call the pipeline: the masked video (object blacked out) is both the video and,
through its first frame, the image condition; with ``first_frame_gt`` frame 0 is filled
(``first_frame_fill``) and its mask cleared; the generator is seeded per clip. Clips shorter
than 49 frames are mirrored to 49 and cut back (``pad_short_clips``). Longer clips run in windows
of 49 sharing their boundary frame (``long_video``), the last one filled by mirroring the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vp_ray import gpu
from vp_ray.masks import black_out
from vp_ray.models import WINDOW_FRAMES, Progress, usable_frames
from vp_ray.models.attention_backend import backbone_attention_shape, choose_attention
from vp_ray.models.checkpoint import load_pipeline
from vp_ray.models.compile_plan import decide as decide_compile
from vp_ray.models.host_weights import HostWeights
from vp_ray.models.id_lora import load_id_lora, write_tiny_id_lora
from vp_ray.models.long_video import inpaint_windows, window_starts
from vp_ray.models.pipeline import VideoPainterPipeline
from vp_ray.models.speed import compile_blocks, fp8_linear_layers, require_fp8_gpu, reuse_attention
from vp_ray.models.timeline import ClipPhases, Timeline
from vp_ray.models.vae_tiling import enable_vae_tiling

log = logging.getLogger(__name__)

# Consecutive windows of a long clip share their boundary frame: result frame j is source frame j.
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


def plan_extras(model_cfg: dict[str, Any], transformer_config, bytes_per_value: int = 2) -> list[tuple[str, float]]:
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


def padded_length(count: int) -> int:
    """Frames a clip of ``count`` is inpainted as: one window of 49, or whole windows of 49 sharing
    their boundary frame (48n + 1)."""
    if count <= WINDOW_FRAMES:
        return WINDOW_FRAMES
    return 1 + (WINDOW_FRAMES - 1) * -(-(count - 1) // (WINDOW_FRAMES - 1))


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


@dataclass
class PreparedClip:
    """A clip's inputs as the pipeline takes them (``VideoPainterInpainter.prepare_clip``), made on
    the host while the GPU may still work on the clip before. With a GPU they are in pinned memory,
    so that their upload is queued without the host waiting."""

    video: torch.Tensor       # uint8 [T, H, W, 3]: the masked video, padded to whole windows, frame 0 filled
    masks: torch.Tensor       # bool [T, H, W]; frame 0 cleared with first_frame_gt
    count: int                # the clip's own frames: the result is cut back to them
    prompt: str
    # (frame 0, its mask) for FLUX.1-Fill, which runs on the GPU in the clip's turn (first_frame_fill=flux)
    first_frame: tuple[np.ndarray, np.ndarray] | None = None


class VideoPainterInpainter:
    def __init__(self, model_cfg: dict[str, Any], pipe: VideoPainterPipeline | None = None):
        """Load the checkpoint named by ``model_cfg`` (or use ``pipe``, already built)."""
        self.cfg = model_cfg
        self.pipe = pipe if pipe is not None else self._load(model_cfg)
        self.pipe.set_progress_bar_config(disable=True)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.compile_choice = decide_compile(model_cfg, self.device.type == "cuda")
        log.info("compiled blocks: %s", self.compile_choice.describe())
        if self.compile_choice.on:
            compile_blocks(self.pipe)
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
        """Whether the blocks run compiled, and why ("on: auto, 200 steps per actor >= 55")."""
        return self.compile_choice.describe()

    def inpaint_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str, seed: int,
                     progress: Progress = None, masked_video: np.ndarray | None = None) -> np.ndarray:
        return self.inpaint_prepared(self.prepare_clip(frames, masks, prompt, masked_video), seed, progress)

    def prepare_clip(self, frames: np.ndarray, masks: np.ndarray, prompt: str,
                     masked_video: np.ndarray | None = None) -> PreparedClip:
        """The host's share of a clip, which needs no GPU: the frame count checked, a short clip mirrored
        to whole windows, the object blacked out, frame 0 filled (opencv) and unmasked. The inpainting
        stage runs it while the GPU works on the clip before, so it touches nothing that clip uses (the
        tokenizer, say, keeps settings between calls)."""
        cfg = self.cfg
        count = len(frames)
        if count < 1 or usable_frames(cfg, count) != count:
            raise ValueError(f"{count} frames: expected a 4k+1 count up to {WINDOW_FRAMES}, or 48n+1 beyond")
        total = padded_length(count) if cfg["pad_short_clips"] else count
        if total != count:
            # Shorter windows come out as noise: mirror the clip to whole windows, cut back after.
            order = mirrored_indices(count, total)
            frames, masks = frames[order], masks[order]
            masked_video = None if masked_video is None else masked_video[order]
        flux = self.flux is not None and cfg["first_frame_gt"]
        first_frame = (np.ascontiguousarray(frames[0]), masks[0].astype(bool)) if flux else None
        video, masks = condition_inputs(frames, masks, cfg["first_frame_gt"],
                                        "none" if flux else cfg["first_frame_fill"], masked_video=masked_video)
        return PreparedClip(self._host_tensor(video), self._host_tensor(masks), count, prompt, first_frame)

    def inpaint_prepared(self, clip: PreparedClip, seed: int, progress: Progress = None) -> np.ndarray:
        """The GPU's share of a clip: FLUX.1-Fill's frame 0 if asked, T5, the windows, the decode."""
        cfg = self.cfg
        self.last_warnings, self.last_phases = self._check_prompt_length(clip.prompt), None
        video = clip.video
        timeline = self.pipe.timeline = Timeline(self.device)
        try:
            if clip.first_frame is not None:
                timeline.mark("fill")
                video = video.clone()
                video[0] = torch.tensor(self.flux(*clip.first_frame, clip.prompt))

            # One window of the (padded) clip, or windows of 49 sharing their boundary frame.
            total = len(video)
            window = min(total, WINDOW_FRAMES)
            steps = cfg["num_inference_steps"] * len(window_starts(total, window, WINDOW_OVERLAP))
            done = [0]
            callback = None
            if progress is not None:
                def callback(pipe, step, timestep, tensors):
                    done[0] += 1
                    progress(done[0], steps)
                    return {}

            with self.attention.in_force():
                result = inpaint_windows(
                    self.pipe, video, clip.masks, window, overlap=WINDOW_OVERLAP, image=video[0],
                    prompt=clip.prompt, negative_prompt=cfg["negative_prompt"], guidance_scale=cfg["guidance_scale"],
                    num_inference_steps=cfg["num_inference_steps"], use_dynamic_cfg=cfg["use_dynamic_cfg"],
                    generator=torch.Generator().manual_seed(seed), replace_gt=cfg["replace_gt"],
                    mask_add=cfg["mask_add"], callback_on_step_end=callback, output_type="uint8")
            self.last_phases = timeline.read()
        finally:
            self.pipe.timeline = None
        return result[:clip.count]

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
    @staticmethod
    def _load(model_cfg: dict[str, Any]) -> VideoPainterPipeline:
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
            pipe.enable_id_resampling(model_cfg["prev_clip_weight"])
        return pipe

    def _load_flux(self, model_cfg: dict[str, Any]):
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
        free_bytes, _ = torch.cuda.mem_get_info()
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
