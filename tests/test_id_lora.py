"""The VideoPainterID LoRA loads through upstream diffusers at the original's scale (1.0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vp_ray.models.checkpoint import load_pipeline, tree_paths
from vp_ray.models.id_lora import ADAPTER, TARGETS, id_lora_path, load_id_lora, write_tiny_id_lora
from vp_ray.models.long_video import inpaint_windows
from vp_ray.models.tiny import ensure_tiny_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny-ckpt"
    ensure_tiny_tree(root)
    return root


def resampling_pipe(tree):
    """The tiny pipeline with ID resampling on (no LoRA: the attention path alone)."""
    pipe = load_pipeline(*tree_paths(tree), dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_id_resampling(0.5)
    return pipe


def windows_of_17(pipe, frames, masks, callback=None):
    """Final latents of ``frames`` inpainted in windows of 17 sharing one frame, 2 steps each."""
    return inpaint_windows(pipe, frames, masks, 17, overlap=1, prompt="a wall", num_inference_steps=2,
                           generator=torch.Generator().manual_seed(0), output_type="latent",
                           callback_on_step_end=callback)


def transformer_output(pipe):
    config = pipe.transformer.config
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 3, config.in_channels, 8, 12, generator=generator)
    text = torch.randn(1, config.max_text_seq_length, config.text_embed_dim, generator=generator)
    with torch.no_grad():
        return pipe.transformer(hidden_states=hidden, encoder_hidden_states=text,
                                timestep=torch.tensor([500]), return_dict=False)[0]


@pytest.mark.slow
def test_the_lora_adapts_every_attention_projection_at_scale_one(tree, tmp_path):
    base, branch = tree_paths(tree)
    pipe = load_pipeline(base, branch, "float32")
    before = transformer_output(pipe)
    path = write_tiny_id_lora(id_lora_path(tmp_path), pipe.transformer, rank=4)
    load_id_lora(pipe, path)

    config = pipe.transformer.peft_config[ADAPTER]
    assert config.r == 4 and config.lora_alpha == 4  # no alphas in the file: alpha = rank, scale 1.0
    for block in pipe.transformer.transformer_blocks:
        for target in TARGETS:
            layer = block.attn1.get_submodule(target)
            assert layer.scaling[ADAPTER] == 1.0
    after = transformer_output(pipe)
    assert not torch.allclose(before, after)
    # The update is exactly x A^T B^T on each projection: with the adapter off, the stock output again.
    pipe.transformer.disable_adapters()
    torch.testing.assert_close(transformer_output(pipe), before)


def test_a_missing_or_foreign_lora_file_is_refused(tree, tmp_path):
    from safetensors.torch import save_file

    base, branch = tree_paths(tree)
    pipe = load_pipeline(base, branch, "float32")
    with pytest.raises(FileNotFoundError, match="VideoPainterID LoRA not found"):
        load_id_lora(pipe, tmp_path / "nope.safetensors")
    from safetensors.torch import load_file

    full = load_file(str(write_tiny_id_lora(tmp_path / "full.safetensors", pipe.transformer)))
    save_file({k: v for k, v in full.items() if ".to_q." in k}, str(tmp_path / "q.safetensors"))
    with pytest.raises(ValueError, match="not a VideoPainterID LoRA"):
        load_id_lora(pipe, tmp_path / "q.safetensors")


def test_a_lora_of_many_blocks_is_checked_block_by_block(tree, tmp_path):
    """From 20 targets on, peft lists them as name suffixes (the full-size transformer's 168 read
    {to_q, to_k, to_v, to_out.0}): the check must still see that one block is not adapted."""
    from diffusers import CogVideoXTransformer3DModel
    from safetensors.torch import load_file, save_file

    from vp_ray.models.tiny import transformer_config

    pipe = load_pipeline(*tree_paths(tree), dtype="float32")
    pipe.register_modules(transformer=CogVideoXTransformer3DModel(**{**transformer_config(), "num_layers": 6}))
    full = load_file(str(write_tiny_id_lora(tmp_path / "full.safetensors", pipe.transformer)))
    save_file({k: v for k, v in full.items() if ".transformer_blocks.5." not in k}, str(tmp_path / "five.safetensors"))
    with pytest.raises(ValueError, match="4 of the 24 attention projections are not adapted "
                                         r"\(e.g. transformer_blocks.5.attn1.to_q\)"):
        load_id_lora(pipe, tmp_path / "five.safetensors")

    pipe.register_modules(transformer=CogVideoXTransformer3DModel(**{**transformer_config(), "num_layers": 6}))
    load_id_lora(pipe, tmp_path / "full.safetensors")
    assert len(pipe.transformer.peft_config[ADAPTER].target_modules) < 24   # the suffix form


def test_id_resampling_needs_mask_add_and_its_lora_file(tmp_path):
    from conftest import compose_config

    from vp_ray.errors import ConfigError
    from vp_ray.models import check_weights

    with pytest.raises(ConfigError, match="id_resampling=true needs model.mask_add=true"):
        compose_config(["model=videopainter", "model.id_resampling=true", "model.mask_add=false"])
    from vp_ray.tools.ckpt import main as ckpt_main

    assert ckpt_main(["tiny", "--root", str(tmp_path)]) == 0
    base, branch = tree_paths(tmp_path)
    cfg = compose_config(["model=videopainter", "model.id_resampling=true", f"model.base_model_path={base}",
                          f"model.branch_path={branch}", f"model.id_lora_path={id_lora_path(tmp_path)}"])
    with pytest.raises(ConfigError, match="VideoPainterID LoRA is missing"):
        check_weights(cfg.model)


@pytest.mark.slow
def test_id_resampling_holds_only_the_tokens_a_mask_keeps(tree):
    """Between windows, each block keeps its output at the tokens masked in the window just done
    or the next one, not all of them (parity with the original: tests/test_parity.py, idlong33)."""
    pipe = resampling_pipe(tree)
    frames = np.random.default_rng(0).integers(0, 256, (33, 64, 96, 3), dtype=np.uint8)
    masks = np.zeros((33, 64, 96), bool)
    masks[:17, 8:24, 8:24] = True     # window 0: top left; window 1 (frames 16..32): bottom right
    masks[16:, 40:56, 64:88] = True
    held = {}
    resampling, finish = pipe.id_resampling, pipe.id_resampling.finish_window

    def finish_window():
        held.update({index: tokens.shape for index, tokens in resampling._captured.items()})
        finish()

    resampling.finish_window = finish_window
    windows_of_17(pipe, frames, masks)
    text = pipe.transformer.config.max_text_seq_length
    both = pipe.video_tokens_masked(masks[:17]) | pipe.video_tokens_masked(masks[16:])
    assert len(held) == len(pipe.transformer.transformer_blocks)
    assert {shape[1] for shape in held.values()} == {int(both.sum())}
    assert 0 < int(both.sum()) < both.shape[1] < text + both.shape[1]


def test_a_middle_window_lets_go_of_the_previous_state_block_by_block(tree):
    """At a middle window's last step each block saves its output for the next window while the
    previous window's saved outputs are still in use: held together they would be two states."""
    pipe = resampling_pipe(tree)
    resampling, previous_tokens = pipe.id_resampling, pipe.id_resampling.previous_tokens
    held = []

    def counting(index, text_tokens, temb):
        if resampling.capture and resampling.saved is not None:
            held.append(len(resampling.saved) + len(resampling._captured))
        return previous_tokens(index, text_tokens, temb)

    resampling.previous_tokens = counting
    frames = np.random.default_rng(0).integers(0, 256, (49, 64, 96, 3), dtype=np.uint8)
    masks = np.zeros((49, 64, 96), bool)
    masks[:, 16:48, 24:72] = True
    windows_of_17(pipe, frames, masks)
    blocks = len(pipe.transformer.transformer_blocks)
    assert len(held) == blocks   # window 2 of 3, its last step, once per block
    assert max(held) == blocks


def test_after_a_failed_clip_release_memory_drops_the_saved_state_and_the_next_clip_is_unchanged(tree):
    from vp_ray.models.videopainter import VideoPainter

    pipe = resampling_pipe(tree)
    frames = np.random.default_rng(0).integers(0, 256, (33, 64, 96, 3), dtype=np.uint8)
    masks = np.zeros((33, 64, 96), bool)
    masks[:, 16:48, 24:72] = True
    before = windows_of_17(pipe, frames, masks)
    calls = []

    def fail_in_window_two(*args):
        calls.append(1)
        if len(calls) == 3:   # window 2, step 1: window 1's outputs are held
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return {}

    with pytest.raises(torch.OutOfMemoryError):
        windows_of_17(pipe, frames, masks, fail_in_window_two)
    state = pipe.id_resampling
    assert state.saved is not None and state.mask is not None
    inpainter = VideoPainter.__new__(VideoPainter)
    inpainter.pipe = pipe
    inpainter.release_memory()
    assert state.saved is None and state.mask is None and not state._captured
    torch.testing.assert_close(windows_of_17(pipe, frames, masks), before, rtol=0, atol=0)
