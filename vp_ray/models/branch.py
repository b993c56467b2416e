"""The VideoPainter context encoder ("branch"): a two-block CogVideoX that reads the masked video.

It is built from stock diffusers parts (``CogVideoXPatchEmbed``, ``CogVideoXBlock``, the
timestep embedding) and returns one feature tensor per block (``CogvideoXBranchOutput``, named as
diffusers' ControlNet models name theirs), which ``vp_ray.models.injection`` adds to the backbone's
video tokens.

The class name, the registered config fields and the submodule names are those of the
released checkpoint (``VideoPainter/checkpoints/branch``), so its ``config.json`` and
safetensors load unchanged. Modules that the released file holds but the forward pass does
not use (``norm_final``, ``norm_out``, ``proj_out``, ``branch_x_embedder``) are kept so that
the state dict matches key for key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNorm
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class CogvideoXBranchOutput(BaseOutput):
    """block_samples: one [B, video tokens, inner_dim] tensor per branch block, in block order."""

    block_samples: tuple[torch.Tensor, ...]


class CogvideoXBranchModel(ModelMixin, ConfigMixin):
    """VideoPainter's branch. The name is the one in the released ``config.json`` (``_class_name``)."""

    _supports_gradient_checkpointing = False
    _no_split_modules = ["CogVideoXBlock", "CogVideoXPatchEmbed"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        wo_text: bool = False,
        id_pool_resample_learnable: bool = False,
    ):
        super().__init__()
        if wo_text:
            raise NotImplementedError("branches without text tokens (wo_text=True) are not supported")
        inner_dim = num_attention_heads * attention_head_dim
        # Input: noisy latents + masked-video latents + 1 mask channel. A T2V backbone
        # (in_channels 16) gets 16 + 16 + 1; an I2V one (32, already two latents) gets 32 + 1.
        branch_in_channels = 2 * in_channels + 1 if in_channels == 16 else in_channels + 1

        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            in_channels=branch_in_channels,
            embed_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            bias=True,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=not use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
        )
        self.embedding_dropout = nn.Dropout(dropout)
        self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList([
            CogVideoXBlock(
                dim=inner_dim,
                num_attention_heads=num_attention_heads,
                attention_head_dim=attention_head_dim,
                time_embed_dim=time_embed_dim,
                dropout=dropout,
                activation_fn=activation_fn,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        ])
        # Unused by the forward pass; present in the released state dict.
        self.norm_final = nn.LayerNorm(inner_dim, norm_eps, norm_elementwise_affine)
        self.norm_out = AdaLayerNorm(embedding_dim=time_embed_dim, output_dim=2 * inner_dim,
                                     norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps,
                                     chunk_dim=1)
        self.proj_out = nn.Linear(inner_dim, patch_size * patch_size * out_channels)
        # One projection per block (zero at creation, so a new branch starts as a no-op).
        self.branch_blocks = nn.ModuleList([nn.Linear(inner_dim, inner_dim) for _ in range(num_layers)])
        self.branch_x_embedder = nn.Linear(in_channels, inner_dim)
        for layer in [*self.branch_blocks, self.branch_x_embedder]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @classmethod
    def from_transformer(cls, transformer: nn.Module, num_layers: int = 2) -> CogvideoXBranchModel:
        """A new (no-op) branch shaped like ``transformer`` (the released one: I2V backbone, 2 layers)."""
        fields = {k: v for k, v in transformer.config.items() if k in cls._get_init_keys(cls)}
        return cls(**{**fields, "num_layers": num_layers})

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        branch_cond: torch.Tensor,
        timestep: torch.Tensor,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_dict: bool = True,
    ) -> CogvideoXBranchOutput | tuple[tuple[torch.Tensor, ...]]:
        """Features for the backbone's video tokens, one [B, tokens, inner_dim] tensor per block
        (``return_dict=False``: the tuple ``(block_samples,)``, as diffusers' models give it).

        hidden_states: noisy latents [B, F, C, h, w] (CFG-doubled); branch_cond: masked-video
        latents and the latent mask, [B, F, C + 1, h, w]; encoder_hidden_states: T5 embeddings.
        """
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb)

        tokens = self.patch_embed(encoder_hidden_states, torch.cat([hidden_states, branch_cond], dim=2))
        tokens = self.embedding_dropout(tokens)
        text_len = encoder_hidden_states.shape[1]
        text, video = tokens[:, :text_len], tokens[:, text_len:]

        samples = []
        for block, project in zip(self.transformer_blocks, self.branch_blocks, strict=True):
            video, text = block(hidden_states=video, encoder_hidden_states=text, temb=emb,
                                image_rotary_emb=image_rotary_emb)
            # (The original also multiplies by a conditioning_scale, 1.0 in every script.)
            samples.append(project(video).to(hidden_states.dtype))
        if not return_dict:
            return (tuple(samples),)
        return CogvideoXBranchOutput(block_samples=tuple(samples))
