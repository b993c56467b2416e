"""The checkpoint tree: what must be on disk, checking it, loading it, fetching it.

Layout (as released; ``ckpt/`` by default)::

    CogVideoX-5b-I2V/{model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, vae/}
    VideoPainter/checkpoints/branch/{config.json, diffusion_pytorch_model.safetensors}

``missing_files`` names every absent file at once (sharded weights included, through their
index), so a half-copied tree is fixed in one go rather than one error per run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vp_ray.errors import ConfigError

BASE_DIR = "CogVideoX-5b-I2V"
BRANCH_DIR = "VideoPainter/checkpoints/branch"
BASE_REPO = "THUDM/CogVideoX-5b-I2V"
BRANCH_REPO = "TencentARC/VideoPainter"

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# Per folder: required files, and the weight files (plain or sharded through an index).
_BASE_FILES = {
    "": ["model_index.json"],
    "scheduler": ["scheduler_config.json"],
    "tokenizer": ["spiece.model", "tokenizer_config.json"],
    "text_encoder": ["config.json"],
    "transformer": ["config.json"],
    "vae": ["config.json"],
}
_WEIGHTS = {
    "text_encoder": "model.safetensors",
    "transformer": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
}


def tree_paths(root: str | Path) -> tuple[Path, Path]:
    """(base model folder, branch folder) under a checkpoint root."""
    return Path(root) / BASE_DIR, Path(root) / BRANCH_DIR


def _missing_weights(folder: Path, name: str) -> list[Path]:
    """``name`` itself, or a ``name.index.json`` and every shard it lists."""
    if (folder / name).is_file():
        return []
    index = folder / f"{name}.index.json"
    if not index.is_file():
        return [folder / name]
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return [folder / shard for shard in shards if not (folder / shard).is_file()]


def missing_files(base_model_path: str | Path, branch_path: str | Path) -> list[Path]:
    """Every file the loader needs that is not there (empty list: the tree is complete)."""
    base, branch = Path(base_model_path), Path(branch_path)
    missing = [base / sub / name for sub, names in _BASE_FILES.items() for name in names
               if not (base / sub / name).is_file()]
    for sub, weights in _WEIGHTS.items():
        missing += _missing_weights(base / sub, weights)
    missing += [branch / "config.json"] if not (branch / "config.json").is_file() else []
    missing += _missing_weights(branch, "diffusion_pytorch_model.safetensors")
    return missing


def require_complete(base_model_path: str | Path, branch_path: str | Path) -> None:
    """Raise ``ConfigError`` naming every missing file."""
    missing = missing_files(base_model_path, branch_path)
    if missing:
        listing = "\n  ".join(str(path) for path in missing)
        raise ConfigError(
            f"VideoPainter checkpoint incomplete: {len(missing)} file(s) missing:\n  {listing}\n"
            f"Fetch them with `python -m vp_ray.tools.ckpt download` (needs the Hugging Face hub), or write "
            f"a tiny test tree with `python -m vp_ray.tools.ckpt tiny`.")


def load_pipeline(base_model_path: str | Path, branch_path: str | Path,
                  dtype: str | torch.dtype = "bfloat16"):
    """Load the stock CogVideoX-5b-I2V components and the branch into a ``VideoPainterPipeline`` (on CPU)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel, T5Tokenizer

    from vp_ray.models.branch import CogvideoXBranchModel
    from vp_ray.models.pipeline import VideoPainterPipeline

    require_complete(base_model_path, branch_path)
    base = Path(base_model_path)
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    # The scripts replace the stored DDIM scheduler with DPM on "trailing" timesteps.
    scheduler = CogVideoXDPMScheduler.from_config(CogVideoXDPMScheduler.load_config(base / "scheduler"),
                                                  timestep_spacing="trailing")
    # Eager attention in T5 as in the original (transformers 4.x); SDPA differs by ~1e-4 on the
    # embeddings and T5 runs once per clip (226 tokens), so its speed does not matter.
    text_encoder = T5EncoderModel.from_pretrained(base / "text_encoder", dtype=dtype,
                                                  attn_implementation="eager")
    return VideoPainterPipeline(
        tokenizer=T5Tokenizer.from_pretrained(base / "tokenizer"),
        text_encoder=text_encoder,
        vae=AutoencoderKLCogVideoX.from_pretrained(base / "vae", torch_dtype=dtype),
        transformer=CogVideoXTransformer3DModel.from_pretrained(base / "transformer", torch_dtype=dtype),
        scheduler=scheduler,
        branch=CogvideoXBranchModel.from_pretrained(branch_path, torch_dtype=dtype),
    )


def download(root: str | Path) -> None:
    """Fetch the real tree from the Hugging Face hub (``HF_ENDPOINT`` selects a mirror)."""
    from huggingface_hub import snapshot_download

    base, branch = tree_paths(root)
    print(f"hub: {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}")
    snapshot_download(BASE_REPO, local_dir=base)
    # The VideoPainter repository's root is the ckpt/ folder itself (VideoPainter/, VideoPainterID/).
    snapshot_download(BRANCH_REPO, local_dir=root, allow_patterns=[f"{BRANCH_DIR}/*"])
