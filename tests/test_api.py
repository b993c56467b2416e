"""The Python API (``vp_ray.VideoPainter``): any size and length in and out, per-call ID resampling and
overlap, decoding without gradients, clear errors, the README's example, and the batch job's result."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vp_ray.clip import video, workdir
from vp_ray.clip.masks import save_vpdata_masks
from vp_ray.errors import ConfigError
from vp_ray.models.id_lora import id_lora_path, write_tiny_id_lora
from vp_ray.models.tiny import TINY_HEIGHT, TINY_WIDTH, ensure_tiny_tree
from vp_ray.models.videopainter import VideoPainter
from vp_ray.tools import single

README = Path(__file__).resolve().parents[1] / "README.md"
PROMPT = "a clean road scene"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "tiny-ckpt"
    ensure_tiny_tree(root)
    return root


@pytest.fixture(scope="module")
def painter(tiny_root):
    return VideoPainter.from_pretrained(tiny_root, dtype="float32", num_inference_steps=2)


def clip(num_frames: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, height, width), dtype=bool)
    masks[:, height // 4:3 * height // 4, width // 4:3 * width // 4] = True
    return frames, masks


def test_import_vp_ray_stays_light_and_exports_the_api():
    code = ("import sys, vp_ray; assert 'torch' not in sys.modules, 'torch imported'; "
            "from vp_ray.models.videopainter import VideoPainter; assert vp_ray.VideoPainter is VideoPainter")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_from_pretrained_takes_the_checkpoints_frame_and_the_batch_jobs_settings(painter, tiny_root):
    assert (painter.cfg["height"], painter.cfg["width"]) == (TINY_HEIGHT, TINY_WIDTH)
    assert painter.cfg["num_inference_steps"] == 2 and painter.cfg["dtype"] == "float32"
    assert not painter.has_id_lora and painter.memory_plan == "resident"
    with pytest.raises(ConfigError, match="memory_mode: Invalid value 'fast'"):
        VideoPainter.from_pretrained(tiny_root, memory_mode="fast")
    with pytest.raises(ConfigError, match="Key 'num_inference_step' not in"):
        VideoPainter.from_pretrained(tiny_root, num_inference_step=2)
    with pytest.raises(ValueError, match="base_model_path cannot be given as settings"):
        VideoPainter.from_pretrained(tiny_root, base_model_path="elsewhere")
    with pytest.raises(ConfigError, match="checkpoint incomplete"):
        VideoPainter.from_pretrained(tiny_root / "nothing-here")


@pytest.mark.parametrize("make, error, message", [
    (lambda f, m: (f.astype(np.float32), m), TypeError, r"video: expected a uint8 .* got float32"),
    (lambda f, m: (f[..., 0], m), TypeError, r"video: expected a uint8 numpy array \[T, H, W, 3\]"),
    (lambda f, m: (f, m.astype(np.uint8)), TypeError, r"masks: expected a bool .* got uint8"),
    (lambda f, m: (f, m[:, :-1]), ValueError, r"masks \(5, 49, 70\) do not match the video's frames \(5, 50, "),
    (lambda f, m: (f[:0], m[:0]), ValueError, r"video: no frames"),
    (lambda f, m: (f, np.zeros_like(m)), ValueError, r"masks: empty on every frame"),
])
def test_bad_input_gets_one_clear_error(painter, make, error, message):
    video_in, masks_in = make(*clip(5, 50, 70))
    with pytest.raises(error, match=message):
        painter.inpaint(video_in, masks_in, PROMPT)


@pytest.mark.parametrize("option, message", [
    ({"overlap": 2}, "overlap 2: consecutive windows share 0 or 1 frames"),
    ({"resize_mode": "squash"}, "resize mode 'squash' is not stretch, pad or crop"),
    ({"preprocess": "pil"}, "preprocess 'pil' is not one of reference, opencv"),
    ({"id_resampling": True}, "id_resampling=True needs the VideoPainterID LoRA"),
    ({"num_inference_steps": 0}, "num_inference_steps 0: expected an integer >= 1"),
])
def test_bad_options_get_one_clear_error(painter, option, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        painter.inpaint(*clip(5, 50, 70), PROMPT, **option)


@pytest.mark.slow
@pytest.mark.parametrize("num_frames, height, width, resize_mode, overlap", [
    (1, 33, 47, "crop", 1),       # one frame, odd sizes: mirrored to a window of 49
    (50, 50, 70, "stretch", 1),   # two windows sharing a frame (97, cut back to 50)
    (53, 97, 41, "pad", 0),       # two windows of 49 as the reference chains them (98, cut back to 53)
])
def test_any_size_and_length_comes_back_at_the_input_size(painter, num_frames, height, width, resize_mode,
                                                          overlap):
    frames, masks = clip(num_frames, height, width)
    steps = []
    out = painter.inpaint(frames, masks, PROMPT, seed=1, resize_mode=resize_mode, overlap=overlap,
                          return_windows=True, progress=lambda step, total: steps.append((step, total)))
    assert out.frames.shape == frames.shape and out.frames.dtype == np.uint8
    windows = 1 if num_frames <= 49 else 2
    assert steps[-1] == (2 * windows, 2 * windows)
    assert [(w.start, w.stop) for w in out.windows] == \
        [(0, min(num_frames, 49)), (49 - overlap, num_frames)][:windows]
    assert all(w.frames.shape == (w.stop - w.start, height, width, 3) for w in out.windows)
    assert out.warnings == []
    if overlap == 0:
        # The reference's chaining blends window 0's last frame with window 1's first into one frame.
        assert np.array_equal(out.frames[48], out.frames[49])


@pytest.mark.slow
def test_id_resampling_is_per_call_on_then_off_is_off_alone(painter, tiny_root, tmp_path):
    """With the VideoPainterID LoRA loaded, a call with ID resampling leaves nothing behind: the next
    call without it gives what a VideoPainter that never loaded the LoRA gives."""
    write_tiny_id_lora(id_lora_path(tmp_path), painter.pipe.transformer)
    with_lora = VideoPainter.from_pretrained((tiny_root / "CogVideoX-5b-I2V", tiny_root / "VideoPainter" /
                                              "checkpoints" / "branch"), id_lora=id_lora_path(tmp_path),
                                             dtype="float32", num_inference_steps=2)
    stock = {name: type(processor) for name, processor in with_lora.pipe.transformer.attn_processors.items()}
    frames, masks = clip(17, 40, 60)
    off_alone = painter.inpaint(frames, masks, PROMPT, seed=1).frames
    on = with_lora.inpaint(frames, masks, PROMPT, seed=1).frames   # None: on, the LoRA is loaded
    off_after = with_lora.inpaint(frames, masks, PROMPT, seed=1, id_resampling=False).frames
    assert not np.array_equal(on, off_alone)
    assert np.array_equal(off_after, off_alone)
    assert np.array_equal(with_lora.inpaint(frames, masks, PROMPT, seed=1, id_resampling=True).frames, on)
    assert with_lora.pipe.id_resampling is None
    assert {name: type(p) for name, p in with_lora.pipe.transformer.attn_processors.items()} == stock


@pytest.mark.slow
def test_id_resampling_switched_per_call_keeps_the_compiled_graphs(painter, tiny_root, tmp_path):
    """Compiled blocks with ID resampling on for one call and off for the next (the batch job's actor
    switches it on for every clip): each way compiles once, later calls reuse the graphs."""
    from torch._dynamo.utils import counters

    write_tiny_id_lora(id_lora_path(tmp_path), painter.pipe.transformer)
    compiled = VideoPainter.from_pretrained(tiny_root, id_lora=id_lora_path(tmp_path), dtype="float32",
                                            num_inference_steps=2, compile_blocks=True)
    assert compiled.compiled.startswith("on")
    frames, masks = clip(9, 40, 60)
    torch._dynamo.reset()
    counters.clear()
    on = compiled.inpaint(frames, masks, PROMPT, seed=1).frames
    off = compiled.inpaint(frames, masks, PROMPT, seed=1, id_resampling=False).frames
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 2   # one way and the other
    assert np.array_equal(compiled.inpaint(frames, masks, PROMPT, seed=1).frames, on)
    assert np.array_equal(compiled.inpaint(frames, masks, PROMPT, seed=1, id_resampling=False).frames, off)
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_decode_runs_without_gradients(painter):
    """The pipeline's parameters require gradients; its decode (alone, and the API's per-window ones)
    must not record any: diffusers' conversion to numpy fails on a tensor that requires them."""
    assert any(p.requires_grad for p in painter.pipe.vae.parameters())
    latents = torch.randn(1, 13, 16, TINY_HEIGHT // 8, TINY_WIDTH // 8,
                          generator=torch.Generator().manual_seed(0))
    with torch.enable_grad():
        frames = painter.pipe.decode(latents, "np")
        out = painter.inpaint(*clip(9, 40, 60), PROMPT, return_windows=True)
        assert torch.is_grad_enabled()
    assert frames.shape == (49, TINY_HEIGHT, TINY_WIDTH, 3) and frames.dtype == np.float32
    assert out.windows[0].frames.shape == (9, 40, 60, 3)


def readme_example() -> str:
    """The Python block under the README's "From Python" heading."""
    text = README.read_text()
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tiny_root, tmp_path, monkeypatch):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    (tmp_path / "ckpt").symlink_to(tiny_root, target_is_directory=True)
    frames, _ = clip(20, 300, 400)
    video.write_video(tmp_path / "in.mp4", frames, 8.0)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})   # noqa: S102 - the README's own code, run as a user would
    clean, fps = video.read_video(tmp_path / "clean.mp4")
    assert clean.shape == frames.shape and fps == 8.0


@pytest.mark.slow
def test_the_single_video_command_gives_the_apis_result(painter, tiny_root, tmp_path, monkeypatch):
    """The batch job's stages (as the single-video command runs them) and the API, on the same clip
    and seed: the same frames, bit for bit (the stage's result brought back to the source's size)."""
    frames, masks = clip(20, 50, 70)
    video.write_video(tmp_path / "in.mp4", frames, 8.0)
    frames, _ = video.read_video(tmp_path / "in.mp4")   # what the prepare stage decodes
    save_vpdata_masks(tmp_path / "all_masks.npz", masks)
    results = []
    save_array = workdir.save_array

    def keep_result(work_dir, name, array):
        if name == workdir.RESULT:
            results.append(array)
        return save_array(work_dir, name, array)

    monkeypatch.setattr(workdir, "save_array", keep_result)
    base, branch = tiny_root / "CogVideoX-5b-I2V", tiny_root / "VideoPainter" / "checkpoints" / "branch"
    cfg = single.compose(["model=tiny", f"model.base_model_path={base}", f"model.branch_path={branch}",
                          "model.num_inference_steps=2", "qa.enabled=false",
                          f"output_dir={tmp_path / 'out'}"])
    row = single.run_single(cfg, {"clip_id": "clip", "video_path": str(tmp_path / "in.mp4"), "prompt": PROMPT,
                                  "mask_path": str(tmp_path / "all_masks.npz"), "mask_id": 1, "seed": 7})
    assert row["status"] == "ok", row["error"]
    placement = video.placement_for(50, 70, TINY_HEIGHT, TINY_WIDTH, cfg.resize_mode)
    batch = video.restore_frames(results[0], placement)

    api = painter.inpaint(frames, masks, PROMPT, seed=7, dilate_size=cfg.dilate_size,
                          resize_mode=cfg.resize_mode, preprocess=cfg.preprocess)
    assert cfg.dilate_size > 0 and results[0].shape == (20, TINY_HEIGHT, TINY_WIDTH, 3)
    assert np.array_equal(api.frames, batch)
