"""The VideoPainterID LoRA: ``ckpt/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors``.

It adapts the query, key, value and output projections of every transformer block's attention
(keys ``transformer.transformer_blocks.<i>.attn1.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight``,
rank 256 in the released file). It loads through upstream diffusers' LoRA loading (peft), as the
original inference script does (``pipe.load_lora_weights(folder, weight_name=...)``).

Scale: the file holds no alphas, so the loader sets alpha = rank and applies the update at scale
1.0, which is what the original ends up with (its training used alpha 128 at rank 256, i.e. 0.5;
inference applies twice that, and so do we: the numbers must be the original's). ``load_id_lora``
checks the scale after loading, so a diffusers that starts reading alphas from elsewhere is caught.

The LoRA is one half of ID resampling (the other is the attention over the previous window's
tokens, for clips longer than one window).
"""

from __future__ import annotations

from pathlib import Path

import torch

LORA_FILE = "pytorch_lora_weights.safetensors"
ADAPTER = "videopainter_id"
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def id_lora_path(root: str | Path) -> Path:
    """Where the LoRA file sits in a checkpoint tree (the released layout)."""
    return Path(root) / "VideoPainterID" / "checkpoints" / LORA_FILE


def load_id_lora(pipe, path: str | Path) -> None:
    """Load the LoRA file at ``path`` into ``pipe.transformer`` (active, scale 1.0)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VideoPainterID LoRA not found: {path}")
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
    config = pipe.transformer.peft_config[ADAPTER]
    if config.lora_alpha != config.r:
        raise ValueError(f"{path}: loaded with alpha {config.lora_alpha} at rank {config.r}; the original "
                         "applies this file at scale 1.0 (alpha = rank)")
    # Asked of the modules, not of config.target_modules: peft shortens that list to name suffixes
    # once it is long (the full-size transformer's 168 projections), so it cannot say which are adapted.
    blocks = pipe.transformer.transformer_blocks
    missing = [f"transformer_blocks.{i}.attn1.{target}" for i, block in enumerate(blocks) for target in TARGETS
               if ADAPTER not in getattr(block.attn1.get_submodule(target), "lora_A", {})]
    expected = len(TARGETS) * len(blocks)
    if missing:
        raise ValueError(f"{path}: {len(missing)} of the {expected} attention projections are not adapted "
                         f"(e.g. {missing[0]}): not a VideoPainterID LoRA for this transformer")


def write_tiny_id_lora(path: str | Path, transformer, rank: int = 4, seed: int = 0, std: float = 0.05) -> Path:
    """A random LoRA for ``transformer`` in the released file's layout (keys, no alphas), for tests."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for index, block in enumerate(transformer.transformer_blocks):
        for target in TARGETS:
            linear = block.attn1.get_submodule(target)
            prefix = f"transformer.transformer_blocks.{index}.attn1.{target}"
            # On the CPU by name: the full-size writer builds the transformer under torch.device("cuda").
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, linear.in_features, generator=generator,
                                                             device="cpu") * std
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(linear.out_features, rank, generator=generator,
                                                             device="cpu") * std
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
