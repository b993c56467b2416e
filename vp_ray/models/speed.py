"""Speed options of the VideoPainter pipeline: one exact (compiled blocks), two approximate.

``compile_blocks`` compiles each block's ``forward`` of the backbone and the branch, not the module
call (``Module.compile``, which diffusers' ``compile_repeated_blocks`` uses): the branch injection's
forward hooks then stay outside the graphs. Those hooks are closures over their block's index,
which torch.compile specialises on, so compiling them in would compile each of the 42 blocks
apart; compiled this way, every backbone block shares one graph (two with the branch's), built at
the actor's first window and reused for every later window and clip of the same shape. ID
resampling keeps its per-block state out of the graphs the same way (``id_resample``): its blocks
share a few graphs (window 0 and later windows), however many blocks there are.

Whether an actor compiles (``model.compile_blocks``: true, false, or auto where it pays back) is
decided in ``compile_plan``.

``reuse_attention`` is diffusers' Pyramid Attention Broadcast and ``fp8_linear_layers`` torchao's
FP8 matmuls: approximations (results change), off by default.
"""

from __future__ import annotations

from typing import Sequence

import torch

# Inductor rounds intermediates to bf16 where eager does: on the H200 the final latents then
# stay within relative L2 1e-2 of eager (0.0088; 0.0115 without) for about 2.5 % of the step time.
COMPILE_OPTIONS = {"emulate_precision_casts": True}


def compile_blocks(pipe) -> None:
    """torch.compile every block of the backbone and the branch (the first call compiles)."""
    for model in (pipe.transformer, pipe.branch):
        for block in model.transformer_blocks:
            block.forward = torch.compile(block.forward, fullgraph=True, dynamic=False, options=COMPILE_OPTIONS)


# The VAE's resnet blocks share one forward; each shape it meets (level, frame batch, tile) is a
# graph of its own: 49 at 49x480x720 untiled, more than 64 with 1x2 tiles added (H100, bench/vae_probe.py).
# Dynamo's default of 8 per function would leave the rest eager.
VAE_GRAPH_LIMIT = 256


def compile_vae(vae, dynamic: bool | None = None) -> None:
    """torch.compile each resnet block of the VAE's encoder and decoder (regional compilation: the
    group norms, activations and causal padding around its convolutions fuse; the frame-batch loop
    stays eager, so the compile does not unroll it). ``dynamic``: torch.compile's (None: a block
    compiled for one shape is recompiled with symbolic sizes when another comes)."""
    from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXResnetBlock3D

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, VAE_GRAPH_LIMIT)
    for coder in (vae.encoder, vae.decoder):
        for module in coder.modules():
            if isinstance(module, CogVideoXResnetBlock3D):
                module.forward = torch.compile(module.forward, dynamic=dynamic, options=COMPILE_OPTIONS)


def reuse_attention(pipe, every: int, timesteps: Sequence[int]) -> None:
    """Each backbone attention computes its output at one step in ``every`` and reuses it for the
    steps in between, at steps whose timestep lies strictly inside ``timesteps`` (low, high)."""
    from diffusers import PyramidAttentionBroadcastConfig

    pipe.transformer.enable_cache(PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=every, spatial_attention_timestep_skip_range=tuple(timesteps),
        current_timestep_callback=lambda: pipe.current_timestep))


def is_fp8_target(module: torch.nn.Module, name: str) -> bool:
    """The blocks' token-wise projections (attention Q/K/V/out, feed-forward). The adaptive norms'
    linears see one row per sample: FP8 would save nothing there, so they stay in bf16."""
    return (isinstance(module, torch.nn.Linear) and name.startswith("transformer_blocks.")
            and ".norm" not in name)


def require_fp8_gpu(device: torch.device) -> None:
    """FP8 matmuls need tensor cores of compute capability 8.9 or newer (Ada, Hopper, Blackwell)."""
    if device.type != "cuda":
        raise RuntimeError("model.approx_fp8_linear=true needs an NVIDIA GPU of compute capability 8.9 or "
                           "newer (Ada, Hopper, Blackwell); this actor has no GPU")
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        raise RuntimeError(f"model.approx_fp8_linear=true needs compute capability 8.9 or newer (Ada, Hopper, "
                           f"Blackwell); {torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}")


def fp8_linear_layers(pipe) -> None:
    """APPROXIMATE: the blocks' projections of the backbone and the branch run as FP8 (e4m3)
    matmuls, weights and activations scaled per row (torchao's dynamic float8 quantisation;
    activations are scaled at every call)."""
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as error:
        raise RuntimeError("model.approx_fp8_linear=true needs torchao: pip install 'vp-ray[fp8]'") from error
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    for model in (pipe.transformer, pipe.branch):
        quantize_(model, config, filter_fn=is_fp8_target)
