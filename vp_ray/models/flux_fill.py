"""``first_frame_fill=flux``: frame 0 inpainted with FLUX.1-Fill, as the original does before the
video model runs (upstream ``FluxFillPipeline``, weights in ``ckpt/flux_inp``, loaded once per actor).

The original's call: the clip's original frame 0 and its (dilated) mask, guidance 30, 50 steps,
``max_sequence_length=512``, a CPU generator seeded 0, height and width floored to multiples of 16;
its output replaces frame 0 of the video the model sees. Two differences: the original runs it at
the source video's size (here: the model's frame, 480x720), and its prompt is a GPT-4o description
of the object's surroundings (here: the clip's prompt).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

REQUIRED = ("model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
            "text_encoder_2/config.json", "tokenizer", "tokenizer_2", "transformer/config.json", "vae/config.json")


def missing_files(path: str | Path) -> list[Path]:
    return [Path(path) / name for name in REQUIRED if not (Path(path) / name).exists()]


class FluxFirstFrame:
    """A loaded FLUX.1-Fill pipeline that fills frame 0's masked region."""

    def __init__(self, path: str | Path, dtype: torch.dtype, device: torch.device, steps: int = 50):
        from diffusers import FluxFillPipeline

        self.pipe = FluxFillPipeline.from_pretrained(str(path), torch_dtype=dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps = steps
        if device.type == "cuda":
            # 12 B parameters beside the video model: on the GPU only while it runs.
            self.pipe.enable_model_cpu_offload(device=device)

    def __call__(self, frame: np.ndarray, mask: np.ndarray, prompt: str) -> np.ndarray:
        """frame uint8 [H, W, 3], mask bool [H, W] -> frame uint8 [H, W, 3] (masked region filled)."""
        from PIL import Image

        height, width = frame.shape[:2]
        fill_height, fill_width = height // 16 * 16, width // 16 * 16
        out = self.pipe(prompt=prompt, image=Image.fromarray(frame),
                        mask_image=Image.fromarray(mask.astype(np.uint8) * 255),
                        height=fill_height, width=fill_width, guidance_scale=30.0, num_inference_steps=self.steps,
                        max_sequence_length=512, generator=torch.Generator("cpu").manual_seed(0)).images[0]
        if out.size != (width, height):
            out = out.resize((width, height), Image.LANCZOS)
        return np.asarray(out.convert("RGB"))


def write_tiny_flux_fill(path: str | Path, seed: int = 0) -> None:
    """A tiny random FLUX.1-Fill folder in the released layout (tests, smoke runs)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from vp_ray.models.tiny import write_tokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
        scheduler.save_pretrained(path / "scheduler")
        _clip_tokenizer(path / "tokenizer")
        vocab = len(CLIPTokenizer.from_pretrained(path / "tokenizer"))
        CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, projection_dim=32, max_position_embeddings=77)
                      ).save_pretrained(path / "text_encoder")
        t5_vocab = write_tokenizer(path / "tokenizer_2", seed)
        T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
                                feed_forward_proj="gated-gelu", is_encoder_decoder=False)
                       ).save_pretrained(path / "text_encoder_2")
        AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                      layers_per_block=1, norm_num_groups=4, scaling_factor=0.3611, shift_factor=0.1159,
                      use_quant_conv=False, use_post_quant_conv=False).save_pretrained(path / "vae")
        # Fill's input: 64 latent + 64 masked-image latent + 256 mask channels (8x8 pixels x 2x2 packing).
        FluxTransformer2DModel(patch_size=1, in_channels=384, out_channels=64, num_layers=1, num_single_layers=1,
                               attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                               pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6)
                               ).save_pretrained(path / "transformer")
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "FluxFillPipeline", "_diffusers_version": "0.32.0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]}, indent=2))


def _clip_tokenizer(folder: Path) -> None:
    """A byte-level BPE vocabulary with no merges: every character its own token."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # Byte-level BPE's alphabet: printable bytes as themselves, the others shifted past 255.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]
    vocab = {token: index for index, token in enumerate(chars + [c + "</w>" for c in chars]
                                                          + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(str(folder))
