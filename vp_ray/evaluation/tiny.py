"""Random weights in the released files' layouts, for tests of the learned metrics' plumbing.

    python -m vp_ray.evaluation.tiny --out DIR [--seed N]

writes into DIR:

    squeezenet1_1-b8a52dc0.pth     torchvision's SqueezeNet 1.1 state dict (full size: 1.2 M weights)
    lpips_squeeze.pth              LPIPS v0.1's seven linear layers for SqueezeNet (random, positive)
    clip-vit-large-patch14/        a Hugging Face CLIP folder (config, safetensors, tokenizer, processor),
                                   tiny: width 16, one layer, 224x224 images in 32-pixel patches
    ViT-B-32.pt                    an OpenAI CLIP TorchScript archive, tiny: width 64 (one head), one layer
    i3d_rgb_imagenet.pt            pytorch-i3d's Inception-I3D state dict (full size: 12.3 M weights)

Values come from NumPy's generator, so a seed writes the same numbers with any torch. The scores
these give mean nothing; they exercise every step between the files and the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from vp_ray.evaluation.i3d import random_i3d_state

LPIPS_SQUEEZE_CHANNELS = [64, 128, 256, 384, 384, 512, 512]


def _he(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)


def random_squeezenet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import torchvision

    rng = np.random.default_rng(seed)
    shapes = {k: tuple(v.shape) for k, v in torchvision.models.squeezenet1_1(weights=None).state_dict().items()}
    return {k: torch.from_numpy((_he(rng, s) if k.endswith("weight") else rng.standard_normal(s) * 0.01)
                                .astype(np.float32)) for k, s in shapes.items()}


def random_lpips_linear(seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed + 1)
    return {f"lin{i}.model.1.weight": torch.from_numpy(rng.uniform(0, 0.1, (1, c, 1, 1)).astype(np.float32))
            for i, c in enumerate(LPIPS_SQUEEZE_CHANNELS)}


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte-level alphabet: printable bytes as themselves, the others shifted past 255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_hf_clip(folder: str | Path, seed: int = 0) -> Path:
    """A CLIP folder as ``openai/clip-vit-large-patch14`` is laid out, with tiny random weights. Its
    text config keeps the released ``eos_token_id: 2`` (pooling at the highest token id), and the
    vocabulary ends with ``<|endoftext|>``, as the released one does."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(alphabet + [c + "</w>" for c in alphabet]
                                                + ["<|startoftext|>", "<|endoftext|>"])}
    text = {"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 2,
            "pad_token_id": 1, "hidden_act": "quick_gelu"}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu"}
    config = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 8,
              "logit_scale_init_value": 2.6592, "text_config": text, "vision_config": vision}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    rng = np.random.default_rng(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    state = {}
    for key, value in model.state_dict().items():
        if "layer_norm" in key or "layrnorm" in key:
            array = np.ones(value.shape) if key.endswith("weight") else np.zeros(value.shape)
        elif key.endswith("logit_scale"):
            array = np.full(value.shape, 2.6592)
        else:
            array = rng.standard_normal(value.shape) * 0.2
        state[key] = torch.from_numpy(array.astype(np.float32)).contiguous()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "do_lower_case": True}))
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
        "crop_size": 224, "size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "do_convert_rgb": True, "resample": 3, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    return folder


def tiny_openai_clip_state(seed: int = 0, width: int = 64, layers: int = 1, embed: int = 16,
                           vocab: int = 64) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP ViT state dict (``ViT-B-32.pt``'s keys): 32-pixel patches at 224 (a 7x7 grid), the
    text tower as small. ``clip.load`` builds a model from it as from the released file."""
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {
        "visual.class_embedding": (width,), "visual.positional_embedding": (50, width),
        "visual.proj": (width, embed), "visual.conv1.weight": (width, 3, 32, 32),
        "visual.ln_pre.weight": (width,), "visual.ln_pre.bias": (width,),
        "visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,),
        "positional_embedding": (77, width), "text_projection": (width, embed), "logit_scale": (),
        "token_embedding.weight": (vocab, width), "ln_final.weight": (width,), "ln_final.bias": (width,)}
    for tower in ("visual.transformer", "transformer"):
        for i in range(layers):
            block = f"{tower}.resblocks.{i}"
            shapes.update({
                f"{block}.attn.in_proj_weight": (3 * width, width), f"{block}.attn.in_proj_bias": (3 * width,),
                f"{block}.attn.out_proj.weight": (width, width), f"{block}.attn.out_proj.bias": (width,),
                f"{block}.ln_1.weight": (width,), f"{block}.ln_1.bias": (width,),
                f"{block}.mlp.c_fc.weight": (4 * width, width), f"{block}.mlp.c_fc.bias": (4 * width,),
                f"{block}.mlp.c_proj.weight": (width, 4 * width), f"{block}.mlp.c_proj.bias": (width,),
                f"{block}.ln_2.weight": (width,), f"{block}.ln_2.bias": (width,)})
    state = {}
    for key, shape in shapes.items():
        if ".ln_" in key or key.startswith("ln_"):
            array = np.ones(shape) if key.endswith("weight") else np.zeros(shape)
        elif key == "logit_scale":
            array = np.array(4.6052)
        else:
            array = rng.standard_normal(shape) * (0.02 if key.endswith("bias") else 0.1)
        # The released file is float16: so are these values, whatever clip.load then does with them.
        state[key] = torch.from_numpy(array.astype(np.float16).astype(np.float32))
    return state


def save_as_torchscript(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Save a state dict as a TorchScript archive, as OpenAI ships its CLIP files (``clip.load`` reads
    those; a plain ``torch.save`` file it cannot, having read past its start trying)."""
    import warnings

    root = torch.nn.Module()
    for key, value in state.items():
        *path_parts, name = key.split(".")
        node = root
        for part in path_parts:
            if not hasattr(node, part):
                node.add_module(part, torch.nn.Module())
            node = getattr(node, part)
        node.register_parameter(name, torch.nn.Parameter(value, requires_grad=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the released files are TorchScript
        torch.jit.script(root).save(str(path))


def write_all(out: str | Path, seed: int = 0) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(random_squeezenet_state(seed), out / "squeezenet1_1-b8a52dc0.pth")
    torch.save(random_lpips_linear(seed), out / "lpips_squeeze.pth")
    write_tiny_hf_clip(out / "clip-vit-large-patch14", seed)
    save_as_torchscript(tiny_openai_clip_state(seed), out / "ViT-B-32.pt")
    torch.save(random_i3d_state(seed), out / "i3d_rgb_imagenet.pt")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the files into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_all(args.out, args.seed))


if __name__ == "__main__":
    main()
