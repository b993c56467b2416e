"""Which SDPA kernel the backbone's attention runs on, chosen by timing it once per actor.

PyTorch picks among its attention kernels by a fixed priority order: cuDNN first on Hopper and
datacenter Blackwell (compute capability 9.x, 10.x), FlashAttention-2 ("flash") first elsewhere. The
fastest kernel for the backbone's shape depends on the card: on an H200 cuDNN takes 18.7 ms a call,
flash 24.3 ms (bench/RESULTS.md); published figures have cuDNN at 0.88x of flash's speed on an RTX
PRO 6000 (Blackwell). So with ``model.attention_backend=auto`` an actor times one call of its
backbone's attention (CFG batch, heads, text + video tokens of a 49-frame window at the run's size)
with each kernel when it starts (under a second at an H200's timings) and puts the fastest first.

How it applies: ``AttentionChoice.in_force()`` wraps each clip's denoising in ``sdpa_kernel([chosen,
then PyTorch's order], set_priority=True)``. diffusers' CogVideoX attention processors (and ID
resampling's) call ``F.scaled_dot_product_attention``, which reads that global order at every call; the
other kernels stay enabled, so a call the chosen kernel cannot take goes to PyTorch's next kernel
instead of failing. torch.compile picks the kernel when it traces a block and keeps it in the graph,
with no guard on the order (torch 2.14: a graph traced under one kernel keeps it under another), so the
choice must be in force at the first compile: compile_blocks compiles in the first clip's denoising,
inside ``in_force``. PyTorch's CPU attention ignores the order (flash, else math).

Every kernel computes exact attention, but they round differently, so results are not bit-identical
across kernels; the setting is not fingerprinted (``model.attention_backend`` in vp_ray/config.py says
why) and each clip's manifest row names the kernel it ran with.
"""

from __future__ import annotations

import contextlib
import statistics
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KERNELS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
           "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
ENABLED = {"cudnn": torch.backends.cuda.cudnn_sdp_enabled, "flash": torch.backends.cuda.flash_sdp_enabled,
           "efficient": torch.backends.cuda.mem_efficient_sdp_enabled,
           "math": torch.backends.cuda.math_sdp_enabled}
# Timed by auto (math materialises the attention matrix: never the fastest on a GPU).
MEASURED = ("cudnn", "flash", "efficient")
# "pytorch" leaves PyTorch's order alone; "auto" measures on a GPU and is "pytorch" without one.
AUTO, PYTORCH = "auto", "pytorch"
SETTINGS = (AUTO, PYTORCH, *KERNELS)
# Median of REPEATS calls per kernel, taken in turns after WARMUP calls each (cuDNN builds its plan on
# the first call). At 2 x 48 x 17776 x 64 the three kernels take about 0.1 s a turn on an H200.
WARMUP, REPEATS = 2, 5
# Kernels within this fraction of the fastest count as equally fast and PyTorch's order decides among
# them: timing noise between near-equal kernels does not move an actor off PyTorch's own choice, and
# what such a move could gain is small (attention is about half of a step on an H200: 42 calls of
# 18.7 ms in 1.55 s, so 3 % of it is about 1.5 % of a step).
TIE = 0.03


@dataclass(frozen=True)
class AttentionShape:
    """One attention call of the backbone: q, k and v are [batch, heads, tokens, head_dim]."""

    batch: int
    heads: int
    tokens: int
    head_dim: int

    def __str__(self) -> str:
        return f"{self.batch}x{self.heads}x{self.tokens}x{self.head_dim}"


def backbone_attention_shape(pipe, height: int, width: int, guidance_scale: float,
                             frames: int) -> AttentionShape:
    """The backbone's attention on a window of ``frames`` at ``height`` x ``width``: text and video
    tokens attend jointly; CFG (guidance above 1) doubles the batch. CogVideoX-5b-I2V at 49 x 480 x
    720: 2 x 48 x (226 + 13 * 30 * 45 = 17776) x 64."""
    c = pipe.transformer.config
    latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    if c.patch_size_t:   # CogVideoX 1.5 patches time too (its latent frames padded to a multiple)
        latent_frames = -(-latent_frames // c.patch_size_t)
    latent_h, latent_w = height // pipe.vae_scale_factor_spatial, width // pipe.vae_scale_factor_spatial
    video_tokens = latent_frames * (latent_h // c.patch_size) * (latent_w // c.patch_size)
    return AttentionShape(2 if guidance_scale > 1 else 1, c.num_attention_heads,
                          c.max_text_seq_length + video_tokens, c.attention_head_dim)


def pytorch_order() -> list[str]:
    """PyTorch's kernel priority order now (set on its first attention call on a GPU)."""
    by_value = {int(backend): name for name, backend in KERNELS.items()}
    # Private, but it is what sdpa_kernel(set_priority=True) itself reads and writes.
    return [by_value[value] for value in torch._C._get_sdp_priority_order() if value in by_value]


def time_kernels(names: Sequence[str], time_call: Callable[[str], float], warmup: int = WARMUP,
                 repeats: int = REPEATS) -> tuple[dict[str, float], dict[str, str]]:
    """(median seconds per kernel, why each kernel that raised was left out). ``time_call(name)``
    runs one call with that kernel alone and returns its seconds. Kernels are timed in turns, so a
    clock that drifts (a GPU warming up) weighs on all of them alike."""
    failures: dict[str, str] = {}
    samples: dict[str, list[float]] = {name: [] for name in names}

    def attempt(name: str, record: bool) -> None:
        try:
            seconds = time_call(name)
        except Exception as error:  # noqa: BLE001 - a kernel this GPU, dtype or build lacks
            failures[name] = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
            del samples[name]
            return
        if record:
            samples[name].append(seconds)

    for name in names:
        for _ in range(warmup):
            if name in samples:
                attempt(name, record=False)
    for _ in range(repeats):
        for name in list(samples):
            attempt(name, record=True)
    return {name: statistics.median(times) for name, times in samples.items()}, failures


def pick_fastest(medians: dict[str, float], preference: Sequence[str], tie: float = TIE) -> str:
    """The fastest kernel; among those within ``tie`` of it, the first in ``preference`` (PyTorch's
    order), then by name, so that equal timings always give the same choice."""
    fastest = min(medians.values())
    near = [name for name, seconds in medians.items() if seconds <= fastest * (1 + tie)]
    rank = {name: i for i, name in enumerate(preference)}
    return min(near, key=lambda name: (rank.get(name, len(rank)), name))


def describe(medians: dict[str, float], failures: dict[str, str], chosen: str) -> str:
    """The log line: "attention: flash 12.1 ms, cudnn 13.4 ms, efficient 20.2 ms -> flash"."""
    fastest_first = sorted(medians.items(), key=lambda item: item[1])
    timed = [f"{name} {seconds * 1e3:.1f} ms" for name, seconds in fastest_first]
    failed = [f"{name} failed ({why})" for name, why in failures.items()]
    return f"attention: {', '.join(timed + failed)} -> {chosen}"


@dataclass(frozen=True)
class AttentionChoice:
    """The kernel an actor's attention runs on: ``kernel`` first in PyTorch's order, or None to leave
    PyTorch's order alone. ``reason`` is the log line that says how it was chosen."""

    kernel: str | None
    reason: str

    @property
    def name(self) -> str:
        """As the manifest and the summary name it: the kernel, or "pytorch"."""
        return self.kernel or PYTORCH

    @contextlib.contextmanager
    def in_force(self) -> Iterator[None]:
        """The chosen kernel first for the attention calls inside (each clip's denoising); the other
        kernels that are enabled stay behind it in PyTorch's order."""
        if self.kernel is None:
            yield
            return
        rest = [name for name in pytorch_order() if name != self.kernel and ENABLED[name]()]
        with sdpa_kernel([KERNELS[name] for name in (self.kernel, *rest)], set_priority=True):
            yield


class GpuAttentionTimer:
    """``time_call`` for ``time_kernels``: one attention call of ``shape`` on ``device`` with one
    kernel alone, timed with CUDA events. Its tensors (about 0.9 GiB at full size in bf16) are freed
    with the timer."""

    def __init__(self, shape: AttentionShape, device: torch.device, dtype: torch.dtype):
        # A generator of its own: the global random state stays as it was.
        generator = torch.Generator(device).manual_seed(0)
        size = (shape.batch, shape.heads, shape.tokens, shape.head_dim)
        self.q, self.k, self.v = (torch.randn(size, device=device, dtype=dtype, generator=generator)
                                  for _ in range(3))

    def __call__(self, name: str) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        # A kernel that cannot take the call raises "No available kernel" after one warning per kernel.
        with sdpa_kernel(KERNELS[name]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start.record()
            F.scaled_dot_product_attention(self.q, self.k, self.v)
            end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def choose_kernel(setting: str, on_gpu: bool, time_call: Callable[[str], float] | None = None,
                  preference: Sequence[str] = ()) -> AttentionChoice:
    """The choice for ``model.attention_backend=setting``. ``auto``: on a GPU, the fastest of
    ``MEASURED`` by ``time_call`` (ties: the first in ``preference``); without one, PyTorch's order.
    ``pytorch``: PyTorch's order. A kernel's name: that kernel, untimed."""
    if setting not in SETTINGS:
        raise ValueError(f"model.attention_backend={setting!r}: expected one of {', '.join(SETTINGS)}")
    if setting == PYTORCH:
        return AttentionChoice(None, "attention: PyTorch's order (model.attention_backend=pytorch)")
    if setting != AUTO:
        return AttentionChoice(setting, f"attention: {setting} (model.attention_backend={setting})")
    if not on_gpu:
        return AttentionChoice(None, "attention: PyTorch's order (no GPU to measure on)")
    medians, failures = time_kernels(MEASURED, time_call)
    if not medians:
        return AttentionChoice(None, describe({}, failures, "PyTorch's order"))
    chosen = pick_fastest(medians, preference)
    return AttentionChoice(chosen, describe(medians, failures, chosen))


def settle_pytorch_order(device: torch.device, dtype: torch.dtype) -> None:
    """PyTorch sets its default order at its first attention call on a GPU, over any order set before:
    made here, before any ``in_force``, so that it cannot replace the chosen order in the first clip."""
    F.scaled_dot_product_attention(*(torch.zeros(1, 1, 8, 64, device=device, dtype=dtype) for _ in range(3)))


def choose_attention(setting: str, device: torch.device, shape: Callable[[], AttentionShape],
                     dtype: torch.dtype) -> AttentionChoice:
    """``choose_kernel`` for an actor on ``device``, timing ``shape()`` there with ``GpuAttentionTimer``."""
    if device.type != "cuda":
        return choose_kernel(setting, on_gpu=False)
    settle_pytorch_order(device, dtype)
    if setting != AUTO:
        return choose_kernel(setting, on_gpu=True)
    try:
        timer = GpuAttentionTimer(shape(), device, dtype)
        return choose_kernel(setting, True, timer, pytorch_order())
    except torch.cuda.OutOfMemoryError:
        # Not fatal: the actor's out-of-memory ladder may still make room for its clips.
        return AttentionChoice(None, f"attention: PyTorch's order (no GPU memory for timing {shape()})")
    finally:
        timer = None
        torch.cuda.empty_cache()   # the timer's blocks: back to what the memory plan counted on
