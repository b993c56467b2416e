"""Benchmark VideoPainter inpainting at full size, with the stock CogVideoX I2V pipeline as yardstick.

    python bench/bench_videopainter.py [--steps 50] [--stock-steps 50] [--modes resident,model_offload]
                                       [--out bench/runs/videopainter_bench.json]
    python bench/bench_videopainter.py --tiny      # CPU smoke run on tiny models

Machine: one CUDA GPU with at least 40 GiB (H100 or H200; resident untiled peaks at 35.7 GiB);
diffusers, hydra-core and omegaconf beside torch.

Every component has the real architecture (CogVideoX-5b-I2V transformer, its 3D VAE, the
two-block VideoPainter branch, T5-v1.1-XXL) with random weights created directly on the GPU, so
no checkpoint is needed. One clip of 49 frames at 480x720 per memory mode goes through
``VideoPainter.inpaint_clip`` (the production path: prompt encoding, CFG 6 with
dynamic guidance, VAE encodes, denoising loop, decode). Reported per mode: seconds per clip,
per-step wall time, transformer and branch forward times, VAE decode time, peak GPU memory.
The stock ``CogVideoXImageToVideoPipeline`` then runs on the same models, end to end on the clip's
first frame as diffusers' users call it: T5 on the prompt, the image encode, ``--stock-steps`` steps,
the decode to frames (``output_type="np"``), everything resident and the VAE untiled (diffusers'
defaults), after a warm-up call of one step. Reported: its seconds per clip and per step.
``--modes none`` runs the stock pipeline alone (``bench/gpu_exact.sh``).

Memory modes: resident | text_encoder_offload | model_offload | sequential_offload, each with the
VAE tiles the inpainter gives it (none, large, small, small); ``+tiling`` forces small tiles,
``+untiled`` none. Speed options as suffixes:
``+compile`` (model.compile_blocks: its first step includes the compile, reported as
``compile_s``; with inductor's ``emulate_precision_casts``, see ``vp_ray/models/speed.py``),
``+compilevae`` (model.compile_vae: a whole clip runs first, untimed, to compile the VAE for every
shape the clip meets; its seconds are ``warm_up_clip_s``) and ``+reuseN``
(model.approx_attention_reuse=N, approximate), ``+fp8`` (model.approx_fp8_linear,
approximate; torchao) and ``+cudnnbench`` (``torch.backends.cudnn.benchmark``: cuDNN times its
convolution algorithms once per shape, which only the VAE's 3D convolutions use). Every mode's final
latents are compared with the first mode's (relative L2: put an exact eager mode first), and the
report ends with ``exact step ratio vs stock`` for the fastest exact mode.

    python bench/bench_videopainter.py --steps 10 --modes resident+tiling,resident+tiling+compile,resident+tiling+reuse2
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import _common

_common.require_modules("torch", "diffusers", "hydra", "omegaconf")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vp_ray.config import VideoPainterModelConfig, with_values  # noqa: E402
from vp_ray.models import tiny as tiny_models  # noqa: E402
from vp_ray.models.branch import CogvideoXBranchModel  # noqa: E402
from vp_ray.models.pipeline import VideoPainterPipeline  # noqa: E402
from vp_ray.models.videopainter import VideoPainter  # noqa: E402

FULL_TRANSFORMER = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, flip_sin_to_cos=True,
    freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=42, dropout=0.0, attention_bias=True,
    sample_width=90, sample_height=60, sample_frames=49, patch_size=2, temporal_compression_ratio=4,
    max_text_seq_length=226, activation_fn="gelu-approximate", timestep_activation_fn="silu",
    norm_elementwise_affine=True, norm_eps=1e-5, spatial_interpolation_scale=1.875,
    temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=True)
FULL_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
    up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(128, 256, 256, 512), latent_channels=16,
    layers_per_block=3, act_fn="silu", norm_eps=1e-6, norm_num_groups=32, temporal_compression_ratio=4,
    sample_height=480, sample_width=720, scaling_factor=0.7, use_quant_conv=False, use_post_quant_conv=False)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, dropout_rate=0.0,
              pad_token_id=0, eos_token_id=1)
PROMPT = "A quiet street with parked cars and trees under a clear sky, the camera slowly panning left."


def word_tokenizer():
    """A word-level tokenizer with T5's special ids: tokenising costs nothing next to the models,
    and it needs neither sentencepiece nor a download."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    prompt_words = PROMPT.lower().replace(",", " ").replace(".", " ").split()
    words = ["<pad>", "</s>", "<unk>", *sorted(set(prompt_words))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=226)


def build_pipeline(tiny: bool, device: torch.device, dtype: torch.dtype) -> VideoPainterPipeline:
    """Random-weight components created directly on ``device`` (full size unless ``tiny``)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = word_tokenizer()
    t5 = tiny_models.t5_config(len(tokenizer)) if tiny else T5_XXL
    with torch.device(device):  # built in float32 one model at a time, then cast (peak ~45 GB at full size)
        text_encoder = T5EncoderModel(T5Config(**t5)).to(dtype).eval()
        vae = AutoencoderKLCogVideoX(**(tiny_models.vae_config() if tiny else FULL_VAE)).to(dtype).eval()
        transformer_cfg = tiny_models.transformer_config() if tiny else FULL_TRANSFORMER
        transformer = CogVideoXTransformer3DModel(**transformer_cfg).to(dtype).eval()
        branch = CogvideoXBranchModel.from_transformer(transformer, num_layers=2).to(dtype).eval()
    scheduler = CogVideoXDPMScheduler.from_config(tiny_models.SCHEDULER_CONFIG, timestep_spacing="trailing")
    return VideoPainterPipeline(tokenizer=tokenizer,
                                text_encoder=text_encoder, vae=vae, transformer=transformer,
                                scheduler=scheduler, branch=branch)


class ForwardTimer:
    """Wall time of every forward call of a module (synchronised around the call on CUDA)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device, self.times, self._start = device, [], 0.0
        self.handles = [module.register_forward_pre_hook(self._before),
                        module.register_forward_hook(self._after)]

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _before(self, *args):
        self._sync()
        self._start = time.perf_counter()

    def _after(self, *args):
        self._sync()
        self.times.append(time.perf_counter() - self._start)

    def remove(self):
        for handle in self.handles:
            handle.remove()


def timed_decode(pipe, timings: dict, device: torch.device):
    original = pipe.decode_latents

    def decode(latents):
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings["latents"] = latents.detach().float().cpu()
        start = time.perf_counter()
        frames = original(latents)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings["vae_decode_s"] = time.perf_counter() - start
        return frames

    pipe.decode_latents = decode


def time_calls(owner, name: str, device: torch.device) -> list[float]:
    """Wall time of every call of ``owner.name`` (an instance attribute shadows the method until
    ``del owner.name``)."""
    original, times = getattr(owner, name), []

    def timed(*args, **kwargs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = original(*args, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        return result

    setattr(owner, name, timed)
    return times


def summary(times: list[float]) -> dict:
    if not times:
        return {}
    return {"median_s": statistics.median(times), "mean_s": statistics.mean(times), "first_s": times[0],
            "count": len(times)}


def parse_mode(mode: str) -> dict:
    """``resident+tiling+compile`` -> the inpainter settings it stands for."""
    base, *options = mode.split("+")
    if base not in ("resident", "text_encoder_offload", "model_offload", "sequential_offload"):
        raise ValueError(f"unknown memory mode {base!r} in {mode!r}")
    # vae_tiling None: the mode's own tiles (resident: none, text_encoder_offload: large, offload: small).
    settings = dict(memory_mode=base, vae_tiling=None, compile_blocks=False, compile_vae=False,
                    approx_attention_reuse=1, approx_attention_reuse_timesteps=[100, 800],
                    approx_fp8_linear=False, cudnn_benchmark=False)
    for option in options:
        if option == "tiling":
            settings["vae_tiling"] = True    # small tiles
        elif option == "untiled":
            settings["vae_tiling"] = False
        elif option == "compile":
            settings["compile_blocks"] = True
        elif option == "compilevae":
            settings["compile_vae"] = True
        elif option == "fp8":
            settings["approx_fp8_linear"] = True
        elif option == "cudnnbench":
            settings["cudnn_benchmark"] = True
        elif option.startswith("reuse"):
            settings["approx_attention_reuse"] = int(option.removeprefix("reuse"))
        else:
            raise ValueError(f"unknown mode option {option!r} in {mode!r}")
    return settings


def remove_speed_options(pipe) -> None:
    """Back to the eager, uncached pipeline for the next mode."""
    for model in (pipe.transformer, pipe.branch):
        for block in model.transformer_blocks:
            block.__dict__.pop("forward", None)   # compile_blocks set it on the instance
    for module in pipe.vae.modules():
        module.__dict__.pop("forward", None)   # and compile_vae on the VAE's resnet blocks
    if pipe.transformer.is_cache_enabled:
        pipe.transformer.disable_cache()


def block_linear_weights(pipe) -> dict:
    """The weights FP8 conversion replaces, to put back after an fp8 mode."""
    from vp_ray.models.speed import is_fp8_target

    return {module: module.weight for model in (pipe.transformer, pipe.branch)
            for name, module in model.named_modules() if is_fp8_target(module, name)}


def run_mode(pipe, mode: str, args, device, frames, masks) -> dict:
    settings = parse_mode(mode)
    torch.backends.cudnn.benchmark = settings.pop("cudnn_benchmark")
    bf16_weights = block_linear_weights(pipe) if settings["approx_fp8_linear"] else {}
    cfg = with_values(VideoPainterModelConfig(name="videopainter"), num_inference_steps=args.steps,
                      height=frames.shape[1], width=frames.shape[2], **settings)
    inpainter = VideoPainter(cfg, pipe=pipe)
    warm_up_clip_s = None
    if settings["compile_vae"]:   # a whole clip first: the VAE compiles for every shape the clip meets
        start = time.perf_counter()
        inpainter.inpaint_clip(frames, masks, PROMPT, seed=0)
        warm_up_clip_s = time.perf_counter() - start
    encode_times = time_calls(pipe.vae, "encode", device)
    prompt_times = time_calls(pipe, "encode_prompt", device)
    transformer_timer = ForwardTimer(pipe.transformer, device)
    branch_timer = ForwardTimer(pipe.branch, device)
    timings: dict = {}
    timed_decode(pipe, timings, device)
    step_ends: list[float] = []
    loop_peak: dict = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    weights_gib = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else None
    start = time.perf_counter()

    def progress(step, total):
        if device.type == "cuda":
            torch.cuda.synchronize()
            if step == total:  # the denoising loop alone, before the VAE decode
                loop_peak["gib"] = torch.cuda.max_memory_allocated() / 2**30
        step_ends.append(time.perf_counter())

    result = inpainter.inpaint_clip(frames, masks, PROMPT, seed=0, progress=progress)
    seconds = time.perf_counter() - start
    del pipe.decode_latents, pipe.vae.encode, pipe.encode_prompt
    transformer_timer.remove()
    branch_timer.remove()
    remove_speed_options(pipe)
    for module, weight in bf16_weights.items():
        module.weight = weight
    torch.backends.cudnn.benchmark = False
    steps = np.diff(step_ends).tolist()
    compile_s = None
    if settings["compile_blocks"]:   # the first forwards compile: their excess over the median
        compile_s = sum(timer.times[0] - statistics.median(timer.times) for timer in (transformer_timer, branch_timer))
    # Outside the denoising loop (encodes, decode, T5, mask and frame work), steps at their median pace.
    outside_s = seconds - (compile_s or 0.0) - args.steps * statistics.median(steps) if steps else None
    exact = settings["approx_attention_reuse"] == 1 and not settings["approx_fp8_linear"]
    return {"mode": mode, "exact": exact, "compile_s": compile_s, "warm_up_clip_s": warm_up_clip_s,
            "vae_encode_s": encode_times, "encode_prompt_s": sum(prompt_times), "outside_loop_s": outside_s,
            "outside_share_of_50_step_clip": outside_s / (outside_s + 50 * statistics.median(steps)) if steps else None,
            "final_latents": timings.pop("latents"), "seconds_per_clip": seconds, "frames": int(len(result)),
            "step_s": summary(steps), "transformer_forward_s": summary(transformer_timer.times),
            "branch_forward_s": summary(branch_timer.times), "vae_decode_s": timings.get("vae_decode_s"),
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            "peak_until_last_step_gib": loop_peak.get("gib"), "allocated_before_gib": weights_gib,
            "text_encoder_gib": sum(p.numel() * p.element_size() for p in pipe.text_encoder.parameters()) / 2**30}


def run_stock(pipe, args, device, frames) -> dict:
    """Stock diffusers' I2V pipeline on the same models, end to end: seconds per clip and per step."""
    from diffusers import CogVideoXImageToVideoPipeline
    from PIL import Image

    pipe.remove_all_hooks()
    pipe.text_encoder_host = None
    pipe.to(device)
    pipe.vae.disable_slicing()
    pipe.vae.disable_tiling()
    stock = CogVideoXImageToVideoPipeline(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
                                          transformer=pipe.transformer, scheduler=pipe.scheduler)
    stock.set_progress_bar_config(disable=True)
    call = {"image": Image.fromarray(frames[0]), "prompt": PROMPT, "height": frames.shape[1],
            "width": frames.shape[2], "num_frames": len(frames), "guidance_scale": 6.0, "use_dynamic_cfg": True,
            "output_type": "np"}
    stock(**call, num_inference_steps=1, generator=torch.Generator().manual_seed(0))   # warm-up
    step_ends: list[float] = []

    def on_step_end(_pipe, step, timestep, tensors):
        if device.type == "cuda":
            torch.cuda.synchronize()
        step_ends.append(time.perf_counter())
        return {}

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    weights_gib = torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else None
    start = time.perf_counter()
    video = stock(**call, num_inference_steps=args.stock_steps, generator=torch.Generator().manual_seed(0),
                  callback_on_step_end=on_step_end).frames[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    steps = np.diff(step_ends).tolist()
    return {"mode": "stock_i2v end to end", "what": "T5, image encode, loop, decode to np", "steps": args.stock_steps,
            "seconds_per_clip": seconds, "frames": len(video), "step_s": summary(steps),
            "outside_loop_s": seconds - args.stock_steps * statistics.median(steps) if steps else None,
            "allocated_before_gib": weights_gib,
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None}


def print_table(report: dict) -> None:
    print(f"\n{report['device']}, {report['dtype']}, {report['frames']}x{report['height']}x{report['width']},"
          f" {report['steps']} steps, CFG 6")
    header = (f"{'mode':<36}{'s/clip':>9}{'s/step':>9}{'transf s':>10}{'branch s':>10}{'decode s':>10}"
              f"{'peak GiB':>10}")
    print(header + "\n" + "-" * len(header))

    def fmt(value, width=9, digits=2):
        return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"

    for row in report["modes"] + [report["stock"]]:
        print(f"{row['mode']:<36}{fmt(row.get('seconds_per_clip'))}{fmt(row['step_s'].get('median_s'), 9, 3)}"
              f"{fmt(row.get('transformer_forward_s', {}).get('median_s'), 10, 3)}"
              f"{fmt(row.get('branch_forward_s', {}).get('median_s'), 10, 3)}"
              f"{fmt(row.get('vae_decode_s'), 10)}{fmt(row.get('peak_gpu_gib'), 10)}")


def main(argv: list[str] | None = None) -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per clip (default 50)")
    parser.add_argument("--stock-steps", type=int, default=None,
                        help="steps of the stock yardstick (default: --steps)")
    parser.add_argument("--modes", default="resident,model_offload",
                        help="comma-separated: resident, resident+tiling, model_offload, sequential_offload; "
                             "none: the stock pipeline alone")
    parser.add_argument("--frames", type=int, default=49, help="frames per clip (4k+1, at most 49)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke run)")
    _common.add_out(parser, "videopainter_bench.json")
    args = parser.parse_args(argv)
    args.stock_steps = args.stock_steps or args.steps
    if min(args.steps, args.stock_steps) < 2:
        _common.refuse("--steps and --stock-steps need 2 or more (a step's time is the interval between two)")
    if not args.tiny:
        _common.require_cuda("--tiny runs tiny models on the CPU")

    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if device.type == "cpu" else getattr(torch, args.dtype)
    modes = [m for m in args.modes.split(",") if m and m != "none"]
    if device.type == "cpu" and modes:
        modes = [m for m in modes if m.startswith("resident")] or ["resident"]
    for mode in modes:
        try:
            parse_mode(mode)
        except ValueError as error:
            _common.refuse(f"--modes: {error}")
    height, width = (64, 96) if args.tiny else (480, 720)

    start = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((args.frames, height, width), dtype=bool)
    masks[:, height // 4: 3 * height // 4, width // 3: 2 * width // 3] = True
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "dtype": str(dtype), "frames": args.frames, "height": height, "width": width,
              "steps": args.steps, "stock_steps": args.stock_steps, "build_s": build_s,
              "transformer_params": sum(p.numel() for p in pipe.transformer.parameters()),
              "branch_params": sum(p.numel() for p in pipe.branch.parameters()),
              "text_encoder_params": sum(p.numel() for p in pipe.text_encoder.parameters()), "modes": []}
    reference = None
    for mode in modes:
        row = run_mode(pipe, mode, args, device, frames, masks)
        latents = row.pop("final_latents")
        reference = latents if reference is None else reference
        row["final_latents_rel_l2_vs_first_mode"] = float((latents - reference).norm() / reference.norm())
        report["modes"].append(row)
        print(json.dumps(row), flush=True)
    report["stock"] = run_stock(pipe, args, device, frames)
    stock_step = report["stock"]["step_s"]["median_s"]
    exact = [row for row in report["modes"] if row["exact"] and row["step_s"]]
    if exact:
        best = min(exact, key=lambda row: row["step_s"]["median_s"])
        report["exact_step_ratio_vs_stock"] = {"mode": best["mode"],
                                               "ratio": best["step_s"]["median_s"] / stock_step}
    _common.write_json(args.out, report)
    print_table(report)
    stock = report["stock"]
    print(f"\nstock end to end: {stock['seconds_per_clip']:.2f} s per clip at {stock['steps']} steps "
          f"(outside the loop {stock['outside_loop_s'] or 0:.2f} s)")
    if "exact_step_ratio_vs_stock" in report:
        ratio = report["exact_step_ratio_vs_stock"]
        print(f"exact step ratio vs stock: {ratio['ratio']:.2f} ({ratio['mode']})")
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
