"""The learned metrics: LPIPS (SqueezeNet), CLIP score (ViT-L/14), CLIP temporal consistency
(ViT-B/32) and the I3D features behind FVID, each loaded from its released file.

Each follows what the authors' metric code computes with its libraries (torchmetrics 1.6, transformers
4.42, OpenAI's ``clip``), written here against the released weights directly; ``LearnedMetrics``
holds those whose weights were found (``vp_ray.evaluation.weights``) and None for the others.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vp_ray.config import EvalConfig, Sam2Device
from vp_ray.evaluation import weights as weight_files
from vp_ray.evaluation.i3d import InceptionI3d, load_i3d

log = logging.getLogger(__name__)


def _load_state(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a plain ``torch.save`` file or a TorchScript archive (OpenAI's CLIP files)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; OpenAI's files are TorchScript
            return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- LPIPS

class Lpips(torch.nn.Module):
    """LPIPS v0.1 on SqueezeNet 1.1 (torchmetrics' ``net_type='squeeze'``): inputs in [-1, 1]."""

    SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13))  # ends at each ReLU stage
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, backbone: dict[str, torch.Tensor], linear: dict[str, torch.Tensor]):
        super().__init__()
        import torchvision

        features = torchvision.models.squeezenet1_1(weights=None).features
        features.load_state_dict({k.removeprefix("features."): v for k, v in backbone.items()
                                  if k.startswith("features.")})
        self.stages = torch.nn.ModuleList(torch.nn.Sequential(*features[a:b]) for a, b in self.SLICES)
        self.linear = [linear[f"lin{i}.model.1.weight"].float() for i in range(len(self.SLICES))]
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1))
        self.eval()

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y = (a - self.shift) / self.scale, (b - self.shift) / self.scale
        total = 0
        for stage, weight in zip(self.stages, self.linear):
            x, y = stage(x), stage(y)
            fx = x / torch.sqrt(1e-8 + (x ** 2).sum(dim=1, keepdim=True))
            fy = y / torch.sqrt(1e-8 + (y ** 2).sum(dim=1, keepdim=True))
            total = total + F.conv2d((fx - fy) ** 2, weight.to(x.device)).mean(dim=(2, 3), keepdim=True)
        return total.flatten()

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """LPIPS of two float ``[H, W, 3]`` images in [0, 1] (the authors pass ``2x - 1``)."""
        device = self.shift.device
        ta, tb = (torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
                  for v in (a, b))
        return float(self(ta * 2 - 1, tb * 2 - 1)[0])


def load_lpips(found: weight_files.Weights) -> Lpips:
    backbone, linear = found.paths
    return Lpips(torch.load(backbone, map_location="cpu", weights_only=True),
                 torch.load(linear, map_location="cpu", weights_only=True))


# ----------------------------------------------------------------------------- CLIP score (ViT-L/14)

class ClipScore:
    """torchmetrics' ``CLIPScore``: ``max(100 * cos(image, text), 0)`` with a Hugging Face CLIP.

    The image goes through CLIP's own preprocessing as transformers' (slow) image processor does it:
    shortest side to 224 with PIL's bicubic filter, centre crop, scale, normalize. Captions longer than
    the text model's positions are cut to them (torchmetrics warns and truncates).
    """

    def __init__(self, folder: str, device: torch.device):
        from transformers import AutoTokenizer, CLIPModel

        self.model = CLIPModel.from_pretrained(folder).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        pre = json.loads((Path(folder) / "preprocessor_config.json").read_text())
        size = pre.get("size", 224)
        self.short_side = size["shortest_edge"] if isinstance(size, dict) else int(size)
        crop = pre.get("crop_size", 224)
        self.crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
        self.mean = np.array(pre.get("image_mean"), np.float32)
        self.std = np.array(pre.get("image_std"), np.float32)
        self.device = device
        self._text_cache: dict[str, torch.Tensor] = {}

    def pixel_values(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.short_side * long / short)
        size = (self.short_side, new_long) if w <= h else (new_long, self.short_side)  # (width, height)
        resized = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        ch, cw = self.crop
        top, left = (resized.shape[0] - ch) // 2, (resized.shape[1] - cw) // 2
        cropped = resized[top:top + ch, left:left + cw]
        scaled = (cropped.astype(np.float64) * (1 / 255)).astype(np.float32)
        normalized = (scaled - self.mean) / self.std
        return torch.from_numpy(normalized.transpose(2, 0, 1).copy())[None]

    def _text_features(self, text: str) -> torch.Tensor:
        if text not in self._text_cache:
            tokens = self.tokenizer([text], padding=True, return_tensors="pt")
            limit = self.model.config.text_config.max_position_embeddings
            ids, attention = tokens["input_ids"][..., :limit], tokens["attention_mask"][..., :limit]
            with torch.no_grad():
                features = _pooled(self.model.get_text_features(input_ids=ids.to(self.device),
                                                                attention_mask=attention.to(self.device)))
            self._text_cache[text] = features / features.norm(p=2, dim=-1, keepdim=True)
        return self._text_cache[text]

    def score(self, image: np.ndarray, text: str) -> float:
        """CLIP score of a uint8 ``[H, W, 3]`` image against ``text``."""
        with torch.no_grad():
            features = _pooled(self.model.get_image_features(pixel_values=self.pixel_values(image).to(self.device)))
        features = features / features.norm(p=2, dim=-1, keepdim=True)
        return max(float(100 * (features * self._text_features(text)).sum()), 0.0)


def _pooled(output: Any) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 returns them as ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


# ----------------------------------------------------------------------------- CLIP ViT-B/32 (OpenAI)

# Tensors OpenAI's ``clip.load`` stores in float16 (``convert_weights``) even when it then runs in
# float32 on the CPU: convolution, linear and attention weights and the projection.
_HALF_KEYS = ("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
              "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias", "visual.proj")


class OpenAIClipVision(torch.nn.Module):
    """The image tower of an OpenAI CLIP ViT file (``ViT-B-32.pt``): ``encode_image`` as ``clip`` has it.

    Widths, depth, patch and resolution are read from the file's shapes, as ``clip.build_model`` does;
    heads are width / 64.
    """

    def __init__(self, state: dict[str, torch.Tensor], half: bool = False):
        super().__init__()
        visual = {k.removeprefix("visual."): (v.half().float() if k.endswith(_HALF_KEYS) else v.float())
                  for k, v in state.items() if k.startswith("visual.")}
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v, requires_grad=False)
                                              for k, v in visual.items()})
        self.width = visual["conv1.weight"].shape[0]
        self.patch = visual["conv1.weight"].shape[-1]
        self.heads = self.width // 64
        self.layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
        self.half_precision = half

    def p(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def _layer_norm(self, x, name):
        return F.layer_norm(x.float(), (self.width,), self.p(f"{name}.weight").float(),
                            self.p(f"{name}.bias").float(), 1e-5).type(x.dtype)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        dtype = torch.float16 if self.half_precision else torch.float32

        def p(name: str) -> torch.Tensor:
            return self.p(name).to(dtype)

        x = F.conv2d(images.to(dtype), p("conv1.weight"), stride=self.patch)
        x = x.flatten(2).transpose(1, 2)
        cls = p("class_embedding") + torch.zeros(x.shape[0], 1, self.width, dtype=dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + p("positional_embedding")
        x = self._layer_norm(x, "ln_pre").transpose(0, 1)  # [tokens, batch, width]
        for i in range(self.layers):
            block = f"transformer.resblocks.{i}"
            h = self._layer_norm(x, f"{block}.ln_1")
            x = x + F.multi_head_attention_forward(
                h, h, h, self.width, self.heads, p(f"{block}.attn.in_proj_weight"), p(f"{block}.attn.in_proj_bias"),
                None, None, False, 0.0, p(f"{block}.attn.out_proj.weight"), p(f"{block}.attn.out_proj.bias"),
                training=False, need_weights=False)[0]
            h = F.linear(self._layer_norm(x, f"{block}.ln_2"), p(f"{block}.mlp.c_fc.weight"),
                         p(f"{block}.mlp.c_fc.bias"))
            x = x + F.linear(h * torch.sigmoid(1.702 * h), p(f"{block}.mlp.c_proj.weight"),
                             p(f"{block}.mlp.c_proj.bias"))
        x = self._layer_norm(x.transpose(0, 1)[:, 0, :], "ln_post")
        return x @ p("proj")


def temporal_consistency(model: OpenAIClipVision, frames: np.ndarray, hole: np.ndarray | None = None) -> float:
    """The authors' CLIP temporal consistency: the mean cosine similarity of consecutive frames'
    ViT-B/32 features.

    As their code does it: frames scaled to [0, 1] only if some value exceeds 1, optionally multiplied
    by ``hole`` (bool ``[T, H, W]``: the hole is kept, the rest black), squashed to 224x224 (bilinear,
    antialiased), and given to CLIP without CLIP's mean/std normalization.
    """
    device = model.p("conv1.weight").device
    features = []
    scale = 255.0 if frames.max() > 1.0 else 1.0
    for i in range(len(frames)):
        image = torch.from_numpy(np.ascontiguousarray(frames[i])).float().to(device) / scale
        image = image.permute(2, 0, 1)[None]
        if hole is not None:
            image = image * torch.from_numpy(hole[i].astype(np.float32)).to(device)[None, None]
        image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
        features.append(model.encode_image(image).float())
    features = torch.cat(features)
    features = features / torch.sqrt(torch.sum(features ** 2, dim=1, keepdim=True))
    return float((features[:-1] * features[1:]).sum(dim=1).mean())


# ----------------------------------------------------------------------------- I3D

def i3d_features(model: InceptionI3d, frames: np.ndarray, batch_statistics: bool) -> np.ndarray:
    """1024 features of a uint8 ``[T, H, W, 3]`` video, given to I3D in [0, 1] as the authors do.

    ``batch_statistics``: BatchNorm normalizes with the video's own statistics (the authors never put
    the model in eval mode); otherwise with the file's running statistics.
    """
    device = next(model.parameters()).device
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(3, 0, 1, 2)[None].float() / 255
    model.train(batch_statistics)
    with torch.no_grad():
        return model.features(video).cpu().numpy().astype(np.float32).reshape(-1)


# ----------------------------------------------------------------------------- all of them

@dataclass
class LearnedMetrics:
    lpips: Lpips | None = None
    clip_score: ClipScore | None = None
    temporal: OpenAIClipVision | None = None
    i3d: InceptionI3d | None = None
    problems: list[str] = field(default_factory=list)  # weights found but not loadable, one line each


def pick_device(setting: Sam2Device) -> torch.device:
    if setting is Sam2Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting.value)


def load_learned(cfg: EvalConfig, device: torch.device) -> LearnedMetrics:
    """The learned metrics whose weights are found (``cfg``: the ``eval`` settings)."""
    found = weight_files.find_weights(cfg)
    loaders = {
        "lpips": lambda w: load_lpips(w).to(device),
        "clip_score": lambda w: ClipScore(w.paths[0], device),
        "temporal_consistency":
            lambda w: OpenAIClipVision(_load_state(w.paths[0]), half=device.type == "cuda").to(device),
        "fvid": lambda w: load_i3d(w.paths[0]).to(device),
    }
    slots = {"lpips": "lpips", "clip_score": "clip_score", "temporal_consistency": "temporal", "fvid": "i3d"}
    metrics = LearnedMetrics()
    for name, weights in found.items():
        if not weights.found:
            continue
        try:
            setattr(metrics, slots[name], loaders[name](weights))
        except Exception as error:  # noqa: BLE001 - a bad file disables its metric, with its reason
            metrics.problems.append(f"{name}: not computed: cannot load {', '.join(weights.paths)}: "
                                    f"{type(error).__name__}: {error}")
    return metrics
