"""VideoPainter inpainting on the stock CogVideoX-5b-I2V pipeline.

``VideoPainterPipeline`` extends diffusers' ``CogVideoXImageToVideoPipeline`` (prompt
encoding, decoding, offload and the component plumbing come from it) with what inpainting
adds: the masked-video + mask conditioning through the branch, first-frame image
conditioning, background re-imposed in latent space at every step (``replace_gt``), and RoPE
on the fixed 480x720 grid of the original code. One call inpaints one window of 4k+1 frames.

The random draws from ``generator`` happen in the original order (first-frame posterior,
video posterior, initial noise, masked-video posterior, then the scheduler's), so a seed
gives the same video as the original implementation.
"""

from __future__ import annotations

import inspect
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import CogVideoXImageToVideoPipeline
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import get_resize_crop_region_for_grid
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from vp_ray.models.branch import CogvideoXBranchModel
from vp_ray.models.cpu_conv3d import route_conv3d_to_onednn
from vp_ray.models.injection import BranchInjection, token_mask

# The original pipeline lays RoPE out against a 480x720 frame whatever the model's sample size.
ROPE_BASE_HEIGHT, ROPE_BASE_WIDTH = 480, 720


@dataclass
class VideoPainterPipelineOutput(BaseOutput):
    """frames: float [T, H, W, 3] in [0, 1] (``output_type="np"``), uint8 [T, H, W, 3]
    (``"uint8"``), [1, 3, T, H, W] in [-1, 1] (``"pt"``) or the final latents [1, F, 16, h, w]
    (``"latent"``). ``intermediates`` holds
    the tensors a parity check compares, when asked for with ``return_intermediates``."""

    frames: Any
    intermediates: dict[str, Any] = field(default_factory=dict)


def to_device(array: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host array on ``device``, as it is (no conversion). From pinned memory (a clip the inpainting
    actor prepared while the GPU worked on the one before) the copy is queued without the host
    waiting; from pageable memory the host waits until the bytes are staged, as a plain copy does."""
    tensor = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    return tensor.to(device, non_blocking=True)


def video_to_tensor(frames: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [T, H, W, 3] (or [H, W, 3]) RGB -> float32 [1, 3, T, H, W] (or [1, 3, H, W]) in [-1, 1].

    The uint8 frames move to ``device`` first and are converted there: a quarter of the bytes to
    copy, and the conversion is not CPU time the GPU waits for between clips.
    """
    frames = to_device(frames, device).to(torch.float32) / 255.0
    frames = 2.0 * frames - 1.0
    return frames.movedim(-1, 0).unsqueeze(0)


def masks_to_tensor(masks: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """bool [T, H, W] (True = inpaint) -> float32 [1, 1, T, H, W] in {0, 1}."""
    return to_device(masks, device).to(torch.float32)[None, None]


def tensor_to_uint8(video: torch.Tensor) -> np.ndarray:
    """Decoded [1, 3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3], converted on the tensor's device.

    The same arithmetic, in the same dtypes, as diffusers' ``postprocess_video(output_type="np")``
    (denormalised in the decoder's dtype, then float32) followed by ``round(x * 255)``: equal to
    that path bit for bit, with a quarter of the bytes copied back to the host.
    """
    frames = (video[0] * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float()
    return torch.round(frames * 255.0).clamp(0, 255).to(torch.uint8).cpu().numpy()


@contextmanager
def noise_copied_without_waiting(scheduler):
    """While it lasts, the scheduler's noise reaches the GPU without the host waiting for the GPU.

    The scheduler draws its noise on the seeded CPU generator (the original's draws, kept) with
    diffusers' ``randn_tensor``, whose copy from pageable memory waits until every queued kernel
    has run: twice a step the GPU ran dry while the host queued the next ones. Here the same
    draws, in the same order, go into pinned memory and are copied asynchronously. Only the
    scheduler's module sees the replacement, and only for the denoising loop.
    """
    module = sys.modules[type(scheduler).__module__]
    original = getattr(module, "randn_tensor", None)

    def randn(shape, generator=None, device=None, dtype=None, layout=None):
        device = torch.device(device) if device is not None else None
        if isinstance(generator, torch.Generator) and generator.device.type == "cpu" \
                and device is not None and device.type == "cuda":
            host = torch.randn(shape, generator=generator, dtype=dtype, layout=layout or torch.strided,
                               pin_memory=True)
            return host.to(device, non_blocking=True)
        return original(shape, generator=generator, device=device, dtype=dtype, layout=layout)

    if original is None:
        yield
        return
    module.randn_tensor = randn
    try:
        yield
    finally:
        module.randn_tensor = original


class VideoPainterPipeline(CogVideoXImageToVideoPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    # The branch runs every step beside the transformer: it is not part of the offload chain,
    # so under model offload it moves to the GPU once and stays there (as in the original).

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler, branch: CogvideoXBranchModel):
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                         transformer=transformer, scheduler=scheduler)
        self.register_modules(branch=branch)
        # On the CPU the VAE's small 3D convolutions would run PyTorch's reference kernel (``cpu_conv3d``).
        route_conv3d_to_onednn(vae)
        self.inject_branch = BranchInjection(transformer)
        # ID resampling (``id_resample.IdResampling``) while it is on (``enable_id_resampling``, until
        # ``disable_id_resampling``); made once, kept while off.
        self.id_resampling = None
        self._id_resampler = None
        # The step's timestep value during the loop (diffusers' ``current_timestep``, read by step caches).
        self._current_timestep = None
        # The text encoder's weights in pinned host memory (``host_weights.HostWeights``), brought to
        # the GPU for each prompt encode: ``memory_mode=text_encoder_offload``.
        self.text_encoder_host = None
        # Where the clip's GPU time goes (``timeline.Timeline``), set by the inpainter for a clip.
        self.timeline = None

    def mark_phase(self, phase: str) -> None:
        """The GPU starts ``phase`` of the clip here (``timeline.PHASES``), if the clip is timed."""
        if self.timeline is not None:
            self.timeline.mark(phase)

    def encode_prompt(self, *args, **kwargs):
        """diffusers' ``encode_prompt``, with the text encoder's weights on the GPU while it runs
        (both prompts, one visit) when they live on the host and some embedding is to be computed."""
        encode = super().encode_prompt
        call = inspect.signature(encode).bind(*args, **kwargs)
        call.apply_defaults()
        given = call.arguments
        computes = given["prompt_embeds"] is None or (
            given["do_classifier_free_guidance"] and given["negative_prompt_embeds"] is None)
        if self.text_encoder_host is None or not computes:
            return encode(*args, **kwargs)
        with self.text_encoder_host.on(self._execution_device):
            return encode(*args, **kwargs)

    def enable_id_resampling(self, prev_clip_weight: float) -> None:
        """Every backbone block also attends to masked tokens of its previous window's output."""
        from vp_ray.models.id_resample import IdResampling

        resampler = self._id_resampler
        if resampler is None or resampler.weight != float(prev_clip_weight):
            self.disable_id_resampling()
            resampler = self._id_resampler = IdResampling(self.transformer, prev_clip_weight)
        resampler.attach()
        self.id_resampling = resampler

    def disable_id_resampling(self) -> None:
        """The stock attention again, with nothing held (a no-op where ID resampling is off)."""
        if self.id_resampling is not None:
            self.id_resampling.detach()
            self.id_resampling = None

    # ------------------------------------------------------------------ building blocks
    def encode_with_posterior_sample(self, pixels: torch.Tensor, generator: torch.Generator | None,
                                     dtype: torch.dtype) -> torch.Tensor:
        """VAE-encode [1, 3, T, H, W] pixels, sample the posterior, scale -> [1, F, 16, h, w]."""
        pixels = pixels.to(device=self._execution_device, dtype=dtype)
        latents = self.vae.encode(pixels).latent_dist.sample(generator)
        return (self.vae_scaling_factor_image * latents.to(dtype)).permute(0, 2, 1, 3, 4)

    def prepare_latents(self, image: torch.Tensor | None, video: torch.Tensor, num_latent_frames: int,
                        dtype: torch.dtype, generator: torch.Generator | None,
                        image_latents: torch.Tensor | None = None):
        """First-frame latents padded with zeros, clean video latents, and the initial noise.

        The draw order (image posterior, video posterior, noise) is the original's. Given
        ``image_latents`` (a later window of a long clip) are used as they are: no encode, no draw.
        """
        device = self._execution_device
        if image_latents is None:
            image_latents = self.encode_with_posterior_sample(image.unsqueeze(2), generator, dtype)
        image_latents = image_latents.to(device=device, dtype=dtype)
        padding = image_latents.new_zeros((1, num_latent_frames - 1, *image_latents.shape[2:]))
        image_latents = torch.cat([image_latents, padding], dim=1)
        video_latents = self.encode_with_posterior_sample(video, generator, dtype)
        noise = randn_tensor(video_latents.shape, generator=generator, device=device, dtype=dtype)
        latents = noise * self.scheduler.init_noise_sigma
        return latents, image_latents, video_latents, noise

    def prepare_mask_latents(self, masks: torch.Tensor, masked_video: torch.Tensor | None, num_latent_frames: int,
                             dtype: torch.dtype, generator: torch.Generator | None):
        """Latent mask [1, F, 1, h, w] (nearest) and masked-video latents [1, F, 16, h, w] (None
        without ``masked_video``)."""
        height, width = masks.shape[-2:]
        mask_latents = F.interpolate(masks, size=(num_latent_frames, height // self.vae_scale_factor_spatial,
                                                  width // self.vae_scale_factor_spatial))
        mask_latents = mask_latents.to(device=self._execution_device, dtype=dtype).permute(0, 2, 1, 3, 4)
        if masked_video is None:
            return mask_latents, None
        masked_video_latents = self.encode_with_posterior_sample(masked_video, generator, dtype)
        return mask_latents, masked_video_latents

    def video_tokens_masked(self, masks: np.ndarray | torch.Tensor) -> torch.Tensor:
        """bool [T, H, W] pixel masks -> which video tokens ``mask_add`` treats as masked, [1, N]
        (the window's latent mask, as ``__call__`` makes it, pooled over each patch)."""
        pixels = masks_to_tensor(masks, self._execution_device)
        num_latent_frames = (pixels.shape[2] - 1) // self.vae_scale_factor_temporal + 1
        mask_latents, _ = self.prepare_mask_latents(pixels, None, num_latent_frames, pixels.dtype, None)
        return token_mask(mask_latents, self.transformer.config.patch_size)[..., 0]

    def _prepare_rotary_positional_embeddings(self, height: int, width: int, num_frames: int,
                                              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Upstream now takes the base grid from the transformer's sample size; the original used
        # a fixed 480x720 frame. Both agree on the real model (60x90 latents), not on small ones.
        patch = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        grid_height, grid_width = height // patch, width // patch
        crops = get_resize_crop_region_for_grid((grid_height, grid_width), ROPE_BASE_WIDTH // patch,
                                                ROPE_BASE_HEIGHT // patch)
        return get_3d_rotary_pos_embed(embed_dim=self.transformer.config.attention_head_dim,
                                       crops_coords=crops, grid_size=(grid_height, grid_width),
                                       temporal_size=num_frames, device=device)

    @staticmethod
    def dynamic_guidance(guidance_scale: float, t: int, num_steps: int) -> float:
        # Python floats (float64): the same expression in float32 gives another guidance.
        return 1 + guidance_scale * (1 - math.cos(math.pi * ((num_steps - t) / num_steps) ** 5.0)) / 2

    # ------------------------------------------------------------------ the call
    @torch.no_grad()
    def __call__(
        self,
        video: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        prompt: str | None = None,
        image: np.ndarray | torch.Tensor | None = None,
        negative_prompt: str | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = True,
        generator: torch.Generator | None = None,
        replace_gt: bool = True,
        mask_add: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        max_sequence_length: int = 226,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
        return_intermediates: bool = False,
        image_latents: torch.Tensor | None = None,
    ) -> VideoPainterPipelineOutput:
        """Inpaint one window.

        video: uint8 [T, H, W, 3] RGB with T = 4k + 1 (the original passes the masked video);
        masks: bool [T, H, W], True where the content is to be generated; image: uint8
        [H, W, 3] first-frame condition (default ``video[0]``). ``callback_on_step_end(pipe, i, t,
        {"latents": ...})`` runs after each step (its return value is not used).
        ``return_intermediates`` fills ``intermediates`` with prompt_embeds,
        negative_prompt_embeds, image_latents, video_latents, initial_latents, mask_latents,
        masked_video_latents, the first step's branch_samples, noise_pred (before guidance)
        and scheduler_output (before replace_gt), and the final latents. ``image_latents``
        [1, 1, C, h, w] replaces the encoded ``image`` (a later window of a long clip conditions on
        the previous window's last latent; ``vp_ray.models.long_video``).
        """
        # 1. Check inputs
        num_frames, height, width = video.shape[:3]
        if (num_frames - 1) % self.vae_scale_factor_temporal:
            raise ValueError(f"the window needs 4k+1 frames, got {num_frames}")
        if tuple(masks.shape) != (num_frames, height, width):
            raise ValueError(f"masks {tuple(masks.shape)} do not match the video {tuple(video.shape)}")
        if height % 16 or width % 16:
            raise ValueError(f"height and width must be multiples of 16, got {height}x{width}")
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of prompt and prompt_embeds")

        # 2. Default call parameters
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        num_latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        record: dict[str, Any] = {}

        # 3. Encode input prompt ([negative, positive] for CFG)
        if prompt is not None:
            self.mark_phase("prompt")
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, negative_prompt, do_classifier_free_guidance=do_cfg, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, max_sequence_length=max_sequence_length,
            device=device)
        record.update(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds)
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        dtype = prompt_embeds.dtype

        self.mark_phase("encode")
        # 4. Prepare timesteps (step caches such as attention reuse start afresh in every window,
        # so a clip's result does not depend on what the actor ran before it)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if self.transformer.is_cache_enabled:
            self.transformer._reset_stateful_cache()
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 5. Pixels: video in [-1, 1], binary masks, the masked video (object blacked out)
        video_pixels = video_to_tensor(video, device)
        mask_pixels = masks_to_tensor(masks, device)
        image_pixels = None
        if image_latents is None:
            image_pixels = video_pixels[:, :, 0] if image is None else video_to_tensor(image, device)
        masked_video = video_pixels * (mask_pixels < 0.5)

        # 6. Latents: first-frame condition, clean video (for replace_gt), initial noise
        latents, image_latents, video_latents, noise = self.prepare_latents(
            image_pixels, video_pixels, num_latent_frames, dtype, generator, image_latents)

        # 7. Mask latents and masked-video latents (the branch's condition)
        mask_latents, masked_video_latents = self.prepare_mask_latents(
            mask_pixels, masked_video, num_latent_frames, dtype, generator)
        record.update(image_latents=image_latents, video_latents=video_latents, initial_latents=latents,
                      mask_latents=mask_latents, masked_video_latents=masked_video_latents)
        copies = 2 if do_cfg else 1
        branch_cond = torch.cat([masked_video_latents, mask_latents], dim=2).repeat(copies, 1, 1, 1, 1)
        tokens_masked = (token_mask(mask_latents, self.transformer.config.patch_size).repeat(copies, 1, 1)
                         if mask_add else None)
        if self.id_resampling is not None:
            self.id_resampling.set_masks(tokens_masked, prompt_embeds.shape[1], len(timesteps))

        # The pixels (float32, on the GPU) are encoded: not held through the loop and the decode.
        del video_pixels, mask_pixels, image_pixels, masked_video

        # 8. Rotary embeddings (fixed 480x720 base grid)
        image_rotary_emb = None
        if self.transformer.config.use_rotary_positional_embeddings:
            image_rotary_emb = self._prepare_rotary_positional_embeddings(height, width, num_latent_frames,
                                                                          device)

        # 9. Denoising loop. The scheduler gets the timesteps as Python ints (the same table
        # entries): a tensor there makes its `prev_timestep >= 0` test wait for the GPU every step.
        step_values = timesteps.tolist()
        old_pred_original_sample = None
        self.mark_phase("denoise")
        with self.progress_bar(total=num_inference_steps) as progress_bar, \
                noise_copied_without_waiting(self.scheduler):
            for i, t in enumerate(timesteps):
                self._current_timestep = step_values[i]
                latent_video_input = self.scheduler.scale_model_input(torch.cat([latents] * copies), t)
                latent_image_input = torch.cat([image_latents] * copies)
                latent_model_input = torch.cat([latent_video_input, latent_image_input], dim=2)
                timestep = t.expand(latent_model_input.shape[0])

                branch_samples = self.branch(latent_video_input, prompt_embeds, branch_cond, timestep,
                                             image_rotary_emb=image_rotary_emb).block_samples
                branch_samples = [sample.to(dtype) for sample in branch_samples]
                with self.inject_branch(branch_samples, tokens_masked):
                    noise_pred = self.transformer(
                        hidden_states=latent_model_input, encoder_hidden_states=prompt_embeds,
                        timestep=timestep, image_rotary_emb=image_rotary_emb, return_dict=False)[0].float()
                if self.id_resampling is not None:
                    self.id_resampling.step_done(i, len(timesteps))
                if return_intermediates and i == 0:
                    record.update(branch_samples=branch_samples, noise_pred=noise_pred)

                self._guidance_scale = guidance_scale
                if use_dynamic_cfg:
                    self._guidance_scale = self.dynamic_guidance(guidance_scale, step_values[i],
                                                                 num_inference_steps)
                if do_cfg:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + self.guidance_scale * (noise_text - noise_uncond)

                latents, old_pred_original_sample = self.scheduler.step(
                    noise_pred, old_pred_original_sample, step_values[i], step_values[i - 1] if i > 0 else None,
                    latents,
                    eta=0.0, generator=generator, return_dict=False)
                latents = latents.to(dtype)
                if return_intermediates and i == 0:
                    record["scheduler_output"] = latents

                if replace_gt:
                    # Re-impose the background: the clean video noised to the next step's level.
                    background = video_latents
                    if i < len(timesteps) - 1:
                        background = self.scheduler.add_noise(video_latents, noise, timesteps[i + 1:i + 2])
                    latents = (1 - mask_latents) * background + mask_latents * latents

                if callback_on_step_end is not None:
                    callback_on_step_end(self, i, t, {"latents": latents})
                progress_bar.update()

        # 10. Decode
        self.mark_phase("latents")
        self._current_timestep = None
        record["latents"] = latents
        frames = self.decode(latents, output_type)
        self.maybe_free_model_hooks()
        return VideoPainterPipelineOutput(frames=frames, intermediates=record if return_intermediates else {})

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, output_type: str) -> Any:
        """Latents [1, F, C, h, w] -> frames as ``output_type`` says (see ``VideoPainterPipelineOutput``)."""
        if output_type == "latent":
            return latents
        self.mark_phase("decode")
        frames = self.decode_latents(latents)
        self.mark_phase("convert")
        if output_type == "uint8":
            return tensor_to_uint8(frames)
        if output_type == "np":
            return self.video_processor.postprocess_video(video=frames, output_type="np")[0]
        return frames
