"""Speed options of the VideoPainter pipeline: one exact (compiled blocks), one approximate.

``compile_blocks`` compiles each block's ``forward`` of the backbone and the branch, not the module
call (``Module.compile``, which diffusers' ``compile_repeated_blocks`` uses): the branch injection's
forward hooks then stay outside the graphs. Those hooks are closures over their block's index,
which torch.compile specialises on, so compiling them in would compile each of the 42 blocks
apart; compiled this way, every backbone block shares one graph (two with the branch's), built at
the actor's first window and reused for every later window and clip of the same shape.

``reuse_attention`` is diffusers' Pyramid Attention Broadcast: an approximation (results change),
off by default.
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


def reuse_attention(pipe, every: int, timesteps: Sequence[int]) -> None:
    """Each backbone attention computes its output at one step in ``every`` and reuses it for the
    steps in between, at steps whose timestep lies strictly inside ``timesteps`` (low, high)."""
    from diffusers import PyramidAttentionBroadcastConfig

    pipe.transformer.enable_cache(PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=every, spatial_attention_timestep_skip_range=tuple(timesteps),
        current_timestep_callback=lambda: pipe.current_timestep))
