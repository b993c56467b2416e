"""Write a full-size VideoPainter checkpoint tree with random weights, in the released layout.

    python bench/write_random_ckpt.py --root /tmp/vp-ckpt [--device cuda]

Machine: a CUDA GPU writes the tree in about 30 s (a CPU can, slowly, with tens of GB of memory);
about 22 GB of disk; diffusers, hydra-core and omegaconf beside torch. Does nothing where the tree
is complete.

For end-to-end runs on a GPU machine where the real weights cannot be fetched: the tree has the real
architecture and file layout (CogVideoX-5b-I2V transformer, its 3D VAE, T5-v1.1-XXL, the two-block
branch, the VideoPainterID LoRA at the released rank 256; bf16 safetensors), so ``model=videopainter
model.base_model_path=...`` loads it through the production code with the same memory and FLOPs as
the real weights. The pixels it makes are meaningless. The tokenizer is the small offline one of the
tiny tree (its ids fit T5's 32128-token vocabulary); everything else is full size.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _common

_common.require_modules("torch", "diffusers", "hydra", "omegaconf")

import torch  # noqa: E402
from bench_videopainter import FULL_TRANSFORMER, FULL_VAE, T5_XXL  # noqa: E402

from vp_ray.models import tiny as tiny_models  # noqa: E402
from vp_ray.models.branch import CogvideoXBranchModel  # noqa: E402
from vp_ray.models.checkpoint import missing_files, tree_paths  # noqa: E402
from vp_ray.models.id_lora import id_lora_path, write_tiny_id_lora  # noqa: E402


def write_tree(root: Path, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> None:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    base, branch_dir = tree_paths(root)
    base.mkdir(parents=True, exist_ok=True)
    (base / "model_index.json").write_text(json.dumps(tiny_models.MODEL_INDEX, indent=2))
    (base / "scheduler").mkdir(exist_ok=True)
    (base / "scheduler" / "scheduler_config.json").write_text(json.dumps(tiny_models.SCHEDULER_CONFIG, indent=2))
    tiny_models.write_tokenizer(base / "tokenizer", seed=0)
    torch.manual_seed(0)
    # One model at a time, built on the device (random init there is fast), saved, freed.
    with torch.device(device):
        start = time.perf_counter()
        T5EncoderModel(T5Config(**T5_XXL)).to(dtype).save_pretrained(base / "text_encoder")
        print(f"text_encoder written ({time.perf_counter() - start:.0f} s)", flush=True)
        AutoencoderKLCogVideoX(**FULL_VAE).to(dtype).save_pretrained(base / "vae")
        transformer = CogVideoXTransformer3DModel(**FULL_TRANSFORMER).to(dtype)
        transformer.save_pretrained(base / "transformer")
        CogvideoXBranchModel.from_transformer(transformer, num_layers=2).to(dtype).save_pretrained(branch_dir)
        write_tiny_id_lora(id_lora_path(root), transformer, rank=256)
        print(f"all written ({time.perf_counter() - start:.0f} s)", flush=True)
        del transformer
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--root", default="/tmp/vp-ckpt", help="checkpoint root to write (default: /tmp/vp-ckpt)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    root = Path(args.root)
    lora = id_lora_path(root)

    def absent() -> list[str]:
        return missing_files(*tree_paths(root)) + ([] if lora.is_file() else [str(lora)])

    if absent():
        write_tree(root, torch.device(args.device))
    missing = absent()
    print(f"{root}: " + ("complete" if not missing else f"incomplete: {missing}"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
