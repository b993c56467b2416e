"""Seconds and GPU memory of the work around the denoising loop, under each VAE tiling and with
T5 brought from host memory (the parts of the memory plans).

    python bench/vae_probe.py [--compile [--whole] [--symbolic]] [--tilings untiled,1x2] [--no-t5]
                              [--out bench/runs/vae_probe.json]

Machine: one CUDA GPU (H100 or H200); diffusers, hydra-core and omegaconf beside torch. Full-size
random CogVideoX VAE and T5-XXL in bf16 on the GPU, one 49x480x720 clip:

* the VAE's encode of 49 frames and decode of 13 latent frames, untiled and with tilings of
  2x2 and 3x3 tiles ("3x3" is diffusers' default tile size: 240x360 pixels, 9 tiles at 480x720);
  "1x2" is full-height tiles of 432 pixels' width. Each: median seconds of 3 calls and the peak
  memory the call adds to what was allocated before it;
* with ``--compile``, also "untiled" and "1x2" with the VAE compiled, against the eager outputs
  (largest difference, the largest eager value for its scale, and the relative L2 difference):
  its resnet blocks (``vp_ray.models.speed.compile_vae``; "blocks-static": a graph per shape;
  with ``--symbolic`` also "blocks": sizes symbolic after the first recompile) and, with ``--whole``,
  the whole encoder and decoder; ``first_s`` includes the compile. Untiled, eager and compiled are
  also held against a float32 VAE (``vs_fp32``): how far each lies from the unrounded result;
* T5-XXL kept in pinned host memory and brought to the GPU for one prompt encode ("visit"):
  seconds to bring it, to encode, and to let it go, against encoding with T5 resident.
"""

from __future__ import annotations

import copy
import json
import statistics
import time

import _common

_common.require_modules("torch", "diffusers", "hydra", "omegaconf")

import torch  # noqa: E402
from bench_videopainter import FULL_VAE, T5_XXL  # noqa: E402

# name -> enable_tiling arguments (None: untiled). Every tiling's cuts are whole latent pixels
# (vp_ray.models.vae_tiling.tiles_add_up).
TILINGS = {
    "untiled": None,
    "1x2": dict(tile_sample_min_height=576, tile_sample_min_width=432,
                tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 6),
    "2x2": dict(tile_sample_min_height=288, tile_sample_min_width=432,
                tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 6),
    "3x3": dict(tile_sample_min_height=240, tile_sample_min_width=360,
                tile_overlap_factor_height=1 / 6, tile_overlap_factor_width=1 / 5),
}


def measure(fn, repeats: int = 3) -> dict:
    """Median seconds and the peak GiB the call adds to what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del out
    return {"s": statistics.median(times), "first_s": times[0],
            "peak_added_gib": (torch.cuda.max_memory_allocated() - before) / 2**30}


def probe_vae(results: dict, compiled: bool = False, tilings=tuple(TILINGS)) -> None:
    from diffusers import AutoencoderKLCogVideoX

    with torch.device("cuda"):
        vae = AutoencoderKLCogVideoX(**FULL_VAE).to(torch.bfloat16).eval()
    video = torch.rand(1, 3, 49, 480, 720, device="cuda", dtype=torch.bfloat16) * 2 - 1
    latents = torch.randn(1, 16, 13, 60, 90, device="cuda", dtype=torch.bfloat16)
    results["vae_weights_gib"] = torch.cuda.memory_allocated() / 2**30
    for name in tilings:
        set_tiling(vae, name)
        with torch.no_grad():
            encode = measure(lambda: vae.encode(video).latent_dist.mean)
            decode = measure(lambda: vae.decode(latents).sample)
        results["vae"][name] = {"encode": encode, "decode": decode}
        print(f"{name:8s} encode {encode['s']:.3f} s (+{encode['peak_added_gib']:.2f} GiB)  "
              f"decode {decode['s']:.3f} s (+{decode['peak_added_gib']:.2f} GiB)", flush=True)
    if compiled:
        probe_vae_compiled(vae, video, latents, results)
    vae = video = latents = None   # the references go, so empty_cache can free their memory
    torch.cuda.empty_cache()


def difference(out, eager) -> dict:
    """The largest difference to the eager output, the eager output's largest value (its scale), and
    the relative L2 difference (the measure the compiled blocks are held to: <= 1e-2 on the latents)."""
    out, eager = out.float(), eager.float()
    return {"max_diff": (out - eager).abs().max().item(), "eager_max_abs": eager.abs().max().item(),
            "rel_l2": ((out - eager).norm() / eager.norm()).item()}


def set_tiling(vae, name: str) -> None:
    vae.disable_tiling()
    if TILINGS[name] is not None:
        vae.enable_tiling(**TILINGS[name])


def probe_vae_compiled(vae, video, latents, results: dict) -> None:
    """Encodes and decodes with the VAE compiled, against eager ones and (untiled) a float32 VAE: its
    resnet blocks (``speed.compile_vae``, a graph per shape; with ``--symbolic`` also sizes symbolic
    after the first recompile), and with ``--whole``, the whole encoder and decoder."""
    from vp_ray.models.speed import compile_vae

    eager_encoder, eager_decoder = vae.encoder, vae.decoder
    # The eager outputs first: a function torch.compile wraps, once called with dynamo disabled, stays eager.
    references = {}
    for tiling in ("untiled", "1x2"):
        set_tiling(vae, tiling)
        with torch.no_grad():
            references[tiling] = (vae.encode(video).latent_dist.mean, vae.decode(latents).sample)
    # How far eager bf16 itself lies from float32 (untiled): the yardstick for the compiled outputs.
    vae32 = copy.deepcopy(vae).float()
    set_tiling(vae32, "untiled")
    with torch.no_grad():
        exact = (vae32.encode(video.float()).latent_dist.mean, vae32.decode(latents.float()).sample)
    del vae32
    torch.cuda.empty_cache()
    results["vae"]["untiled_eager_vs_fp32"] = {"encode": difference(references["untiled"][0], exact[0]),
                                              "decode": difference(references["untiled"][1], exact[1])}
    print("untiled eager bf16 against float32:", results["vae"]["untiled_eager_vs_fp32"], flush=True)
    ways = {"blocks-static": lambda: compile_vae(vae, dynamic=False)}
    if results["symbolic"]:
        ways["blocks"] = lambda: compile_vae(vae)
    if results["whole"]:
        ways["whole"] = lambda: setattr(vae, "encoder", torch.compile(eager_encoder)) or setattr(
            vae, "decoder", torch.compile(eager_decoder))
    for way, compile_it in ways.items():
        torch._dynamo.reset()
        for coder in (eager_encoder, eager_decoder):   # back to eager: the instances' compiled forwards go
            for module in coder.modules():
                module.__dict__.pop("forward", None)
        vae.encoder, vae.decoder = eager_encoder, eager_decoder
        compile_it()
        for tiling, reference in references.items():
            set_tiling(vae, tiling)
            with torch.no_grad():
                encode = measure(lambda: vae.encode(video).latent_dist.mean)
                decode = measure(lambda: vae.decode(latents).sample)
                encoded, decoded = vae.encode(video).latent_dist.mean, vae.decode(latents).sample
                encode.update(difference(encoded, reference[0]))
                decode.update(difference(decoded, reference[1]))
                if tiling == "untiled":
                    encode["vs_fp32"], decode["vs_fp32"] = difference(encoded, exact[0]), difference(decoded, exact[1])
                    print(f"  against float32: encode rel L2 {encode['vs_fp32']['rel_l2']:.3g}, decode "
                          f"{decode['vs_fp32']['rel_l2']:.3g}", flush=True)
            name = f"{tiling}+compile-{way}"
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]   # 0: nothing compiled
            results["vae"][name] = {"encode": encode, "decode": decode, "graphs_so_far": graphs}
            print(f"{name:26s} graphs {graphs}  encode {encode['s']:.3f} s (first {encode['first_s']:.1f} s, max diff "
                  f"{encode['max_diff']:.3g} of {encode['eager_max_abs']:.3g}, rel L2 {encode['rel_l2']:.2g})  "
                  f"decode {decode['s']:.3f} s (first {decode['first_s']:.1f} s, max diff {decode['max_diff']:.3g} "
                  f"of {decode['eager_max_abs']:.3g}, rel L2 {decode['rel_l2']:.2g})", flush=True)
            _common.write_json(results["out"], results)   # kept as it goes: a compile may outlast the call
    torch._dynamo.reset()


def probe_t5(results: dict) -> None:
    from transformers import T5Config, T5EncoderModel

    with torch.device("cuda"):
        t5 = T5EncoderModel(T5Config(**T5_XXL)).to(torch.bfloat16).eval()
    ids = torch.randint(0, 32128, (2, 226), device="cuda")
    with torch.no_grad():
        resident = measure(lambda: t5(ids)[0], repeats=5)
    results["t5"]["resident_encode"] = resident
    results["t5"]["weights_gib"] = torch.cuda.memory_allocated() / 2**30
    # Host copies in pinned memory; the GPU copies are dropped between visits (nothing to copy back).
    host = {name: p.detach().cpu().pin_memory() for name, p in t5.named_parameters()}
    params = dict(t5.named_parameters())
    for name, p in params.items():
        p.data = host[name]
    torch.cuda.empty_cache()
    visits = []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for name, p in params.items():
            p.data = host[name].to("cuda", non_blocking=True)
        torch.cuda.synchronize()
        moved = time.perf_counter()
        with torch.no_grad():
            t5(ids)[0].sum().item()
        encoded = time.perf_counter()
        for name, p in params.items():
            p.data = host[name]
        torch.cuda.synchronize()
        visits.append({"bring_s": moved - start, "encode_s": encoded - moved,
                       "let_go_s": time.perf_counter() - encoded})
    results["t5"]["visits"] = visits
    results["t5"]["visit_median_s"] = statistics.median(sum(v.values()) for v in visits)
    results["t5"]["gpu_gib_between_visits"] = torch.cuda.memory_allocated() / 2**30
    print("t5 resident encode", resident["s"], "visit", results["t5"]["visit_median_s"], flush=True)


def main() -> int:
    parser = _common.parser(__doc__)
    _common.add_out(parser, "vae_probe.json")
    parser.add_argument("--compile", action="store_true", help="also the VAE compiled")
    parser.add_argument("--whole", action="store_true",
                        help="with --compile, also the whole encoder and decoder compiled (minutes)")
    parser.add_argument("--symbolic", action="store_true",
                        help="with --compile, also the blocks compiled with symbolic sizes (slower than static)")
    parser.add_argument("--tilings", default=",".join(TILINGS), help="eager tilings to time (default: all)")
    parser.add_argument("--no-t5", action="store_true", help="leave out T5's visit")
    args = parser.parse_args()
    _common.require_cuda()
    torch.manual_seed(0)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "vae": {}, "t5": {},
               "out": str(args.out), "whole": args.whole, "symbolic": args.symbolic}
    probe_vae(results, args.compile, args.tilings.split(","))
    if not args.no_t5:
        probe_t5(results)
    print(json.dumps(results, indent=1))
    print(f"report: {_common.write_json(args.out, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
