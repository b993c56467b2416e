"""How the stock ``CogVideoXTransformer3DModel`` consumes the branch features.

VideoPainter adds branch sample ``i // ceil(L / n)`` to the video tokens after backbone block
``i`` (L blocks, n samples), and with ``mask_add`` only at background tokens (tokens whose
patch contains no masked latent pixel).

This is done with forward hooks on the stock blocks rather than a subclass or a block
wrapper: hooks leave the module tree, and so the state-dict keys, exactly as upstream (the
released ``transformer/`` folder loads with the stock class and nothing else), they survive
accelerate's offload hooks (which wrap ``forward`` itself), and the delta to upstream stays
these few lines instead of a copy of the transformer's 100-line ``forward``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def token_mask(latent_mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Which video tokens are (partly) masked: bool [B, frames * tokens per frame, 1].

    latent_mask: [B, F, 1, h, w] in {0, 1}. A token is masked when any latent pixel of its
    patch is (average-pooled value > 0), in the patch embedding's token order.
    """
    batch, frames, _, height, width = latent_mask.shape
    pooled = F.avg_pool2d(latent_mask.reshape(-1, 1, height, width), kernel_size=patch_size,
                          stride=patch_size)
    pooled = pooled.reshape(batch, frames, 1, -1).transpose(2, 3).flatten(1, 2)
    return pooled > 0


class BranchInjection:
    """Forward hooks on the backbone's blocks that add the branch features while active.

    Usage::

        inject = BranchInjection(transformer)          # once, after loading
        with inject(samples, token_mask):              # per denoising step
            noise_pred = transformer(...)

    Outside the ``with`` block the transformer is the stock model.
    """

    def __init__(self, transformer: nn.Module):
        self.num_blocks = len(transformer.transformer_blocks)
        self.samples: list[torch.Tensor] | None = None
        self.mask: torch.Tensor | None = None
        self.handles = [block.register_forward_hook(self._hook_for(index))
                        for index, block in enumerate(transformer.transformer_blocks)]

    @contextmanager
    def __call__(self, samples: list[torch.Tensor], mask: torch.Tensor | None = None) -> Iterator[None]:
        """Add ``samples`` (and skip tokens where ``mask`` is True) during the ``with`` block."""
        self.samples, self.mask = samples, mask
        try:
            yield
        finally:
            self.samples, self.mask = None, None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook_for(self, index: int):
        def add_branch_sample(module: nn.Module, args: tuple, output: tuple[torch.Tensor, torch.Tensor]):
            if self.samples is None:
                return output
            hidden_states, encoder_hidden_states = output
            per_sample = math.ceil(self.num_blocks / len(self.samples))
            sample = self.samples[index // per_sample]
            if self.mask is None:
                hidden_states = hidden_states + sample
            else:
                hidden_states = torch.where(self.mask, hidden_states, hidden_states + sample)
            return hidden_states, encoder_hidden_states

        return add_branch_sample
