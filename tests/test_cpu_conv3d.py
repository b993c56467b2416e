"""The VAE's 3D convolutions on the CPU go to oneDNN (PyTorch would pick its reference kernel for
small inputs), with the same results, and only where oneDNN may run."""

from __future__ import annotations

import pytest
import torch

from vp_ray.models.cpu_conv3d import route_conv3d_to_onednn
from vp_ray.models.pipeline import VideoPainterPipeline


@pytest.fixture
def onednn_calls(monkeypatch):
    calls = []
    real = torch.mkldnn_convolution

    def counted(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(torch, "mkldnn_convolution", counted)
    return calls


def layer_and_input():
    torch.manual_seed(0)
    return torch.nn.Conv3d(8, 8, 3, padding=(0, 1, 1)).eval(), torch.randn(1, 8, 11, 33, 49)


def test_a_routed_conv3d_calls_onednn_with_the_reference_kernels_result(onednn_calls):
    layer, x = layer_and_input()
    with torch.no_grad():
        expected = layer(x)
        assert route_conv3d_to_onednn(layer) == 1
        routed = layer(x)
    assert onednn_calls == [x.shape]
    torch.testing.assert_close(routed, expected, rtol=1e-5, atol=1e-5)


def test_a_routed_bfloat16_conv3d_is_computed_in_float32_and_rounded_once(onednn_calls):
    layer, x = layer_and_input()
    layer, x = layer.to(torch.bfloat16), x.to(torch.bfloat16)
    with torch.no_grad():
        expected = layer(x)
        route_conv3d_to_onednn(layer)
        routed = layer(x)
    assert routed.dtype == torch.bfloat16 and onednn_calls == [x.shape]
    # within one bfloat16 step (2**-7 relative) of the reference kernel's result
    assert ((routed.float() - expected.float()).abs() <= expected.float().abs() * 2**-7 + 1e-6).all()


@pytest.mark.parametrize("where", ["onednn off", "autograd"])
def test_a_routed_conv3d_runs_as_before_where_onednn_may_not(where, onednn_calls, monkeypatch):
    layer, x = layer_and_input()
    route_conv3d_to_onednn(layer)
    if where == "onednn off":   # the parity tests pin their kernels so
        monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    with torch.set_grad_enabled(where == "autograd"):
        layer(x)
    assert onednn_calls == []


def test_the_pipeline_routes_its_vaes_conv3d_layers(tiny_pipe, onednn_calls):
    vae = tiny_pipe.vae
    conv3d = [m for m in vae.modules() if isinstance(m, torch.nn.Conv3d)]
    assert conv3d and all("_conv_forward" in m.__dict__ for m in conv3d)
    with torch.no_grad():
        vae.encode(torch.rand(1, 3, 9, 32, 48) * 2 - 1)
    assert onednn_calls


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from vp_ray.models.checkpoint import load_pipeline
    from vp_ray.models.tiny import ensure_tiny_tree

    pipe = load_pipeline(*ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt-conv3d"), dtype="float32")
    assert isinstance(pipe, VideoPainterPipeline)
    return pipe
