"""The branch model (released config/keys) and its injection into the stock transformer."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel

from vp_ray.models.branch import CogvideoXBranchModel, CogvideoXBranchOutput
from vp_ray.models.injection import BranchInjection, token_mask
from vp_ray.models.tiny import transformer_config

# The released branch's registered config fields and top-level submodules.
RELEASED_FIELDS = {
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "flip_sin_to_cos",
    "freq_shift",
    "time_embed_dim", "text_embed_dim", "num_layers", "dropout", "attention_bias", "sample_width",
    "sample_height", "sample_frames", "patch_size", "temporal_compression_ratio", "max_text_seq_length",
    "activation_fn", "timestep_activation_fn", "norm_elementwise_affine", "norm_eps",
    "spatial_interpolation_scale", "temporal_interpolation_scale", "use_rotary_positional_embeddings",
    "use_learned_positional_embeddings", "wo_text", "id_pool_resample_learnable"}
RELEASED_MODULES = {"patch_embed", "embedding_dropout", "time_proj", "time_embedding", "transformer_blocks",
                    "norm_final", "norm_out", "proj_out", "branch_blocks", "branch_x_embedder"}


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**transformer_config()).eval()


def test_branch_has_the_released_config_fields_and_modules(transformer):
    branch = CogvideoXBranchModel.from_transformer(transformer, num_layers=2)
    assert {k for k in branch.config if not k.startswith("_")} == RELEASED_FIELDS
    assert {name for name, _ in branch.named_children()} == RELEASED_MODULES
    # noisy latents + masked-video latents (the I2V model's 32 input channels) + 1 mask channel
    assert branch.patch_embed.proj.weight.shape[1] == 33
    assert len(branch.transformer_blocks) == len(branch.branch_blocks) == 2
    assert all(not block.weight.any() for block in branch.branch_blocks)  # a new branch is a no-op


def test_branch_round_trips_with_an_unknown_config_key(transformer, tmp_path):
    branch = CogvideoXBranchModel.from_transformer(transformer, num_layers=2)
    for block in branch.branch_blocks:
        torch.nn.init.normal_(block.weight)
    branch.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "CogvideoXBranchModel"
    config.update(_name_or_path="/somewhere/else", a_field_from_a_newer_release=3)
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded = CogvideoXBranchModel.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if k in RELEASED_FIELDS} == \
        {k: v for k, v in branch.config.items() if k in RELEASED_FIELDS}
    original, reloaded = branch.state_dict(), loaded.state_dict()
    assert list(reloaded) == list(original)
    assert all(torch.equal(original[k], reloaded[k]) for k in original)


def test_branch_returns_its_block_samples_by_name_as_diffusers_models_do(transformer):
    branch = CogvideoXBranchModel.from_transformer(transformer, num_layers=2)
    for block in branch.branch_blocks:
        torch.nn.init.normal_(block.weight)
    torch.manual_seed(0)
    inputs = (torch.randn(2, 2, 16, 8, 12), torch.randn(2, 226, 32), torch.randn(2, 2, 17, 8, 12),
              torch.tensor([500, 500]))
    with torch.no_grad():
        named = branch(*inputs)
        plain = branch(*inputs, return_dict=False)
    assert isinstance(named, CogvideoXBranchOutput) and len(named.block_samples) == 2
    assert all(sample.shape == (2, 48, 32) for sample in named.block_samples)
    assert isinstance(plain, tuple) and len(plain) == 1
    assert all(torch.equal(a, b) for a, b in zip(named.block_samples, plain[0], strict=True))


def test_injection_leaves_the_transformer_state_dict_and_output_alone(transformer):
    keys = list(transformer.state_dict())
    inject = BranchInjection(transformer)
    assert list(transformer.state_dict()) == keys
    inputs = dict(hidden_states=torch.randn(1, 2, 32, 8, 12), encoder_hidden_states=torch.randn(1, 226, 32),
                  timestep=torch.tensor([500]))
    before = transformer(**inputs).sample
    samples = [torch.ones(1, 48, 32), torch.ones(1, 48, 32)]
    with inject(samples):
        during = transformer(**inputs).sample
    after = transformer(**inputs).sample  # hooks are inert outside the `with` block
    inject.remove()
    assert torch.equal(before, after) and not torch.allclose(before, during)


def run_block(transformer, index, samples, mask=None):
    torch.manual_seed(1)
    hidden, text, temb = torch.randn(1, 48, 32), torch.randn(1, 5, 32), torch.randn(1, 32)
    inject = BranchInjection(transformer)
    try:
        plain = transformer.transformer_blocks[index](hidden, text, temb)[0]
        with inject(samples, mask):
            added = transformer.transformer_blocks[index](hidden, text, temb)[0]
    finally:
        inject.remove()
    return added - plain


def test_block_i_gets_sample_i_over_ceil_layers_per_sample(transformer):
    # 3 blocks, 2 samples: ceil(3 / 2) = 2 blocks per sample -> blocks 0, 1 get sample 0, block 2 sample 1.
    samples = [torch.full((1, 48, 32), 1.0), torch.full((1, 48, 32), 100.0)]
    added = [run_block(transformer, i, samples).mean().item() for i in range(3)]
    assert added == pytest.approx([1.0, 1.0, 100.0], rel=1e-4)


def test_mask_add_touches_only_tokens_without_masked_pixels(transformer):
    latent_mask = torch.zeros(1, 2, 1, 8, 12)
    latent_mask[0, 0, 0, 0, 0] = 1.0  # one latent pixel: masks the first token (patch 2x2) of frame 0
    latent_mask[0, 1, 0, 4:8, 6:12] = 1.0  # a block: masks a 2x3-token area of frame 1
    mask = token_mask(latent_mask, patch_size=2)
    assert mask.shape == (1, 48, 1) and mask.sum() == 1 + 6 and mask[0, 0, 0]

    added = run_block(transformer, 0, [torch.ones(1, 48, 32)] * 2, mask)
    changed = added.abs().amax(dim=-1, keepdim=True) > 0
    assert torch.equal(changed, ~mask)
