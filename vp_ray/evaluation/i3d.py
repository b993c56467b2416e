"""Inception-I3D (Carreira & Zisserman), laid out as pytorch-i3d's ``i3d_rgb_imagenet.pt``, for FVID.

Module names follow that file's keys (``Mixed_4b.b1b.conv3d.weight``, ``logits.conv3d.bias``), so the
released file loads as it is. Convolutions and pools pad as TensorFlow's ``SAME`` does (more at the
end than at the start when the padding is odd), as the original model was trained.

A video's features are the mean over time and space of ``Mixed_5c`` (1024 values): the authors ask for
the ``Logits`` endpoint, which their loop never reaches, so it returns the last block's mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# (name, in channels, [1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj]) of each inception block,
# and the pools between them: (name, kernel, stride).
LAYOUT = [
    ("Conv3d_1a_7x7", "conv", 3, 64, (7, 7, 7), (2, 2, 2)),
    ("MaxPool3d_2a_3x3", "pool", (1, 3, 3), (1, 2, 2)),
    ("Conv3d_2b_1x1", "conv", 64, 64, (1, 1, 1), (1, 1, 1)),
    ("Conv3d_2c_3x3", "conv", 64, 192, (3, 3, 3), (1, 1, 1)),
    ("MaxPool3d_3a_3x3", "pool", (1, 3, 3), (1, 2, 2)),
    ("Mixed_3b", "mixed", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", "mixed", 256, [128, 128, 192, 32, 96, 64]),
    ("MaxPool3d_4a_3x3", "pool", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", "mixed", 480, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", "mixed", 512, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", "mixed", 512, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", "mixed", 512, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", "mixed", 528, [256, 160, 320, 32, 128, 128]),
    ("MaxPool3d_5a_2x2", "pool", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", "mixed", 832, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", "mixed", 832, [384, 192, 384, 48, 128, 128]),
]
FEATURES = 1024
NUM_CLASSES = 400


def same_padding(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((total // 2, total - total // 2))
    (t0, t1), (h0, h1), (w0, w1) = pads
    return F.pad(x, (w0, w1, h0, h1, t0, t1))


class Unit3d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x):
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class Pool3d(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(same_padding(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.b0 = Unit3d(cin, c[0])
        self.b1a, self.b1b = Unit3d(cin, c[1]), Unit3d(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3d(cin, c[3]), Unit3d(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = Pool3d((3, 3, 3), (1, 1, 1)), Unit3d(cin, c[5])

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    def __init__(self):
        super().__init__()
        for name, kind, *spec in LAYOUT:
            layer = {"conv": Unit3d, "pool": Pool3d}.get(kind, Mixed)
            self.add_module(name, layer(*spec))
        self.logits = Unit3d(FEATURES, NUM_CLASSES, logits=True)  # in the file; not used for features

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` -> ``[N, 1024]``."""
        x = video
        for name, *_ in LAYOUT:
            x = self._modules[name](x)
        return x.mean(dim=(2, 3, 4))


def load_i3d(path: str) -> InceptionI3d:
    model = InceptionI3d()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def random_i3d_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the released file's layout (its keys and shapes), from NumPy's generator so
    that the same seed gives the same weights with any torch. BatchNorm statistics at identity."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in InceptionI3d().state_dict().items():
        if key.endswith("conv3d.weight"):
            fan_in = int(np.prod(value.shape[1:]))
            array = rng.standard_normal(value.shape) * np.sqrt(2.0 / fan_in)
        elif key.endswith(("bn.weight", "running_var")):
            array = np.ones(value.shape)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        else:
            array = np.zeros(value.shape) if "bn." in key else rng.standard_normal(value.shape) * 0.01
        state[key] = torch.from_numpy(array.astype(np.float32))
    return state
