"""The attention kernel: chosen by timing at actor start (a stand-in timer here), in force during
every clip's denoising, eager and compiled."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import compose_config
from tests.test_pipeline import PROMPT, clip, tiny_cfg
from vp_ray.config import AttentionBackend, output_settings, with_values
from vp_ray.models import attention_backend
from vp_ray.models.attention_backend import AttentionChoice, choose_kernel, pytorch_order
from vp_ray.models.tiny import TINY_HEIGHT, TINY_WIDTH
from vp_ray.models.videopainter import VideoPainter

PYTORCH_HOPPER = ["cudnn", "flash", "efficient", "math"]   # PyTorch's order on an H100


class StandInTimer:
    """``time_call``: each kernel's seconds from a list (the last repeats), or an error to raise;
    records the calls."""

    def __init__(self, **seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self, name: str) -> float:
        self.calls.append(name)
        value = self.seconds[name]
        if isinstance(value, Exception):
            raise value
        return value[min(self.calls.count(name), len(value)) - 1] if isinstance(value, list) else value


def sdp_state() -> tuple[list[str], list[bool]]:
    """PyTorch's kernel order and which kernels are enabled."""
    cuda = torch.backends.cuda
    return pytorch_order(), [cuda.cudnn_sdp_enabled(), cuda.flash_sdp_enabled(),
                             cuda.mem_efficient_sdp_enabled(), cuda.math_sdp_enabled()]


def test_the_fastest_kernel_wins_and_the_log_line_gives_every_timing():
    timer = StandInTimer(cudnn=0.0134, flash=0.0121, efficient=0.0202)
    choice = choose_kernel("auto", True, timer, PYTORCH_HOPPER)
    assert choice.kernel == choice.name == "flash"
    assert choice.reason == "attention: flash 12.1 ms, cudnn 13.4 ms, efficient 20.2 ms -> flash"


def test_kernels_are_timed_in_turns_after_their_warm_up_and_each_gives_its_median():
    # First calls are slow (cuDNN builds its plan) and one late call is an outlier: neither counts.
    timer = StandInTimer(cudnn=[0.5, 0.5, 0.012], flash=[0.3, 0.3, 0.010, 0.011, 0.090, 0.010, 0.010])
    medians, failures = attention_backend.time_kernels(["cudnn", "flash"], timer, warmup=2, repeats=5)
    assert medians == {"cudnn": 0.012, "flash": 0.010} and failures == {}
    assert timer.calls == ["cudnn"] * 2 + ["flash"] * 2 + ["cudnn", "flash"] * 5


def test_a_kernel_that_raises_is_left_out_and_named():
    timer = StandInTimer(cudnn=0.0134, flash=RuntimeError("No available kernel. Aborting execution.\nmore"),
                         efficient=0.0202)
    choice = choose_kernel("auto", True, timer, PYTORCH_HOPPER)
    assert choice.kernel == "cudnn"
    assert choice.reason == ("attention: cudnn 13.4 ms, efficient 20.2 ms, flash failed (RuntimeError: No "
                             "available kernel. Aborting execution.) -> cudnn")
    assert timer.calls.count("flash") == 1   # not tried again


def test_when_every_kernel_raises_pytorchs_order_stays():
    error = RuntimeError("no kernel")
    timer = StandInTimer(cudnn=error, flash=error, efficient=error)
    choice = choose_kernel("auto", True, timer, PYTORCH_HOPPER)
    assert choice.kernel is None and choice.name == "pytorch"
    assert choice.reason.endswith("-> PyTorch's order")


@pytest.mark.parametrize("flash,preference,chosen", [
    (0.0100, PYTORCH_HOPPER, "cudnn"),                         # an exact tie: PyTorch's order decides
    (0.0098, PYTORCH_HOPPER, "cudnn"),                         # 2 % faster: noise, PyTorch's order decides
    (0.0098, ["flash", "efficient", "math", "cudnn"], "flash"),
    (0.0090, PYTORCH_HOPPER, "flash"),                         # 10 % faster: measurably faster
    (0.0100, [], "cudnn"),                                     # no order known: by name
])
def test_near_equal_kernels_are_decided_by_pytorchs_order(flash, preference, chosen):
    timer = StandInTimer(cudnn=0.0100, flash=flash, efficient=0.0300)
    assert choose_kernel("auto", True, timer, preference).kernel == chosen


def test_a_fixed_kernel_or_pytorch_bypasses_the_timing():
    timer = StandInTimer(cudnn=0.01, flash=0.02, efficient=0.03)
    assert choose_kernel("flash", True, timer).kernel == "flash"
    assert choose_kernel("math", False, timer).kernel == "math"
    assert choose_kernel("pytorch", True, timer).kernel is None
    assert timer.calls == []
    with pytest.raises(ValueError, match="model.attention_backend='fastest': expected one of auto, pytorch"):
        choose_kernel("fastest", True, timer)


def test_without_a_gpu_auto_times_nothing_and_changes_nothing():
    shapes_asked = []
    choice = attention_backend.choose_attention("auto", torch.device("cpu"), lambda: shapes_asked.append(1),
                                                torch.float32)
    assert choice.kernel is None and choice.reason == "attention: PyTorch's order (no GPU to measure on)"
    assert shapes_asked == []
    before = sdp_state()
    with choice.in_force():
        assert sdp_state() == before


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """choose_attention's GPU path on the CPU: PyTorch's first attention call and the timer recorded."""
    events = []
    monkeypatch.setattr(attention_backend, "settle_pytorch_order",
                        lambda device, dtype: events.append("settle"))

    def timer(shape, device, dtype):
        events.append(f"timer {shape}")
        if shape.tokens > 10**6:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return StandInTimer(cudnn=0.0187, flash=0.0243, efficient=0.0565)

    monkeypatch.setattr(attention_backend, "GpuAttentionTimer", timer)
    return events


def test_on_a_gpu_an_actor_settles_pytorchs_order_then_times_the_backbone_shape(stand_in_gpu):
    cuda, shape = torch.device("cuda"), attention_backend.AttentionShape(2, 48, 17776, 64)
    choice = attention_backend.choose_attention("auto", cuda, lambda: shape, torch.bfloat16)
    assert choice.reason == "attention: cudnn 18.7 ms, flash 24.3 ms, efficient 56.5 ms -> cudnn"
    assert stand_in_gpu == ["settle", "timer 2x48x17776x64"]
    stand_in_gpu.clear()
    assert attention_backend.choose_attention("flash", cuda, lambda: shape, torch.bfloat16).kernel == "flash"
    assert stand_in_gpu == ["settle"]   # a fixed kernel: PyTorch's order settled all the same, nothing timed


def test_no_memory_for_the_timing_leaves_pytorchs_order(stand_in_gpu):
    huge = attention_backend.AttentionShape(2, 48, 10**7, 64)
    choice = attention_backend.choose_attention("auto", torch.device("cuda"), lambda: huge, torch.bfloat16)
    assert choice.kernel is None
    assert choice.reason == "attention: PyTorch's order (no GPU memory for timing 2x48x10000000x64)"


def test_in_force_puts_the_kernel_first_keeps_the_others_behind_and_restores():
    order, enabled = sdp_state()
    torch.backends.cuda.enable_cudnn_sdp(False)   # switched off by the user: stays off
    try:
        with AttentionChoice("math", "").in_force():
            inside_order, inside_enabled = sdp_state()
        assert inside_order == ["math"] + [name for name in order if name != "math"]
        assert inside_enabled == [False, *enabled[1:]]
        assert sdp_state() == (order, [False, *enabled[1:]])
    finally:
        torch.backends.cuda.enable_cudnn_sdp(enabled[0])


def test_the_backbone_shape_is_cogvideox_5b_at_49_frames_480x720():
    config = SimpleNamespace(num_attention_heads=48, attention_head_dim=64, max_text_seq_length=226,
                             patch_size=2, patch_size_t=None)
    pipe = SimpleNamespace(transformer=SimpleNamespace(config=config), vae_scale_factor_temporal=4,
                           vae_scale_factor_spatial=8)

    def shape(guidance_scale=6.0):
        return attention_backend.backbone_attention_shape(pipe, 480, 720, guidance_scale, frames=49)

    assert str(shape()) == "2x48x17776x64"
    assert shape(guidance_scale=1.0).batch == 1   # no CFG
    config.patch_size_t = 2   # CogVideoX 1.5: 13 latent frames in 7 temporal patches
    assert shape().tokens == 226 + 7 * 30 * 45


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    from vp_ray.models.tiny import ensure_tiny_tree

    return ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt-attention")


def small_clip_cfg(tiny_tree, **overrides):
    """One step on clips of 5 frames (2 latent frames): the attention calls of a clip, cheaply."""
    return tiny_cfg(tiny_tree, height=TINY_HEIGHT, width=TINY_WIDTH, num_inference_steps=1,
                    pad_short_clips=False, **overrides)


def spy_attention(monkeypatch) -> list[tuple[str, tuple[int, ...]]]:
    """(the kernel first in PyTorch's order, q's shape) at every attention call of the pipelines
    (diffusers' processors and ID resampling's call ``F.scaled_dot_product_attention``)."""
    calls, sdpa = [], F.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        calls.append((pytorch_order()[0], tuple(query.shape)))
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return calls


@pytest.mark.slow
def test_the_chosen_kernel_is_first_at_every_attention_call_of_a_clip(tiny_tree, monkeypatch):
    """A fixed kernel (math: one the CPU has) stands in for auto's choice. The shape auto times is
    the one the backbone's attention gets."""
    default = pytorch_order()[0]
    cfg = small_clip_cfg(tiny_tree)
    assert VideoPainter(cfg).attention_backend == "pytorch"   # no GPU: nothing timed or changed
    inpainter = VideoPainter(with_values(cfg, attention_backend="math"))
    assert inpainter.attention_backend == "math"
    calls = spy_attention(monkeypatch)
    inpainter.inpaint_clip(*clip(num_frames=5), PROMPT, seed=1)
    assert calls and {first for first, _ in calls} == {"math"}
    shape = attention_backend.backbone_attention_shape(inpainter.pipe, TINY_HEIGHT, TINY_WIDTH, 6.0, frames=5)
    assert (shape.batch, shape.heads, shape.tokens, shape.head_dim) in {q for _, q in calls}
    assert pytorch_order()[0] == default   # restored after the clip


@pytest.mark.slow
def test_compiled_blocks_are_traced_with_the_chosen_kernel_first(tiny_tree, monkeypatch):
    """torch.compile picks the kernel when it traces (the graph keeps it): compile_blocks' graphs
    must be traced inside in_force. A tracing backend records the order at each trace."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    traced = []

    def record(graph, inputs):
        traced.append(pytorch_order()[0])
        return make_boxed_func(graph.forward)

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, options=None, **kwargs: compile_(
        fn, backend=aot_autograd(fw_compiler=record), **kwargs))
    torch._dynamo.reset()
    cfg = small_clip_cfg(tiny_tree, compile_blocks=True, attention_backend="math")
    inpainter = VideoPainter(cfg)
    inpainter.inpaint_clip(*clip(num_frames=5), PROMPT, seed=1)
    torch._dynamo.reset()
    assert traced and set(traced) == {"math"}


def test_the_setting_is_not_fingerprinted(tmp_path):
    """Changing it redoes no clip: auto's kernel differs between GPUs anyway (vp_ray/config.py)."""
    cfg = compose_config([f"output_dir={tmp_path}", "model=tiny", "model.attention_backend=flash"])
    assert cfg.model.attention_backend is AttentionBackend.flash
    assert "attention_backend" not in output_settings(cfg)["model"]
