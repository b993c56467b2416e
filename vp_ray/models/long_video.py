"""Clips longer than one window: windows chained as the original any-length pipeline chains them.

With windows of W = 4k+1 frames overlapping by ``overlap`` frames (0 or 1; stride S = W - overlap):

* window w covers input frames [wS, wS + W); frames after the last whole window are left out;
* window 0 is conditioned on its (filled) first frame as usual; window w >= 1 on the previous
  window's last final latent, used as it is (no encode, no random draw); only the clip's frame 0
  keeps its mask cleared;
* every window's final latents go into one latent timeline: window w's latent k into slot
  (F - 1) w + k (F = latents per window), so consecutive windows share one slot, which holds the
  mean of the two (summed and halved in the pipeline's dtype, as the original does);
* the timeline is decoded once: n windows of W frames give (W - 1) n + 1 frames.

``overlap=0`` is the original script's setting: 49n frames in, 48n + 1 out, and output frame j
shows input frame j + w in window w (the shared slot blends input frames 49w - 4 .. 49w, and input
frame 49w has no output frame of its own). ``overlap=1`` (the same code path of the original, its
``overlap_frames=1``) lets consecutive windows share their boundary frame: 48n + 1 frames in, as
many out, output frame j is input frame j. vp-ray inpaints long clips that way.

The prompt is encoded once; the seeded generator runs on through the windows (per window:
video posterior, noise, masked-video posterior, the scheduler's draws; window 0 first draws the
first frame's posterior). Memory does not grow with the number of windows except the timeline
(16 x 60 x 90 values per latent slot) and the decode of the whole timeline at the end.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch


def window_starts(num_frames: int, window: int, overlap: int = 0) -> list[int]:
    """First input frame of each whole window; empty when the clip is shorter than one window."""
    if overlap not in (0, 1):
        raise ValueError(f"overlap {overlap}: windows may share 0 or 1 frames")
    return list(range(0, num_frames - window + 1, window - overlap))


def output_frames(num_frames: int, window: int, overlap: int = 0) -> int:
    """Frames a clip of ``num_frames`` comes out with: (W - 1) n + 1 for n whole windows."""
    windows = len(window_starts(num_frames, window, overlap))
    return (window - 1) * windows + 1 if windows else 0


def frames_used(num_frames: int, window: int, overlap: int = 0) -> int:
    """Input frames the whole windows cover (the rest of the clip is left out)."""
    starts = window_starts(num_frames, window, overlap)
    return starts[-1] + window if starts else 0


@torch.no_grad()
def inpaint_windows(pipe, video: np.ndarray, masks: np.ndarray, window: int, *, overlap: int = 0,
                    image: np.ndarray | None = None,
                    prompt: str, negative_prompt: str = "", guidance_scale: float = 6.0,
                    generator: torch.Generator | None = None, output_type: str = "np",
                    on_window: Callable[[int, int], None] | None = None,
                    on_window_latents: Callable[[int, torch.Tensor], None] | None = None, **call_kwargs: Any):
    """Inpaint ``video`` ([T, H, W, 3] uint8, T >= ``window``) window by window with ``pipe`` (a
    ``VideoPainterPipeline``) and decode the joined timeline once. ``call_kwargs`` go to every
    window's call (steps, dynamic CFG, replace_gt, mask_add, callback). ``on_window(index, windows)``
    runs before each window, ``on_window_latents(index, latents)`` after it with its final latents."""
    starts = window_starts(len(video), window, overlap)
    if not starts:
        raise ValueError(f"{len(video)} frames: a long clip needs at least one window of {window}")
    device = pipe._execution_device
    pipe.mark_phase("prompt")
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        prompt, negative_prompt, do_classifier_free_guidance=guidance_scale > 1.0, device=device)
    timeline = counts = previous = None
    resampling = getattr(pipe, "id_resampling", None)
    for index, start in enumerate(starts):
        if on_window is not None:
            on_window(index, len(starts))
        last = index == len(starts) - 1
        if resampling is not None:
            upcoming = None if last else pipe.video_tokens_masked(masks[starts[index + 1]:starts[index + 1] + window])
            resampling.start_window(first=index == 0, last=last, next_video_mask=upcoming)
        frames = slice(start, start + window)
        latents = pipe(video=video[frames], masks=masks[frames], image=image if index == 0 else None,
                       image_latents=None if index == 0 else previous[:, -1:], prompt_embeds=prompt_embeds,
                       negative_prompt_embeds=negative_embeds, guidance_scale=guidance_scale,
                       generator=generator, output_type="latent", **call_kwargs).frames
        if resampling is not None:
            resampling.finish_window()
        if on_window_latents is not None:
            on_window_latents(index, latents)
        per_window = latents.shape[1]
        if timeline is None:
            timeline = latents.new_zeros((1, (per_window - 1) * len(starts) + 1, *latents.shape[2:]))
            counts = torch.zeros(timeline.shape[1], device=latents.device)
        slot = (per_window - 1) * index
        timeline[:, slot:slot + per_window] += latents
        counts[slot:slot + per_window] += 1
        previous = latents
    # Slot by slot, in the timeline's dtype, as the original averages them.
    for slot in range(timeline.shape[1]):
        timeline[:, slot] /= counts[slot]
    return pipe.decode(timeline, output_type)
