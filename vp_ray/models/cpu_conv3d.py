"""3D convolutions on the CPU through oneDNN, not PyTorch's reference kernel.

PyTorch sends a float32 ``conv3d`` with batch 1 and a small input (N x C x T x H under 20,480, a
rule made for 2D images) to ``slow_conv3d``, its reference im2col kernel, whatever the frames'
width; in bfloat16 and float16 it always goes there. The VAE's causal convolutions on a small
model's frames are such calls: on a 2-core x86 CPU a 8 -> 8 channel 3x3x3 convolution of
11 x 66 x 98 took 27 ms there and 3.1 ms in oneDNN in float32 (results equal to float32 rounding,
1.7e-6), and 337 ms against 3.6 ms in bfloat16 (computed in float32 and rounded once, within one
bfloat16 step of the reference kernel's result, which also accumulates in float32).
``route_conv3d_to_onednn`` makes a model's Conv3d layers call oneDNN for such inputs; on a GPU,
with oneDNN switched off (``torch.backends.mkldnn.enabled = False``, as the parity tests pin their
kernels) or under autograd, they run as before.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _conv3d(layer: torch.nn.Conv3d, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if (input.device.type == "cpu" and input.dtype in FLOATS and weight.dtype == input.dtype
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_grad_enabled() and not torch.compiler.is_compiling()):
        # In float32 whatever the dtype: oneDNN's half-precision kernels need CPU features many lack.
        out = torch.mkldnn_convolution(input.float().contiguous(), weight.float().contiguous(),
                                       None if bias is None else bias.float(), layer.padding,
                                       layer.stride, layer.dilation, layer.groups)
        return out.to(input.dtype)
    return F.conv3d(input, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def route_conv3d_to_onednn(model: torch.nn.Module) -> int:
    """Every zero-padded Conv3d of ``model`` (padding given in voxels) calls oneDNN on the CPU;
    returns how many."""
    routed = 0
    for layer in model.modules():
        if (isinstance(layer, torch.nn.Conv3d) and layer.padding_mode == "zeros"
                and not isinstance(layer.padding, str)):
            layer._conv_forward = partial(_conv3d, layer)
            routed += 1
    return routed
