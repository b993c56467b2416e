"""The tiny VideoPainter end to end: loading, frames in/out, seeds, first frame, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vp_ray.config import Dtype, VideoPainterModelConfig, with_values
from vp_ray.models import usable_frames
from vp_ray.models.tiny import TINY_HEIGHT, TINY_WIDTH, ensure_tiny_tree
from vp_ray.models.videopainter import VideoPainter, condition_inputs, mirrored_indices

PROMPT = "a clean road scene"


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt")


def tiny_cfg(tiny_tree, **overrides) -> VideoPainterModelConfig:
    base, branch = tiny_tree
    cfg = VideoPainterModelConfig(name="tiny", base_model_path=str(base), branch_path=str(branch),
                                  dtype=Dtype.float32, num_inference_steps=2)
    return with_values(cfg, **overrides)


@pytest.fixture(scope="module")
def inpainter(tiny_tree):
    return VideoPainter(tiny_cfg(tiny_tree))


def clip(num_frames=49, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, TINY_HEIGHT, TINY_WIDTH), dtype=bool)
    masks[:, 16:48, 24:64] = True
    return frames, masks


@pytest.fixture(scope="module")
def results(inpainter):
    """Inpainted clips by (prompt, seed), computed once."""
    frames, masks = clip()
    cache = {}

    def get(prompt=PROMPT, seed=1):
        if (prompt, seed) not in cache:
            cache[prompt, seed] = inpainter.inpaint_clip(frames, masks, prompt, seed)
        return cache[prompt, seed]

    return get


@pytest.mark.slow
def test_tiny_clip_has_the_input_shape_and_reports_progress(inpainter):
    frames, masks = clip()
    steps = []
    out = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1, progress=lambda i, n: steps.append((i, n)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert steps == [(1, 2), (2, 2)]


@pytest.mark.slow
def test_same_seed_same_result_other_seed_other_result(results):
    assert np.array_equal(results(seed=1), results(seed=1))
    assert not np.array_equal(results(seed=1), results(seed=2))


@pytest.mark.slow
def test_first_frame_gt_keeps_frame_zero_out_of_the_generation(results):
    # Frame 0's mask is cleared, so its latents are re-imposed from the input: another prompt
    # changes the generated frames but leaves frame 0 (up to the VAE's cross-frame group norm).
    one = results(prompt=PROMPT).astype(int)
    other = results(prompt="a red car on a bridge at night").astype(int)
    frame_zero_change = np.abs(one[0] - other[0]).mean()
    later_change = np.abs(one[1:] - other[1:]).mean()
    assert later_change > 1.0 and frame_zero_change < later_change / 10


def test_object_is_blacked_out_and_frame_zero_filled_and_unmasked():
    frames, masks = clip(num_frames=5)
    video, cond_masks = condition_inputs(frames, masks, first_frame_gt=True, first_frame_fill="opencv")
    assert not cond_masks[0].any() and np.array_equal(cond_masks[1:], masks[1:])
    assert not video[1:][masks[1:]].any()  # the object is gone from the frames the model fills
    assert video[0][masks[0]].any() and np.array_equal(video[0][~masks[0]], frames[0][~masks[0]])

    demo_video, _ = condition_inputs(frames, masks, first_frame_gt=True, first_frame_fill="none")
    assert not demo_video[0][masks[0]].any()  # the original demo leaves frame 0's hole black

    video, cond_masks = condition_inputs(frames, masks, first_frame_gt=False, first_frame_fill="opencv")
    assert np.array_equal(cond_masks, masks) and not video[masks].any()


@pytest.mark.slow
def test_first_frame_latent_is_the_encoded_input_frame(inpainter):
    frames, masks = clip()
    masks[0] = False
    out = inpainter.pipe(video=frames, masks=masks, prompt=PROMPT, num_inference_steps=2,
                         generator=torch.Generator().manual_seed(3), output_type="latent",
                         return_intermediates=True)
    record = out.intermediates
    assert torch.equal(out.frames[:, 0], record["video_latents"][:, 0])
    background = 1 - record["mask_latents"]
    assert torch.equal(out.frames * background, record["video_latents"] * background)
    assert len(record["branch_samples"]) == 2 and all(s.abs().sum() > 0 for s in record["branch_samples"])


def test_short_clip_is_padded_and_cut_back(inpainter):
    frames, masks = clip(num_frames=13)
    out = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert out.shape == frames.shape
    assert mirrored_indices(4, 9).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_usable_frames_with_and_without_padding():
    padded, unpadded = (VideoPainterModelConfig(name="tiny", pad_short_clips=pad) for pad in (True, False))
    assert [usable_frames(padded, n) for n in (5, 12, 49, 80, 200)] == [5, 12, 49, 80, 200]
    # Beyond one window: whole windows of 49 sharing their boundary frame, 48n + 1.
    assert [usable_frames(unpadded, n) for n in (5, 12, 49, 80, 97, 200)] == [5, 9, 49, 49, 97, 193]


@pytest.mark.slow
def test_a_long_clip_runs_in_windows_and_keeps_every_frame_aligned(inpainter):
    frames, masks = clip(num_frames=60)  # two windows of 49 (0-48, 48-96), the second mirrored past 59
    steps = []
    out = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1, progress=lambda i, n: steps.append((i, n)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert steps[-1] == (4, 4)  # 2 steps per window, counted over both windows
    # The decoder runs on pairs of latent slots, causally between pairs: frames 0-40 (slots 0-10) do
    # not see the shared slot 12 (paired with slot 11) and are those of the first window alone.
    alone = inpainter.inpaint_clip(frames[:49], masks[:49], PROMPT, seed=1)
    np.testing.assert_array_equal(out[:41], alone[:41])
    assert not np.array_equal(out[41:49], alone[41:49])


@pytest.mark.slow
def test_long_windows_share_their_boundary_frame(inpainter, monkeypatch):
    from vp_ray.models import long_video

    frames, masks = clip(num_frames=97)
    windows = []
    original = long_video.inpaint_windows

    def spy(pipe, video, *args, **kwargs):
        windows.extend(video[start] for start in long_video.window_starts(len(video), args[1], kwargs["overlap"]))
        return original(pipe, video, *args, **kwargs)

    monkeypatch.setattr("vp_ray.models.videopainter.inpaint_windows", spy)
    out = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert len(out) == 97 and len(windows) == 2
    outside = ~masks[48]
    np.testing.assert_array_equal(windows[1][outside], frames[48][outside])  # window 1 starts on frame 48


def test_unpadded_clip_must_have_4k_plus_1_frames(tiny_tree, inpainter):
    unpadded = VideoPainter(tiny_cfg(tiny_tree, pad_short_clips=False), pipe=inpainter.pipe)
    frames, masks = clip(num_frames=12)
    with pytest.raises(ValueError, match="4k\\+1"):
        unpadded.inpaint_clip(frames, masks, PROMPT, seed=1)


@pytest.mark.slow
def test_overlong_prompt_is_truncated_with_a_warning(inpainter):
    frames, masks = clip(num_frames=5)
    inpainter.inpaint_clip(frames, masks, "a clean road " * 200, seed=1)
    assert len(inpainter.last_warnings) == 1 and "truncated to 226" in inpainter.last_warnings[0]
    inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert inpainter.last_warnings == []


def test_reduce_memory_turns_on_vae_savers_then_reports_nothing_left(tiny_tree):
    inpainter = VideoPainter(tiny_cfg(tiny_tree))
    assert inpainter.memory_mode == "resident" and not inpainter.pipe.vae.use_tiling  # CPU
    assert inpainter.memory_plan == "resident"
    assert inpainter.reduce_memory() is True
    assert inpainter.pipe.vae.use_tiling and inpainter.pipe.vae.use_slicing
    assert inpainter.memory_plan == "resident + small VAE tiles"   # what the manifest records from here on
    assert inpainter.pipe.vae.tile_sample_min_height == inpainter.pipe.vae.config.sample_height // 2  # small
    assert inpainter.reduce_memory() is False  # no GPU: model offload does not apply


def test_vae_tiling_keeps_the_real_models_overlaps_and_fixes_the_tiny_ones():
    """The real VAE's tiles (240x360 pixels = 30x45 latents) keep diffusers' 1/6 and 1/5; the tiny
    VAE's (32x48 = 4x6) would not add up to the frame with those, so whole fractions replace them."""
    from vp_ray.models.vae_tiling import tile_overlap, tiles_add_up

    assert tile_overlap(240, 30, 1 / 6, 8) == 1 / 6 and tile_overlap(360, 45, 0.2, 8) == 0.2
    assert not tiles_add_up(32, 4, 1 / 6, 8) and not tiles_add_up(48, 6, 0.2, 8)
    assert tile_overlap(32, 4, 1 / 6, 8) == 0.25 and tile_overlap(48, 6, 0.2, 8) == 1 / 6


@pytest.mark.slow
def test_tiled_vae_round_trips_a_tiny_clip_at_its_own_size(tiny_tree):
    """VAE tiling on the tiny model (what the OOM ladder switches on) keeps the frame size; diffusers'
    default overlaps gave a 9x12 latent and 70x110 frames here."""
    inpainter = VideoPainter(tiny_cfg(tiny_tree, vae_tiling=True))
    assert inpainter.pipe.vae.use_tiling and inpainter.pipe.vae.use_slicing
    frames, masks = clip(num_frames=17)
    out = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert out.shape == frames.shape


def test_gpu_memory_limit_becomes_a_fraction_of_the_device(monkeypatch):
    from types import SimpleNamespace

    from vp_ray.models import gpu

    calls = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    cuda = torch.device("cuda")
    gpu.limit_memory(cuda, 30)
    assert calls == [(0.375, 0)]  # torch wants a device index, not a bare "cuda"
    gpu.limit_memory(cuda, None)
    gpu.limit_memory(torch.device("cpu"), 30)  # no GPU: nothing to cap
    assert len(calls) == 1
    with pytest.raises(ValueError, match="limit of 90 GiB is not within the GPU's 80.0 GiB"):
        gpu.limit_memory(cuda, 90)


def test_large_vae_tiles_span_the_height_and_half_the_width():
    """480x720: one row of 576x432-pixel tiles, two across (the tiles measured on the H200); a tiny
    64x96 frame likewise; small tiles stay diffusers' size and overlaps."""
    from types import SimpleNamespace

    from vp_ray.models.vae_tiling import enable_vae_tiling, fitting_tile

    assert fitting_tile(480, 1, 1 / 6, 8) == (576, 1 / 6) and fitting_tile(720, 2, 1 / 6, 8) == (432, 1 / 6)
    assert fitting_tile(64, 1, 1 / 6, 8)[0] == 72 and fitting_tile(96, 2, 1 / 6, 8)[0] == 56
    set_to = {}
    real = SimpleNamespace(config=SimpleNamespace(block_out_channels=(128, 256, 256, 512), sample_height=480,
                                                  sample_width=720),
                           enable_slicing=lambda: None, enable_tiling=lambda **kw: set_to.update(kw))
    enable_vae_tiling(real, "small")
    assert set_to == {"tile_sample_min_height": 240, "tile_sample_min_width": 360,
                      "tile_overlap_factor_height": 1 / 6, "tile_overlap_factor_width": 1 / 5}
    enable_vae_tiling(real, "large", 480, 720)
    assert (set_to["tile_sample_min_height"], set_to["tile_sample_min_width"]) == (576, 432)


@pytest.mark.slow
def test_large_vae_tiles_round_trip_a_tiny_clip_at_its_own_size(tiny_tree, inpainter):
    frames, masks = clip(num_frames=17)
    untiled = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    large = VideoPainter(tiny_cfg(tiny_tree, height=TINY_HEIGHT, width=TINY_WIDTH), pipe=inpainter.pipe)
    large.vae_tiles = "large"
    large._apply_vae_tiles()
    try:
        assert inpainter.pipe.vae.tile_sample_min_width == 56 and inpainter.pipe.vae.use_tiling
        out = large.inpaint_clip(frames, masks, PROMPT, seed=1)
    finally:
        large.vae_tiles = "none"
        large._apply_vae_tiles()
    # Tiled pixels differ (the random tiny networks amplify the seams' blending: no closeness to judge).
    assert out.shape == frames.shape and not np.array_equal(out, untiled)


@pytest.mark.slow
def test_text_encoder_offload_brings_t5_once_per_clip_and_changes_nothing(tiny_tree, inpainter):
    """memory_mode=text_encoder_offload: T5's weights live on the host and visit the device for the
    clip's two prompts (one visit), not again for the windows' calls; same result as resident."""
    from vp_ray.models.host_weights import HostWeights

    frames, masks = clip(num_frames=97, seed=3)   # two windows
    resident = inpainter.inpaint_clip(frames, masks, PROMPT, seed=1)
    offloaded = VideoPainter(tiny_cfg(tiny_tree), pipe=inpainter.pipe)
    offloaded.memory_mode = "text_encoder_offload"
    offloaded._apply_memory_mode()
    host = inpainter.pipe.text_encoder_host
    visits, on = [], host.on

    def counted(device):
        visits.append(device)
        return on(device)

    host.on = counted
    try:
        assert isinstance(host, HostWeights)
        assert next(inpainter.pipe.text_encoder.parameters()).data_ptr() == host.host[0].data_ptr()
        result = offloaded.inpaint_clip(frames, masks, PROMPT, seed=1)
    finally:
        offloaded.memory_mode = "resident"
        offloaded._apply_memory_mode()
    assert len(visits) == 1 and inpainter.pipe.text_encoder_host is None
    assert np.array_equal(result, resident)


def test_host_weights_come_back_to_the_same_host_copies_even_after_an_error():
    """(A GPU visit is measured in bench/RESULTS.md; here the host side.) Every parameter and buffer
    is a host copy between visits, the same copies after one, also when the visit fails (an OOM)."""
    from vp_ray.models.host_weights import HostWeights

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    host = HostWeights(model)
    held = [*model.parameters(), *model.buffers()]
    assert [t.data_ptr() for t in held] == [h.data_ptr() for h in host.host] and len(held) == 7
    swapped = torch.zeros(4, 4)
    with pytest.raises(RuntimeError, match="boom"):
        with host.on(torch.device("cpu")):
            model[0].weight.data = swapped   # stands in for the device copy a visit puts there
            raise RuntimeError("boom")
    assert [t.data_ptr() for t in held] == [h.data_ptr() for h in host.host]


def test_auto_memory_plan_follows_the_measured_peaks():
    """141 and 80 GB cards keep everything resident and untiled; a 32 GB card (31 GiB usable, or a
    26 GiB actor cap beside SAM2) keeps T5 on the host and runs the VAE in large tiles; below 25.7 GiB,
    model offload."""
    from vp_ray.models.videopainter import plan_memory

    assert plan_memory(139) == plan_memory(79) == plan_memory(36.7) == ("resident", "none")
    assert plan_memory(36.6) == plan_memory(31) == plan_memory(26) == ("text_encoder_offload", "large")
    assert plan_memory(25.6) == plan_memory(21) == ("model_offload", "small")


def test_auto_memory_plan_makes_room_for_id_resampling():
    """ID resampling holds 42 blocks' outputs (2 x 17776 tokens x 3072, bf16): 8.54 GiB. A 32 GB card
    then offloads the model (its loop peak, 13.6 GiB, leaves room); 80 GB stays resident."""
    from types import SimpleNamespace

    from vp_ray.models.videopainter import ID_RESAMPLING_TRANSIENT_GIB, id_resampling_state_gib, plan_memory

    real = SimpleNamespace(sample_frames=49, sample_height=60, sample_width=90, patch_size=2, num_layers=42,
                           num_attention_heads=48, attention_head_dim=64, max_text_seq_length=226)
    extra = id_resampling_state_gib(real)
    assert extra - ID_RESAMPLING_TRANSIENT_GIB == pytest.approx(42 * 2 * 17776 * 3072 * 2 / 2**30)
    assert plan_memory(31, extra) == ("model_offload", "small")
    assert plan_memory(46, extra) == ("text_encoder_offload", "large")
    assert plan_memory(79, extra) == ("resident", "none")


@pytest.mark.parametrize("id_resampling, reuse, cap, plan", [
    (False, 1, 31, ("text_encoder_offload", "large")),
    (False, 2, 31, ("model_offload", "small")),   # the cache (8.54 GiB) leaves 22.5 GiB
    (False, 2, 40, ("text_encoder_offload", "large")),
    (True, 1, 40, ("text_encoder_offload", "large")),
    (True, 2, 40, ("model_offload", "small")),    # both: 18.6 GiB of extras
])
def test_auto_memory_plan_counts_what_the_speed_and_id_options_hold(monkeypatch, id_resampling, reuse, cap, plan):
    from types import SimpleNamespace

    from vp_ray.models.videopainter import VideoPainter

    real = SimpleNamespace(sample_frames=49, sample_height=60, sample_width=90, patch_size=2, num_layers=42,
                           num_attention_heads=48, attention_head_dim=64, max_text_seq_length=226)
    inpainter = VideoPainter.__new__(VideoPainter)
    inpainter.device = torch.device("cuda")
    inpainter.pipe = SimpleNamespace(transformer=SimpleNamespace(config=real, dtype=torch.bfloat16))
    inpainter.cfg = {"memory_mode": "auto", "gpu_memory_limit_gb": cap, "id_resampling": id_resampling,
                     "approx_attention_reuse": reuse}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (139 * 2**30, 141 * 2**30))
    assert inpainter._resolve_memory_mode() == plan


def test_uint8_output_equals_diffusers_postprocessing_then_rounding():
    # The inpainter converts the decoded video on the GPU; it must give exactly the frames that
    # diffusers' numpy postprocessing followed by round(x * 255) gives, in the decoder's bf16 too.
    from diffusers.video_processor import VideoProcessor

    from vp_ray.models.pipeline import tensor_to_uint8

    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        decoded = (torch.randn(1, 3, 5, 16, 24, generator=generator) * 0.7).to(dtype)
        decoded[0, 0, 0, 0, :4] = torch.tensor([-1.5, 1.5, 0.0, 1.0])  # clipped and exact values
        reference = VideoProcessor(vae_scale_factor=8).postprocess_video(video=decoded, output_type="np")[0]
        expected = np.clip(np.round(reference * 255.0), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(tensor_to_uint8(decoded), expected)



def test_scheduler_noise_hook_is_scoped_to_the_loop_and_keeps_the_draws():
    import diffusers.schedulers.scheduling_dpm_cogvideox as dpm
    from diffusers import CogVideoXDPMScheduler

    from vp_ray.models.pipeline import noise_copied_without_waiting

    original = dpm.randn_tensor
    with noise_copied_without_waiting(CogVideoXDPMScheduler()):
        assert dpm.randn_tensor is not original
        drawn = dpm.randn_tensor((2, 3), generator=torch.Generator().manual_seed(5), device=torch.device("cpu"),
                                 dtype=torch.float32)
    assert dpm.randn_tensor is original
    torch.testing.assert_close(drawn, torch.randn((2, 3), generator=torch.Generator().manual_seed(5)),
                               rtol=0, atol=0)


def test_long_clips_are_cut_into_whole_windows_sharing_one_latent_slot():
    from vp_ray.models.long_video import frames_used, output_frames, window_starts

    assert window_starts(98, 49) == [0, 49] and window_starts(120, 49) == [0, 49]  # 22 frames left out
    assert output_frames(98, 49) == 97 and output_frames(34, 17) == 33 and output_frames(49, 49) == 49
    assert window_starts(48, 49) == [] and output_frames(48, 49) == 0
    # Windows sharing their boundary frame: 48n + 1 frames in, as many out.
    assert window_starts(97, 49, overlap=1) == [0, 48] and output_frames(97, 49, overlap=1) == 97
    assert frames_used(120, 49, overlap=1) == 97 and frames_used(120, 49) == 98


@pytest.mark.slow
def test_flux_first_frame_fill_conditions_frame_zero(tiny_tree, inpainter, tmp_path):
    """first_frame_fill=flux: a tiny random FLUX.1-Fill in the released layout (written on first use)
    fills frame 0, which then conditions the clip; its weights are checked before anything starts."""
    from vp_ray.errors import ConfigError
    from vp_ray.models import check_weights

    frames, masks = clip(num_frames=17)
    filled = np.full_like(frames[0], 7)
    video, cleared = condition_inputs(frames, masks, True, "flux", fill=lambda frame, mask: filled)
    assert (video[0] == 7).all() and not cleared[0].any() and (video[1][masks[1]] == 0).all()

    cfg = tiny_cfg(tiny_tree, first_frame_fill="flux", flux_fill_path=str(tmp_path / "flux_inp"),
                   flux_num_inference_steps=2)
    with pytest.raises(ConfigError, match="FLUX.1-Fill folder is incomplete"):
        check_weights(with_values(cfg, create_tiny_if_missing=False))
    flux = VideoPainter(with_values(cfg, create_tiny_if_missing=True), pipe=inpainter.pipe)
    check_weights(with_values(cfg, create_tiny_if_missing=False))  # now complete
    fills = []
    flux.flux = _Recorder(flux.flux, fills)
    out = flux.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert out.shape == frames.shape and len(fills) == 1
    assert fills[0][1] == PROMPT and not np.array_equal(out, inpainter.inpaint_clip(frames, masks, PROMPT, seed=1))


class _Recorder:
    """The FLUX filler, with its calls recorded."""

    def __init__(self, flux, calls):
        self.flux, self.calls = flux, calls

    def __call__(self, frame, mask, prompt):
        self.calls.append((frame, prompt))
        return self.flux(frame, mask, prompt)
