"""Time one CogVideoX-5b attention call with each kernel the GPU machine can run.

    python bench/attention_kernels.py [--out bench/runs/attention.json]

Machine: one CUDA GPU (H100 or H200); torch alone (and this repository's
vp_ray/models/attention_backend.py).

The shape is the backbone's: CFG batch 2, 48 heads of 64, 226 text + 17550 video tokens (49 frames
at 480x720), bf16, no mask. Kernels: PyTorch SDPA with each backend (cuDNN is what SDPA picks on
Hopper), and FlashAttention-4 (``flash_attn.cute``, the ``flash-attn-4`` package) where it imports
(it is not carried: bench/RESULTS.md says why). Each output is compared with float32 attention on a
slice of the queries.

Then what an inpainting actor does at start with ``model.attention_backend=auto``
(vp_ray/models/attention_backend.py): its log line with the seconds it took ("actor: attention: cudnn
... ms, flash ... ms, efficient ... ms -> cudnn (... s; PyTorch's order here: ...)"), then, inside the
choice's ``in_force``, the kernel SDPA dispatches to and the one a compiled graph holds ("in force:
eager cudnn, compiled aten._scaled_dot_product_cudnn_attention.default"): both must be the choice.
"""

from __future__ import annotations

import json
import time

import _common

_common.require_modules("torch")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

BATCH, HEADS, TOKENS, HEAD_DIM = 2, 48, 226 + 13 * 30 * 45, 64
REFERENCE_QUERIES = 512


def flops() -> float:
    return 4.0 * BATCH * HEADS * TOKENS * TOKENS * HEAD_DIM


def timed(fn, repeats: int = 20) -> float:
    """Median seconds of one call, timed with CUDA events after three warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def actor_choice(q, k, v) -> dict:
    """An actor's choice on this shape, and the kernel in force under it, eager and compiled."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from vp_ray.models.attention_backend import KERNELS, AttentionShape, choose_attention, pytorch_order

    start = time.perf_counter()
    shape = AttentionShape(BATCH, HEADS, TOKENS, HEAD_DIM)
    choice = choose_attention("auto", q.device, lambda: shape, q.dtype)
    seconds = time.perf_counter() - start
    print(f"actor: {choice.reason} ({seconds:.2f} s; PyTorch's order here: {', '.join(pytorch_order())})",
          flush=True)
    aten_ops = []

    def record(graph, inputs):
        aten_ops.extend(str(node.target) for node in graph.graph.nodes
                        if "scaled_dot_product" in str(node.target))
        return make_boxed_func(graph.forward)

    compiled = torch.compile(lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                             backend=aot_autograd(fw_compiler=record), fullgraph=True)
    with torch.no_grad(), choice.in_force():
        eager = SDPBackend(torch._fused_sdp_choice(q, k, v)).name
        compiled(q, k, v)
    names = {backend.name: name for name, backend in KERNELS.items()}
    print(f"in force: eager {names.get(eager, eager)}, compiled {', '.join(aten_ops)}", flush=True)
    return {"reason": choice.reason, "kernel": choice.kernel, "seconds": seconds,
            "pytorch_order": pytorch_order(), "eager_in_force": names.get(eager, eager),
            "compiled_ops": aten_ops}


def main() -> int:
    parser = _common.parser(__doc__)
    _common.add_out(parser, "attention.json")
    args = parser.parse_args()
    _common.require_cuda()
    torch.manual_seed(0)
    q, k, v = (torch.randn(BATCH, HEADS, TOKENS, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    reference = F.scaled_dot_product_attention(q[..., :REFERENCE_QUERIES, :].float(), k.float(), v.float())

    def error(out):
        return float((out[..., :REFERENCE_QUERIES, :].float() - reference).abs().max())

    results = {"shape": [BATCH, HEADS, TOKENS, HEAD_DIM], "device": torch.cuda.get_device_name(),
               "torch": torch.__version__, "kernels": {}}

    def record(name, fn):
        try:
            out = fn()
            seconds = timed(fn)
        except Exception as failure:  # a kernel this GPU or build lacks: say so, go on
            results["kernels"][name] = {"error": f"{type(failure).__name__}: {failure}"[:500]}
            print(f"{name:28s} failed: {results['kernels'][name]['error']}", flush=True)
            return
        results["kernels"][name] = {"ms": seconds * 1e3, "tflops": flops() / seconds / 1e12,
                                    "max_abs_err_vs_fp32": error(out)}
        print(f"{name:28s} {seconds * 1e3:7.2f} ms  {flops() / seconds / 1e12:6.1f} TFLOP/s  "
              f"max err {error(out):.2e}", flush=True)

    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        def sdpa(backend=backend):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v)
        record(f"sdpa_{backend.name.lower()}", sdpa)
    record("sdpa_default", lambda: F.scaled_dot_product_attention(q, k, v))

    try:
        from flash_attn.cute import flash_attn_func
    except Exception as failure:
        results["flash4_import"] = f"{type(failure).__name__}: {failure}"[:500]
        print("flash_attn.cute not importable:", results["flash4_import"], flush=True)
    else:
        start = time.perf_counter()
        flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        torch.cuda.synchronize()
        results["flash4_first_call_s"] = time.perf_counter() - start
        record("flash4", lambda: flash_attn_func(q.transpose(1, 2), k.transpose(1, 2),
                                                 v.transpose(1, 2))[0].transpose(1, 2))

    results["actor"] = actor_choice(q, k, v)
    print(json.dumps(results, indent=1))
    print(f"report: {_common.write_json(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
