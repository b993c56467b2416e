"""A model whose weights live in pinned host memory and visit the GPU only while it is used.

``memory_mode=text_encoder_offload`` keeps T5-XXL (8.9 GiB in bf16) this way: the text encoder runs
once per clip for two prompts, so a visit costs one host-to-device copy of its weights (0.18 s on an
H200 over PCIe) and nothing on the way back: the GPU copies are dropped, the host copies were never
changed. diffusers' model CPU offload would copy the weights back to the host each time as well.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class HostWeights:
    def __init__(self, model: torch.nn.Module):
        """Move ``model``'s parameters and buffers to pinned host memory (from wherever they are)."""
        self.tensors = [*model.parameters(), *model.buffers()]
        pin = torch.cuda.is_available()   # pinning needs a CUDA driver; without one there is nothing to visit
        self.host = []
        for tensor in self.tensors:
            host = tensor.detach().to("cpu")
            self.host.append(host.pin_memory() if pin else host)
            tensor.data = self.host[-1]

    @contextmanager
    def on(self, device: torch.device) -> Iterator[None]:
        """The weights on ``device`` while the block runs, then back to the host copies (on the CPU
        the host copies themselves: nothing moves)."""
        try:
            for tensor, host in zip(self.tensors, self.host):
                tensor.data = host.to(device, non_blocking=True)
            yield
        finally:
            for tensor, host in zip(self.tensors, self.host):
                tensor.data = host
            if device.type == "cuda":
                # The allocator would keep the weights' blocks cached; the VAE's large activations
                # could not reuse them (a 31 GiB cap ran out with 7.5 GiB cached but unusable).
                torch.cuda.empty_cache()
