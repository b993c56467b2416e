"""Tiny random-weight VideoPainter checkpoints, in exactly the released layout.

Every component has the real structure at toy width: the I2V transformer (in_channels 32,
learned + rotary positional embeddings), a 3D VAE with the real compression (x4 in time, x8 in
space, 16 latent channels), a T5 encoder with a sentencepiece tokenizer trained here (no
download), the DDIM scheduler config of CogVideoX-5b-I2V, and a branch whose projections are
non-zero (a freshly created branch is a no-op). The files load through the same code as the
real checkpoint, so tests and smoke runs exercise the real loading path.

Frames are ``TINY_HEIGHT`` x ``TINY_WIDTH`` (the learned positional embedding fixes the size).
The tree is a function of the seed on one machine; the sin/cos tables of the learned positional
embedding can differ in their last bits on another CPU (the parity tests load a committed tree).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

TINY_HEIGHT, TINY_WIDTH = 64, 96
TINY_FRAMES = 49

# The 5B models' DDIM scheduler config (the pipeline turns it into a trailing DPM scheduler).
SCHEDULER_CONFIG = {
    "_class_name": "CogVideoXDDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

MODEL_INDEX = {
    "_class_name": "CogVideoXImageToVideoPipeline",
    "_diffusers_version": "0.31.0.dev0",
    "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLCogVideoX"],
}

TEXT_DIM = 32


def transformer_config() -> dict:
    """The I2V transformer's config at toy width (3 blocks: exercises the ceil(L / n) mapping)."""
    return dict(
        num_attention_heads=2, attention_head_dim=16, in_channels=32, out_channels=16, flip_sin_to_cos=True,
        freq_shift=0, time_embed_dim=32, text_embed_dim=TEXT_DIM, num_layers=3, dropout=0.0,
        attention_bias=True,
        sample_width=TINY_WIDTH // 8, sample_height=TINY_HEIGHT // 8, sample_frames=TINY_FRAMES, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=226, activation_fn="gelu-approximate",
        timestep_activation_fn="silu", norm_elementwise_affine=True, norm_eps=1e-5,
        spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True)


def vae_config() -> dict:
    return dict(
        in_channels=3, out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 16, 16), latent_channels=16, layers_per_block=1, act_fn="silu",
        norm_eps=1e-6, norm_num_groups=4, temporal_compression_ratio=4,
        sample_height=TINY_HEIGHT, sample_width=TINY_WIDTH, scaling_factor=0.7,
        use_quant_conv=False, use_post_quant_conv=False)


def t5_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=32,
                feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


_WORDS = (
    "a an the of and to in is on with for at by from as it this that there are was were be over under "
    "near behind front left right top bottom small large big little old new young bright dark light "
    "soft warm cold green blue red white black yellow brown gray orange pink purple golden silver "
    "clear cloudy sunny rainy snowy background scene clean natural empty quiet calm busy street road "
    "path trail bridge river lake sea ocean beach sand rock stone mountain hill valley forest tree "
    "trees leaves grass flowers garden park field farm sky clouds sun moon stars night morning "
    "evening sunset sunrise city town village building buildings house houses wall window door roof "
    "tower car cars bus bike boat train plane person people man woman child children dog cat bird "
    "horse cow walking running standing sitting moving flying swimming driving slowly quickly camera "
    "view shot video frame close wide aerial panning static motion water wave waves snow ice fire "
    "smoke shadow"
).split()


def train_tokenizer(seed: int) -> bytes:
    """A small unigram sentencepiece model with T5's special ids (pad 0, eos 1, unk 2)."""
    import sentencepiece as spm

    rng = random.Random(seed)
    words = _WORDS + [w.capitalize() for w in _WORDS[:60]] + list(".,;:!?'\"-()0123456789")
    lines = [" ".join(rng.choice(words) for _ in range(16)) for _ in range(2000)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=320, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, hard_vocab_limit=False, minloglevel=2)
    return model.getvalue()


def write_tokenizer(folder: Path, seed: int) -> int:
    """Write a T5 tokenizer folder (spiece.model + configs, as the released one); return its size."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    proto = train_tokenizer(seed)
    (folder / "spiece.model").write_bytes(proto)
    special = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "model_max_length": 226, "extra_ids": 0,
         "additional_special_tokens": [], "legacy": True, **special}, indent=2))
    return spm.SentencePieceProcessor(model_proto=proto).get_piece_size()


def _randomize(module: torch.nn.Module, generator: torch.Generator, std: float = 0.05) -> None:
    """Overwrite zero-initialised (and all other) weights so that every part of the model matters."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.01, generator=generator)
            elif "norm" in name and param.ndim == 1:
                param.normal_(1.0, 0.05, generator=generator)
            else:
                param.normal_(0.0, std, generator=generator)


def write_tiny_tree(base_model_path: str | Path, branch_path: str | Path, seed: int = 0) -> None:
    """Write tiny random CogVideoX-5b-I2V and VideoPainter branch folders at these paths."""
    with torch.random.fork_rng():  # module constructors draw from the global generator
        torch.manual_seed(seed)
        _write_tiny_tree(Path(base_model_path), Path(branch_path), seed)


def _write_tiny_tree(base: Path, branch_dir: Path, seed: int) -> None:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from vp_ray.models.branch import CogvideoXBranchModel

    base.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)

    (base / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    (base / "scheduler").mkdir(exist_ok=True)
    (base / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({**SCHEDULER_CONFIG, "_diffusers_version": "0.31.0.dev0"}, indent=2))

    vocab_size = write_tokenizer(base / "tokenizer", seed)
    text_encoder = T5EncoderModel(T5Config(**t5_config(vocab_size)))
    _randomize(text_encoder, generator, std=0.5)
    text_encoder.save_pretrained(base / "text_encoder", safe_serialization=True)

    vae = AutoencoderKLCogVideoX(**vae_config())
    _randomize(vae, generator, std=0.1)
    vae.save_pretrained(base / "vae")

    transformer = CogVideoXTransformer3DModel(**transformer_config())
    _randomize(transformer, generator, std=0.2)
    transformer.save_pretrained(base / "transformer")

    branch = CogvideoXBranchModel.from_transformer(transformer, num_layers=2)
    _randomize(branch, generator, std=0.2)
    branch.save_pretrained(branch_dir)


def ensure_tiny_tree(root: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """The (base, branch) folders of a tiny tree under ``root``, written first if absent."""
    from vp_ray.models.checkpoint import missing_files, tree_paths

    base, branch = tree_paths(root)
    if missing_files(base, branch):
        write_tiny_tree(base, branch, seed)
    return base, branch
