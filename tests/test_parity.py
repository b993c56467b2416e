"""Parity with the original VideoPainter implementation on a tiny checkpoint.

``tests/data/parity/*.npz`` hold the original pipeline's inputs, intermediates and outputs
(float32, CPU) on the tiny tree committed beside them (``tiny-ckpt/``); their README documents how
they were made. Every quantity must match within 1e-4 on any x86 CPU.

PyTorch's CPU results depend on the processor: ATen, MKL and oneDNN each pick kernels by
instruction set (AVX2, AVX-512, AMX ...), and MKL's reductions by thread count, so the same
float32 computation differs by up to ~2e-4 between two CPUs. The reference was computed under
``PINNED_ENV`` (portable kernels, oneDNN off, one thread), and our side runs under the same
settings in a subprocess, so both sides use the same kernels on every machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vp_ray.config import Dtype, FirstFrameFill, VideoPainterModelConfig
from vp_ray.models.checkpoint import load_pipeline, tree_paths

DATA = Path(__file__).parent / "data" / "parity"
TREE = tree_paths(DATA / "tiny-ckpt")
CASES = ["inpaint49", "demo17"]
TOLERANCE = 1e-4
QUANTITIES = ["prompt_input_ids", "negative_input_ids", "prompt_embeds", "negative_prompt_embeds",
              "timesteps", "guidance_per_step", "rope_cos", "rope_sin", "image_latents", "video_latents",
              "noise", "mask_latents", "masked_video_latents", "branch_samples_step0", "noise_pred_step0",
              "scheduler_out_step0", "latents_step0", "final_latents", "frames"]
# Two windows of 17 frames chained: long34 (no overlap, 34 frames in, 33 out), long33 (windows
# sharing one frame, 33 in, 33 out), idlong33 (long33 with ID resampling, prev_clip_weight 0.5,
# and the tiny VideoPainterID LoRA; window 1's first two steps: the previous and the current mask),
# idlong33tiled (idlong33 with VAE slicing and tiling on, as the original's --long_video runs it).
LONG_QUANTITIES = ["image_latents_w0", "image_latents_w1", "timeline", "frames"]
ID_QUANTITIES = ["noise_pred_w0_step0", "noise_pred_w1_step0", "noise_pred_w1_step1", "image_latents_w1",
                 "timeline", "frames"]
LONG_CASES = {"long34": LONG_QUANTITIES, "long33": LONG_QUANTITIES, "idlong33": ID_QUANTITIES,
              "idlong33tiled": ID_QUANTITIES}
ID_LORA = DATA / "tiny-id-lora" / "pytorch_lora_weights.safetensors"
# Read when torch loads, so set before the subprocess starts; oneDNN is switched off in it.
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


def pin_numerics() -> None:
    """The in-process half of ``PINNED_ENV``: no oneDNN kernels, one thread."""
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ours(tmp_path_factory):
    """Our pipeline's quantities per case, under the npz key names, computed with pinned numerics:
    every case in one subprocess (each loads its own pipeline; one start of torch and diffusers)."""
    out = tmp_path_factory.mktemp("parity")
    computed: list[bool] = []

    def run(case: str) -> dict[str, np.ndarray]:
        if not computed:
            done = subprocess.run([sys.executable, __file__, str(out)], capture_output=True,
                                  text=True, env={**os.environ, **PINNED_ENV, "CUDA_VISIBLE_DEVICES": ""})
            assert done.returncode == 0, done.stderr[-3000:]
            computed.append(True)
        return dict(np.load(out / f"{case}.npz"))

    return run


def run_case(tree, ref) -> dict[str, np.ndarray]:
    pipe = load_pipeline(*tree, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    steps = int(ref["num_inference_steps"])
    per_step: dict[str, list] = {"guidance": [], "latents": []}

    def on_step_end(pipeline, step, timestep, tensors):
        per_step["guidance"].append(pipeline.guidance_scale)
        per_step["latents"].append(tensors["latents"])

    prompt = str(ref["prompt"])
    output = pipe(video=ref["video"], masks=ref["masks"] >= 128, image=ref["image"], prompt=prompt,
                  negative_prompt=str(ref["negative_prompt"]), num_inference_steps=steps,
                  guidance_scale=float(ref["guidance_scale"]), use_dynamic_cfg=True,
                  generator=torch.Generator().manual_seed(int(ref["seed"])), replace_gt=True, mask_add=True,
                  output_type="np", callback_on_step_end=on_step_end, return_intermediates=True)
    record = output.intermediates
    height, width, frames = int(ref["height"]), int(ref["width"]), int(ref["num_frames"])
    latent_frames = (frames - 1) // 4 + 1
    rope_cos, rope_sin = pipe._prepare_rotary_positional_embeddings(height, width, latent_frames, "cpu")

    def ids(text):
        return pipe.tokenizer([text], padding="max_length", max_length=226, truncation=True,
                              add_special_tokens=True, return_tensors="pt").input_ids

    values = {
        "prompt_input_ids": ids(prompt), "negative_input_ids": ids(str(ref["negative_prompt"])),
        "prompt_embeds": record["prompt_embeds"], "negative_prompt_embeds": record["negative_prompt_embeds"],
        "timesteps": pipe.scheduler.timesteps, "guidance_per_step": np.array(per_step["guidance"]),
        "rope_cos": rope_cos, "rope_sin": rope_sin, "image_latents": record["image_latents"],
        "video_latents": record["video_latents"], "noise": record["initial_latents"],
        "mask_latents": record["mask_latents"], "masked_video_latents": record["masked_video_latents"],
        "branch_samples_step0": torch.stack(record["branch_samples"]).unflatten(1, (2, -1)).squeeze(2),
        "noise_pred_step0": record["noise_pred"], "scheduler_out_step0": record["scheduler_output"],
        "latents_step0": per_step["latents"][0], "final_latents": record["latents"], "frames": output.frames,
    }
    return {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in values.items()}


def run_long_case(tree, ref) -> dict[str, np.ndarray]:
    """Two windows of 17 frames chained (``long_video.inpaint_windows``), as the original any-length
    pipeline does with ``stride=17``, ``prev_clip_weight=0``."""
    from vp_ray.models.long_video import inpaint_windows

    pipe = load_pipeline(*tree, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    if "prev_clip_weight" in ref:  # ID resampling with the tiny VideoPainterID LoRA
        from vp_ray.models.id_lora import load_id_lora

        load_id_lora(pipe, ID_LORA)
        pipe.enable_id_resampling(float(ref["prev_clip_weight"]))
    if "tile_overlap_factor_height" in ref:  # the inpainter's VAE savers, with the original's tiles
        from vp_ray.models.vae_tiling import enable_vae_tiling

        chosen = enable_vae_tiling(pipe.vae)
        tiles = {"tile_sample_min_height": pipe.vae.tile_sample_min_height,
                 "tile_sample_min_width": pipe.vae.tile_sample_min_width, **chosen}
        assert tiles == pytest.approx({key: float(ref[key]) for key in tiles}), tiles
    noise_preds: list[torch.Tensor] = []
    pipe.transformer.register_forward_hook(lambda module, args, output: noise_preds.append(output[0].float()))
    seen: dict[str, list] = {"image_latents": []}
    prepare, decode = pipe.prepare_latents, pipe.decode

    def prepare_latents(*args, **kwargs):
        out = prepare(*args, **kwargs)
        seen["image_latents"].append(out[1])
        return out

    def decode_timeline(latents, output_type):
        seen["timeline"] = latents.clone()
        return decode(latents, output_type)

    pipe.prepare_latents, pipe.decode = prepare_latents, decode_timeline
    overlap = int(ref["overlap"]) if "overlap" in ref else 0
    frames = inpaint_windows(
        pipe, ref["video"], ref["masks"] >= 128, int(ref["window"]), overlap=overlap, image=ref["image"],
        prompt=str(ref["prompt"]),
        negative_prompt=str(ref["negative_prompt"]), guidance_scale=float(ref["guidance_scale"]),
        generator=torch.Generator().manual_seed(int(ref["seed"])), num_inference_steps=int(ref["num_inference_steps"]),
        use_dynamic_cfg=True, replace_gt=True, mask_add=True)
    steps = int(ref["num_inference_steps"])
    values = {"image_latents_w0": seen["image_latents"][0], "image_latents_w1": seen["image_latents"][1],
              "timeline": seen["timeline"], "frames": frames, "noise_pred_w0_step0": noise_preds[0],
              "noise_pred_w1_step0": noise_preds[steps], "noise_pred_w1_step1": noise_preds[steps + 1]}
    return {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in values.items()}


def test_committed_tree_is_the_one_the_arrays_were_made_from():
    expected = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", (DATA / "README.md").read_text(), re.M))
    files = sorted(str(p.relative_to(DATA / "tiny-ckpt")) for p in (DATA / "tiny-ckpt").rglob("*") if p.is_file())
    assert sorted(expected) == files
    for relative, digest in expected.items():
        assert hashlib.sha256((DATA / "tiny-ckpt" / relative).read_bytes()).hexdigest() == digest, relative


@pytest.mark.slow
def test_inpainter_reproduces_the_original_single_clip_demo():
    """The production path (``VideoPainter.inpaint_clip``) makes the demo's call."""
    if not (DATA / "demo17.npz").exists():
        pytest.skip(f"no parity data: {DATA}/demo17.npz is absent")
    from vp_ray.models.videopainter import VideoPainter

    ref = np.load(DATA / "demo17.npz")
    base, branch = TREE
    inpainter = VideoPainter(VideoPainterModelConfig(
        name="tiny", base_model_path=str(base), branch_path=str(branch), dtype=Dtype.float32,
        num_inference_steps=int(ref["num_inference_steps"]), guidance_scale=float(ref["guidance_scale"]),
        first_frame_fill=FirstFrameFill.none, pad_short_clips=False))
    result = inpainter.inpaint_clip(ref["video"], ref["masks_raw"] > 0, str(ref["prompt"]), int(ref["seed"]))
    expected = np.round(ref["frames"] * 255.0)
    assert np.abs(result.astype(np.float64) - expected).max() <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("case", CASES)
def test_matches_the_original_implementation(case, quantity, ours):
    if not (DATA / f"{case}.npz").exists():
        pytest.skip(f"no parity data: {DATA / case}.npz is absent (see {DATA}/README.md)")
    expected = np.load(DATA / f"{case}.npz")[quantity]
    actual = ours(case)[quantity]
    assert actual.shape == expected.shape, f"{quantity}: shape {actual.shape} != {expected.shape}"
    diff = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= TOLERANCE, f"{case} {quantity}: max abs diff {diff:.3g} > {TOLERANCE}"


@pytest.mark.parametrize("case,quantity", [(case, quantity) for case, quantities in LONG_CASES.items()
                                            for quantity in quantities])
@pytest.mark.slow
def test_two_chained_windows_match_the_original_any_length_pipeline(case, quantity, ours):
    expected = np.load(DATA / f"{case}.npz")[quantity]
    actual = ours(case)[quantity]
    assert actual.shape == expected.shape, f"{quantity}: shape {actual.shape} != {expected.shape}"
    diff = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= TOLERANCE, f"{case} {quantity}: max abs diff {diff:.3g} > {TOLERANCE}"


if __name__ == "__main__":  # python tests/test_parity.py OUT_DIR (under PINNED_ENV): OUT_DIR/<case>.npz
    pin_numerics()
    for case in [*CASES, *LONG_CASES]:
        if (DATA / f"{case}.npz").exists():
            run = run_long_case if case in LONG_CASES else run_case
            np.savez(Path(sys.argv[1]) / f"{case}.npz", **run(TREE, np.load(DATA / f"{case}.npz")))
