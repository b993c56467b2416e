"""Speed options: compiled blocks (exact, compiled once per actor, with ID resampling too; auto: where
the compile pays back), the compiled VAE (its resnet blocks; auto by windows per actor), attention
reuse (approximate, off by default), the settings they cannot be combined with, and the tool that
compares two runs."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

from tests.conftest import compose_config
from tests.test_pipeline import PROMPT, clip, tiny_cfg
from vp_ray.clip import video
from vp_ray.clip.outputs import clip_dir
from vp_ray.config import MemoryMode, VideoPainterModelConfig, output_settings, with_values
from vp_ray.errors import ConfigError
from vp_ray.models.checkpoint import load_pipeline
from vp_ray.models.compile_plan import (
    BREAK_EVEN_STEPS,
    FP8_BREAK_EVEN_STEPS,
    VAE_BREAK_EVEN_WINDOWS,
    decide,
    decide_vae,
    with_workload,
)
from vp_ray.models.id_lora import load_id_lora, write_tiny_id_lora
from vp_ray.models.long_video import inpaint_windows
from vp_ray.models.speed import compile_blocks, compile_vae
from vp_ray.models.tiny import TINY_HEIGHT, TINY_WIDTH, ensure_tiny_tree, transformer_config, vae_config
from vp_ray.models.videopainter import VideoPainter
from vp_ray.runtime import graph
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.tools import single
from vp_ray.tools.compare import compare_runs, summary
from vp_ray.tools.compare import main as compare_main


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    return ensure_tiny_tree(tmp_path_factory.getbasetemp() / "tiny-ckpt-speed")


class CountedAttention:
    """An attention processor that counts its calls (its signature is the one diffusers inspects)."""

    def __init__(self, processor):
        self.processor, self.calls = processor, 0

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        self.calls += 1
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)


def count_attention(inpainter) -> list[CountedAttention]:
    """Every backbone block's attention computations (calls of its processor) from now on."""
    counted = []
    for block in inpainter.pipe.transformer.transformer_blocks:
        counted.append(CountedAttention(block.attn1.processor))
        block.attn1.set_processor(counted[-1])
    return counted


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_result_and_compile_once_per_actor(tiny_tree):
    from torch._dynamo.utils import counters

    frames, masks = clip()
    eager = VideoPainter(tiny_cfg(tiny_tree))
    compiled = VideoPainter(tiny_cfg(tiny_tree, compile_blocks=True))
    torch._dynamo.reset()
    counters.clear()
    first = compiled.inpaint_clip(frames, masks, PROMPT, seed=1)
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2   # the backbone's blocks share a graph (the branch's may have its own)
    second = compiled.inpaint_clip(*clip(num_frames=97, seed=3), PROMPT, seed=2)   # two windows
    assert counters["stats"]["unique_graphs"] == graphs   # nothing compiled for a later clip or window
    assert np.abs(first.astype(int) - eager.inpaint_clip(frames, masks, PROMPT, seed=1)).max() <= 1
    assert len(second) == 97 and not np.array_equal(first, second[:49])


def deeper_tree(tiny_tree, root, num_layers: int):
    """The tiny tree with a backbone of ``num_layers`` blocks (random weights)."""
    base, branch = tiny_tree
    deeper = root / "deeper" / base.name
    shutil.copytree(base, deeper)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformer = CogVideoXTransformer3DModel(**{**transformer_config(), "num_layers": num_layers})
    transformer.save_pretrained(deeper / "transformer")
    return deeper, branch


def id_resampling_pipe(tree, lora_dir, compiled: bool):
    """The tiny pipeline with a tiny VideoPainterID LoRA and ID resampling on, blocks compiled or not."""
    pipe = load_pipeline(*tree, dtype="float32")
    pipe.set_progress_bar_config(disable=True)
    load_id_lora(pipe, write_tiny_id_lora(lora_dir / "pytorch_lora_weights.safetensors", pipe.transformer))
    pipe.enable_id_resampling(0.5)
    if compiled:
        compile_blocks(pipe)
    return pipe


def two_windows(pipe) -> torch.Tensor:
    """Final latents of 33 frames in two windows of 17 (the second attends to the first's block outputs)."""
    frames = np.random.default_rng(0).integers(0, 256, (33, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((33, TINY_HEIGHT, TINY_WIDTH), bool)
    masks[:, 16:48, 24:72] = True
    return inpaint_windows(pipe, frames, masks, 17, overlap=1, prompt=PROMPT, num_inference_steps=2,
                           generator=torch.Generator().manual_seed(0), output_type="latent")


@pytest.mark.slow
def test_compiled_id_resampling_gives_the_eager_result_and_its_blocks_share_their_graphs(tiny_tree, tmp_path):
    """The blocks' ID state reaches the compiled graphs as tensors: a backbone of twice the blocks
    compiles nothing more. Latents within the parity tests' 1e-4 (float32 rounding; far below a grey
    level of the decoded frames)."""
    from torch._dynamo.utils import counters

    eager = two_windows(id_resampling_pipe(tiny_tree, tmp_path / "lora", compiled=False))
    torch._dynamo.reset()
    counters.clear()
    compiled = id_resampling_pipe(tiny_tree, tmp_path / "lora", compiled=True)
    torch.testing.assert_close(two_windows(compiled), eager, rtol=1e-4, atol=1e-4)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    blocks = len(compiled.transformer.transformer_blocks)
    deeper = id_resampling_pipe(deeper_tree(tiny_tree, tmp_path, 2 * blocks), tmp_path / "lora-deeper",
                                compiled=True)
    assert len(deeper.transformer.transformer_blocks) == 2 * blocks
    two_windows(deeper)
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("settings, cuda, choice", [
    ({"steps_per_actor": 1000}, False, "off: auto, no GPU"),   # CPU tests never compile
    ({"steps_per_actor": 50}, True, f"off: auto, 50 steps per actor < {BREAK_EVEN_STEPS}"),   # one default clip
    ({"steps_per_actor": 100}, True, f"on: auto, 100 steps per actor >= {BREAK_EVEN_STEPS}"),   # two
    ({}, True, "off: auto, steps per actor unknown"),
    ({"steps_per_actor": 1000, "memory_mode": MemoryMode.sequential_offload}, True,
     "off: auto, not with memory_mode=sequential_offload"),
    ({"steps_per_actor": 1000, "approx_attention_reuse": 2}, True,
     "off: auto, not with approx_attention_reuse=2"),
    ({"steps_per_actor": 1000, "pad_short_clips": False}, True,
     "off: auto, pad_short_clips=false (each clip length would compile apart)"),
    ({"steps_per_actor": 1000, "id_resampling": True}, True,
     f"on: auto, 1000 steps per actor >= {BREAK_EVEN_STEPS}"),
    ({"steps_per_actor": 200, "approx_fp8_linear": True}, True, "off: auto, 200 steps per actor < 316"),
    ({"compile_blocks": True}, False, "on: compile_blocks=true"),
    ({"compile_blocks": False, "steps_per_actor": 1000}, True, "off: compile_blocks=false"),
])
def test_auto_compiles_on_a_gpu_where_the_compile_pays_back(settings, cuda, choice):
    assert BREAK_EVEN_STEPS == 55   # 20 s of compiling / 0.37 s saved per step (compile_plan.py)
    assert FP8_BREAK_EVEN_STEPS == 316   # FP8 projections: 249 s / 0.79 s
    assert decide(VideoPainterModelConfig(name="videopainter", **settings), cuda).describe() == choice


@pytest.mark.parametrize("settings, cuda, choice", [
    ({"steps_per_actor": 100_000}, False, "off: auto, no GPU"),
    ({"steps_per_actor": 50}, True, f"off: auto, 1 windows per actor < {VAE_BREAK_EVEN_WINDOWS}"),   # one clip
    ({"steps_per_actor": 4100}, True, f"off: auto, 82 windows per actor < {VAE_BREAK_EVEN_WINDOWS}"),
    ({"steps_per_actor": 4101}, True, f"on: auto, 83 windows per actor >= {VAE_BREAK_EVEN_WINDOWS}"),
    ({"steps_per_actor": 830, "num_inference_steps": 10}, True, "on: auto, 83 windows per actor >= 83"),
    ({}, True, "off: auto, windows per actor unknown"),
    ({"steps_per_actor": 100_000, "memory_mode": MemoryMode.sequential_offload}, True,
     "off: auto, not with memory_mode=sequential_offload"),
    ({"steps_per_actor": 100_000, "approx_attention_reuse": 2}, True,   # no clash: reuse is the backbone's
     "on: auto, 2000 windows per actor >= 83"),
    ({"compile_vae": True}, False, "on: compile_vae=true"),
    ({"compile_vae": False, "steps_per_actor": 100_000}, True, "off: compile_vae=false"),
])
def test_auto_compiles_the_vae_on_a_gpu_where_the_compile_pays_back(settings, cuda, choice):
    assert VAE_BREAK_EVEN_WINDOWS == 83   # 196 s of compiling / 2.37 s saved per window (compile_plan.py)
    assert decide_vae(VideoPainterModelConfig(name="videopainter", **settings), cuda).describe() == choice


def test_the_compiled_vae_refuses_sequential_offload():
    with pytest.raises(ConfigError, match="model.compile_vae=true cannot be combined with "
                                          "model.memory_mode=sequential_offload"):
        compose_config(["model=tiny", "model.compile_vae=true", "model.memory_mode=sequential_offload"])
    assert compose_config(["model=tiny", "model.memory_mode=sequential_offload"]).model.compile_vae == "auto"


def test_the_compiled_vae_traces_every_resnet_block_and_gives_the_eager_result(monkeypatch):
    """``compile_vae`` puts each resnet block of the encoder and decoder under torch.compile, whole (one
    graph per shape, no break). Dynamo's eager backend here: the graphs are traced as on a GPU, not
    built by inductor, which takes minutes on the CPU (bench/vae_probe.py measures the real thing)."""
    from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXResnetBlock3D
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**vae_config()).eval()
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1

    def run():
        with torch.no_grad():
            return vae.decode(vae.encode(video).latent_dist.mean).sample

    eager = run()
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, dynamic, options: compile_(
        fn, dynamic=dynamic, backend="eager", fullgraph=True))   # fullgraph: a break would raise
    torch._dynamo.reset()
    counters.clear()
    compile_vae(vae, dynamic=False)
    blocks = [m for coder in (vae.encoder, vae.decoder) for m in coder.modules()
              if isinstance(m, CogVideoXResnetBlock3D)]
    assert blocks and all("forward" in block.__dict__ for block in blocks)
    assert torch.equal(run(), eager)
    assert counters["stats"]["unique_graphs"] >= 2   # at least the encoder's and the decoder's shapes
    traced = counters["stats"]["unique_graphs"]
    run()
    assert counters["stats"]["unique_graphs"] == traced   # the same shapes again: nothing new


def test_an_actor_compiles_its_vae_as_decided_and_says_so(tiny_tree, monkeypatch):
    compiled = []
    monkeypatch.setattr("vp_ray.models.videopainter.compile_vae",
                        lambda vae, dynamic: compiled.append((vae, dynamic)))
    pipe = load_pipeline(*tiny_tree, dtype="float32")
    assert VideoPainter(tiny_cfg(tiny_tree), pipe=pipe).compiled == "off: auto, no GPU; VAE off: auto, no GPU"
    assert not compiled
    actor = VideoPainter(tiny_cfg(tiny_tree, compile_vae=True), pipe=pipe)
    assert compiled == [(pipe.vae, False)]   # static shapes: a graph per shape, the fastest (RESULTS)
    assert actor.compiled == "off: auto, no GPU; VAE on: compile_vae=true"


def test_the_driver_estimates_the_steps_of_each_inpainting_actor():
    cfg = compose_config(["model=videopainter"])   # 50 steps; 6 s at 8 fps: 49 frames, one window
    assert cfg.model.compile_blocks == "auto"
    assert with_workload(cfg, clips=1, actors=1).model.steps_per_actor == 50
    assert with_workload(cfg, clips=9, actors=4).model.steps_per_actor == 3 * 50   # the busiest actor
    twelve_seconds = dataclasses.replace(cfg, max_seconds=12.0)   # 97 frames: two windows
    assert with_workload(twelve_seconds, clips=2, actors=1).model.steps_per_actor == 2 * 2 * 50
    assert with_workload(cfg, clips=1, actors=1, frames=150).model.steps_per_actor == 4 * 50   # 4 windows
    pools = {InpaintClips: {"compute": ray.data.ActorPoolStrategy(size=2)}}
    assert graph.with_compile_workload(cfg, 10, pools).model.steps_per_actor == 5 * 50
    classic = compose_config(["model=classic"])
    assert with_workload(classic, clips=10, actors=1) is classic   # nothing to compile


def test_the_single_video_command_plans_by_its_clips_length(tmp_path):
    source = np.zeros((30, 32, 48, 3), np.uint8)
    video.write_video(tmp_path / "in.mp4", source, 24.0)
    cfg = compose_config(["model=videopainter"])
    assert single.clip_frames(cfg, str(tmp_path / "in.mp4")) == 10   # 30 frames at 24 fps -> 8 fps
    assert single.clip_frames(dataclasses.replace(cfg, max_seconds=0.5), str(tmp_path / "in.mp4")) == 5
    assert single.clip_frames(cfg, str(tmp_path / "missing.mp4")) is None   # prepare will say why


@pytest.mark.parametrize("value", ["true", "false", "auto"])
def test_compiling_leaves_the_fingerprint_as_earlier_runs_made_it(value):
    """Compiled results equal eager ones within float rounding: a resumed run keeps its clips whatever
    auto chooses, and clips of runs before auto (compile_blocks=false) keep theirs."""
    settings = output_settings(compose_config(["model=tiny", f"model.compile_blocks={value}"]))
    assert settings == output_settings(compose_config(["model=tiny"]))
    assert settings["model"]["compile_blocks"] is False


def test_compile_blocks_is_true_false_or_auto():
    with pytest.raises(ConfigError, match="model.compile_blocks=yes: must be true, false or auto"):
        compose_config(["model=tiny", "model.compile_blocks=yes"])


@pytest.mark.slow
def test_attention_reuse_skips_steps_inside_its_range_and_starts_afresh_each_clip(tiny_tree):
    """4 steps (timesteps 999, 749, 499, 249), reuse every 2nd step inside (100, 800): each attention
    computes at 999 (outside), reuses at 749, computes at 499, reuses at 249. Same clip, same
    result, whatever ran before."""
    frames, masks = clip()
    cfg = tiny_cfg(tiny_tree, num_inference_steps=4)
    exact = VideoPainter(cfg)
    fast = VideoPainter(with_values(cfg, approx_attention_reuse=2))
    counted = count_attention(fast)
    once = fast.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert [processor.calls for processor in counted] == [2] * len(counted)
    fast.inpaint_clip(*clip(seed=5), PROMPT, seed=4)
    assert np.array_equal(fast.inpaint_clip(frames, masks, PROMPT, seed=1), once)
    assert not np.array_equal(once, exact.inpaint_clip(frames, masks, PROMPT, seed=1))   # approximate


@pytest.mark.parametrize("clash", ["model.memory_mode=sequential_offload", "model.approx_attention_reuse=2"])
def test_compiled_blocks_refuse_what_they_cannot_run_with(clash):
    with pytest.raises(ConfigError, match=f"model.compile_blocks=true cannot be combined with {clash}"):
        compose_config(["model=tiny", "model.compile_blocks=true", clash])
    assert compose_config(["model=tiny", clash]).model.compile_blocks == "auto"   # auto: off there


def test_compiled_blocks_run_with_id_resampling():
    cfg = compose_config(["model=tiny", "model.compile_blocks=true", "model.id_resampling=true"])
    assert cfg.model.compile_blocks is True


@pytest.mark.parametrize("bad", ["[800,100]", "[100]", "[-1,800]"])
def test_attention_reuse_range_is_checked_at_compose(bad):
    with pytest.raises(ConfigError, match="approx_attention_reuse_timesteps"):
        compose_config(["model=tiny", f"model.approx_attention_reuse_timesteps={bad}"])


@pytest.fixture
def fp8_on_cpu(monkeypatch):
    """torchao's FP8 quantisation on the CPU: its GPU checks pass (the matmul then runs through
    torchao's dequantising fallback, the conversion and the wiring are the same)."""
    pytest.importorskip("torchao")
    import torchao.quantization.quant_api as quant_api

    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)
    monkeypatch.setattr("vp_ray.models.videopainter.require_fp8_gpu", lambda device: None)


@pytest.mark.slow
def test_fp8_converts_the_blocks_projections_and_only_those(tiny_tree, fp8_on_cpu):
    from torchao.quantization import Float8Tensor

    frames, masks = clip()
    cfg = tiny_cfg(tiny_tree, dtype="bfloat16")
    exact = VideoPainter(cfg).inpaint_clip(frames, masks, PROMPT, seed=1)
    fp8 = VideoPainter(with_values(cfg, approx_fp8_linear=True))
    for model in (fp8.pipe.transformer, fp8.pipe.branch):
        kinds = {name: isinstance(module.weight, Float8Tensor) for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Linear)}
        converted = {name for name, yes in kinds.items() if yes}
        assert converted == {name for name in kinds if name.startswith("transformer_blocks.")
                             and ".norm" not in name}
        assert any(name.endswith("attn1.to_q") for name in converted)
        assert any(name.endswith("ff.net.2") for name in converted)
    result = fp8.inpaint_clip(frames, masks, PROMPT, seed=1)
    assert result.shape == exact.shape and not np.array_equal(result, exact)   # approximate
    difference = np.abs(result.astype(int) - exact)
    assert difference[~masks].mean() < difference[masks].mean()


def test_fp8_needs_a_gpu_of_compute_capability_8_9():
    from vp_ray.models.speed import require_fp8_gpu

    with pytest.raises(RuntimeError, match="compute capability 8.9 or newer.*no GPU"):
        require_fp8_gpu(torch.device("cpu"))


@pytest.mark.parametrize("clash", ["model.dtype=float32", "model.id_resampling=true",
                                   "model.memory_mode=sequential_offload"])
def test_fp8_refuses_what_it_cannot_run_with(clash):
    with pytest.raises(ConfigError, match=f"model.approx_fp8_linear=true cannot be combined with {clash}"):
        compose_config(["model=tiny", "model.dtype=bfloat16", "model.approx_fp8_linear=true", clash])


def test_fp8_with_bfloat16_composes():
    cfg = compose_config(["model=tiny", "model.dtype=bfloat16", "model.approx_fp8_linear=true"])
    assert cfg.model.approx_fp8_linear


def write_run(output_dir, results: dict[str, np.ndarray], masks: np.ndarray) -> None:
    """An output folder as a run leaves it, for what the comparison reads."""
    for clip_id, result in results.items():
        folder = clip_dir(output_dir, clip_id)
        folder.mkdir(parents=True)
        video.write_video(folder / "result.mp4", result, 8)
        video.write_video(folder / "mask.mp4", np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1), 8)
    pd.DataFrame({"clip_id": list(results)}).to_parquet(output_dir / "manifest.parquet")


def test_compare_scores_each_clip_both_runs_hold_and_shows_them_side_by_side(tmp_path, capsys):
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (9, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    base = rng.integers(0, 256, (9, TINY_HEIGHT, TINY_WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((9, TINY_HEIGHT, TINY_WIDTH), bool)
    masks[:, 16:48, 24:64] = True
    changed = base.copy()
    changed[masks] = 255 - changed[masks]   # only the inpainted region differs
    write_run(tmp_path / "exact", {"same": same, "changed": base, "only-exact": base}, masks)
    write_run(tmp_path / "fast", {"same": same, "changed": changed}, masks)

    compare_main([str(tmp_path / "exact"), str(tmp_path / "fast")])
    table = pd.read_csv(tmp_path / "fast" / "compare" / "compare.csv").set_index("clip_id")
    assert sorted(table.index) == ["changed", "same"]
    assert table.loc["same", "ssim"] == pytest.approx(1.0, abs=1e-3) and table.loc["same", "psnr"] > 40
    changed_scores = table.loc["changed"]
    assert changed_scores.psnr_inpainted < 15 and changed_scores.psnr_inpainted + 5 < changed_scores.psnr
    assert table.loc["changed", "ssim"] < 0.9
    side_by_side, _ = video.read_video(tmp_path / "fast" / "compare" / "videos" / "changed.mp4")
    assert side_by_side.shape == (9, TINY_HEIGHT, 3 * TINY_WIDTH, 3)
    assert "2 clips compared" in capsys.readouterr().out


def test_compare_refuses_a_folder_without_a_finished_run(tmp_path):
    with pytest.raises(SystemExit, match="holds no manifest.parquet"):
        compare_runs(tmp_path, tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_compare_judges_an_approximate_run_against_the_exact_one(ray_local, tmp_path):
    """End to end: a demo clip through the tiny VideoPainter, exact and with attention reuse (2 steps:
    the attention computed at 999 is reused at 499)."""
    common = [f"dataset.path={tmp_path / 'demo'}", "dataset.demo_num_clips=1", "model=tiny",
              f"model.base_model_path={tmp_path / 'ckpt/CogVideoX-5b-I2V'}", "model.num_inference_steps=2",
              f"model.branch_path={tmp_path / 'ckpt/VideoPainter/checkpoints/branch'}", "report=false"]
    for name, extra in (("exact", []), ("fast", ["model.approx_attention_reuse=2"])):
        result = graph.run(compose_config([*common, *extra, f"output_dir={tmp_path / name}"]))
        assert result.ledger.done_count == 1
    table = compare_runs(tmp_path / "exact", tmp_path / "fast", tmp_path / "compare")
    assert len(table) == 1 and table.psnr.between(0, 100).all() and (table.ssim < 1).all()
    assert "1 clips compared" in summary(table)
