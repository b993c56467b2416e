"""Parity with the original VideoPainter implementation on the tiny checkpoint.

``tests/data/parity/*.npz`` hold the original pipeline's inputs, intermediates and outputs
(float32, CPU) on the tree ``python -m vp_ray.ckpt tiny --seed 0`` writes; their README documents
how they were made. Every quantity must match within 1e-4.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vp_ray.models.checkpoint import load_pipeline
from vp_ray.models.tiny import ensure_tiny_tree

DATA = Path(__file__).parent / "data" / "parity"
CASES = ["inpaint49", "demo17"]
TOLERANCE = 1e-4
QUANTITIES = ["prompt_input_ids", "negative_input_ids", "prompt_embeds", "negative_prompt_embeds",
              "timesteps", "guidance_per_step", "rope_cos", "rope_sin", "image_latents", "video_latents",
              "noise", "mask_latents", "masked_video_latents", "branch_samples_step0", "noise_pred_step0",
              "scheduler_out_step0", "latents_step0", "final_latents", "frames"]


@pytest.fixture(scope="session")
def parity_tree(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny-ckpt"
    base, branch = ensure_tiny_tree(root, seed=0)
    # The arrays hold only for the exact tree they were made with (hashes listed in the README).
    readme = DATA / "README.md"
    expected = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|$", readme.read_text(), re.M)) \
        if readme.exists() else {}
    for relative, digest in expected.items():
        if (root / relative).exists():
            actual = hashlib.sha256((root / relative).read_bytes()).hexdigest()
            assert actual == digest, f"tiny tree file {relative} differs from the one the parity data used"
    return base, branch


@pytest.fixture(scope="session")
def ours(parity_tree):
    """Our pipeline's quantities per case, under the npz key names."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def run(case: str) -> dict[str, np.ndarray]:
        if case not in cache:
            cache[case] = run_case(parity_tree, np.load(DATA / f"{case}.npz"))
        return cache[case]

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


def test_inpainter_reproduces_the_original_single_clip_demo(parity_tree):
    """The production path (``VideoPainterInpainter.inpaint_clip``) makes the demo's call."""
    if not (DATA / "demo17.npz").exists():
        pytest.skip(f"no parity data: {DATA}/demo17.npz is absent")
    from vp_ray.models.videopainter import VideoPainterInpainter

    ref = np.load(DATA / "demo17.npz")
    base, branch = parity_tree
    inpainter = VideoPainterInpainter({
        "name": "tiny", "base_model_path": str(base), "branch_path": str(branch), "dtype": "float32",
        "num_inference_steps": int(ref["num_inference_steps"]),
        "guidance_scale": float(ref["guidance_scale"]),
        "use_dynamic_cfg": True, "negative_prompt": "", "first_frame_gt": True, "first_frame_fill": "none",
        "replace_gt": True, "mask_add": True, "pad_short_clips": False})
    result = inpainter.inpaint_clip(ref["video"], ref["masks_raw"] > 0, str(ref["prompt"]), int(ref["seed"]))
    expected = np.round(ref["frames"] * 255.0)
    assert np.abs(result.astype(np.float64) - expected).max() <= 1.0


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
