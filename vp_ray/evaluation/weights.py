"""Where the learned metrics' weights are found, and the one line that says what is missing.

Each learned metric needs released weights that vp-ray never downloads. Each is looked for in
``ckpt/`` first (the path in ``eval.*``), then where the usual tools cache it:

* LPIPS: torchvision's SqueezeNet 1.1, ``squeezenet1_1-b8a52dc0.pth``; also in ``<torch hub dir>/checkpoints/``
  (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``).
* LPIPS: LPIPS v0.1's linear layers for SqueezeNet, ``squeeze.pth``; also in the ``lpips`` package
  (``lpips/weights/v0.1/``) or ``torchmetrics`` (``functional/image/lpips_models/``).
* CLIP score: ``clip-vit-large-patch14/`` (Hugging Face layout); also in the Hugging Face cache
  (``models--openai--clip-vit-large-patch14``).
* temporal consistency: OpenAI CLIP ``ViT-B-32.pt``; also in ``~/.cache/clip/`` (``clip.load``'s download folder).
* FVID: ``i3d_rgb_imagenet.pt`` (pytorch-i3d's RGB ImageNet model).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from vp_ray.config import EvalConfig

SQUEEZENET_FILE = "squeezenet1_1-b8a52dc0.pth"
CLIP_L14_REPO = "openai/clip-vit-large-patch14"


@dataclass(frozen=True)
class Weights:
    """The files of one learned metric: found (``paths``) or not (``needed`` says which would do)."""

    metric: str
    paths: tuple[str, ...]
    needed: str = ""

    @property
    def found(self) -> bool:
        return not self.needed

    def notice(self) -> str:
        return f"{self.metric}: not computed (null columns): needs {self.needed}"


def _first(candidates: list[Path]) -> str | None:
    return next((str(path) for path in candidates if path.exists()), None)


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _torch_hub_dir() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub"


def _hf_snapshot(repo: str) -> Path | None:
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"), "hub")
    snapshots = Path(home).expanduser() / f"models--{repo.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1].parent if found else None


def lpips_weights(cfg: EvalConfig) -> Weights:
    backbone = _first([Path(cfg.lpips_backbone), _torch_hub_dir() / "checkpoints" / SQUEEZENET_FILE])
    linear = _first([p for p in (Path(cfg.lpips_linear),
                                 _package_file("lpips", "weights", "v0.1", "squeeze.pth"),
                                 _package_file("torchmetrics", "functional", "image", "lpips_models", "squeeze.pth"))
                     if p is not None])
    needed = [] if backbone else [f"{cfg.lpips_backbone} (or {_torch_hub_dir() / 'checkpoints' / SQUEEZENET_FILE})"]
    if not linear:
        needed.append(f"{cfg.lpips_linear} (or `pip install lpips`)")
    return Weights("lpips", (backbone or "", linear or ""), " and ".join(needed))


def clip_score_weights(cfg: EvalConfig) -> Weights:
    folder = Path(cfg.clip_score_model)
    found = str(folder) if (folder / "config.json").is_file() else _hf_snapshot(CLIP_L14_REPO)
    return Weights("clip_score", (str(found),) if found else (),
                   "" if found else f"{folder}/ (openai/clip-vit-large-patch14 in the Hugging Face layout)")


def temporal_weights(cfg: EvalConfig) -> Weights:
    found = _first([Path(cfg.clip_temporal_model), Path("~/.cache/clip/ViT-B-32.pt").expanduser()])
    return Weights("temporal_consistency", (found,) if found else (),
                   "" if found else f"{cfg.clip_temporal_model} (or ~/.cache/clip/ViT-B-32.pt)")


def fvid_weights(cfg: EvalConfig) -> Weights:
    found = _first([Path(cfg.i3d_model)])
    return Weights("fvid", (found,) if found else (), "" if found else f"{cfg.i3d_model}")


def find_weights(cfg: EvalConfig) -> dict[str, Weights]:
    """Each learned metric's weights for the ``eval`` settings ``cfg``, by metric."""
    return {w.metric: w for w in (lpips_weights(cfg), clip_score_weights(cfg), temporal_weights(cfg),
                                  fvid_weights(cfg))}
