"""task=evaluate: each of the authors' surprises that eval.protocol=vpbench keeps (and hole does not),
the learned metrics' files, and one finished demo run scored through Ray, resumed, with a row for every
clip. (Agreement with the authors' code itself: test_evaluate_parity.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_config

from vp_ray.config import EvalConfig
from vp_ray.evaluation import frames as frame_prep
from vp_ray.evaluation import pixel, tiny
from vp_ray.evaluation.frames import ClipFrames, authors_stride_indices
from vp_ray.evaluation.i3d import InceptionI3d, random_i3d_state
from vp_ray.evaluation.learned import (
    LearnedMetrics,
    OpenAIClipVision,
    i3d_features,
    load_learned,
    temporal_consistency,
)
from vp_ray.evaluation.protocols import HOLE, VPBENCH, clip_means, overall
from vp_ray.evaluation.weights import find_weights

INPUTS = Path(__file__).parent / "data" / "eval_parity" / "inputs.npz"


def clip(result, reference, hole):
    return ClipFrames(result=result, reference=reference, hole=hole, indices=np.arange(len(result)))


@pytest.fixture(scope="module")
def demo_clip():
    """The parity fixture's source at 64x96, its hole, and its three fills."""
    from vp_ray.clip import masks as mask_io
    from vp_ray.clip import video

    inputs = np.load(INPUTS)
    placement = video.placement_for(72, 108, 64, 96, "stretch")
    hole = video.fit_masks(mask_io.dilate_masks(inputs["objects"], 4), placement)
    return video.fit_frames(inputs["source"], placement), hole, inputs["fills"]


# ----------------------------------------------------------------------------- the authors' surprises

def test_vpbench_reference_loses_one_level_on_values_1_to_63(demo_clip):
    reference, hole, _ = demo_clip
    lowered = frame_prep.REFERENCE_ROUND_TRIP.astype(int) - np.arange(256)
    assert (lowered[1:64] == -1).all() and (lowered[[0, *range(64, 256)]] == 0).all()
    # So a result equal to its reference is not perfect under vpbench; it is under hole.
    perfect = clip(reference, reference, hole)
    vpbench = clip_means(VPBENCH, VPBENCH.score(perfect, "", LearnedMetrics()).frames)
    assert np.isfinite(vpbench["psnr"]) and vpbench["mse"] > 0
    assert clip_means(HOLE, HOLE.score(perfect, "", LearnedMetrics()).frames)["hole_psnr"] == np.inf


def test_vpbench_masked_metrics_do_not_see_the_fill(demo_clip):
    """The authors black out the hole of the result only, and composite the reference around it:
    their 'masked' numbers are the same whatever fills the hole. hole's are not."""
    reference, hole, fills = demo_clip
    vpbench = [clip_means(VPBENCH, VPBENCH.score(clip(f, reference, hole), "", LearnedMetrics()).frames) for f in fills]
    for name in ("masked_psnr", "masked_ssim", "masked_mse", "masked_mae"):
        assert len({row[name] for row in vpbench}) == 1, name
    assert len({row["psnr"] for row in vpbench}) == 3
    inside = [clip_means(HOLE, HOLE.score(clip(f, reference, hole), "", LearnedMetrics()).frames)["hole_psnr"]
              for f in fills]
    assert len(set(inside)) == 3


def test_vpbench_replace_gt_scores_only_the_hole_hole_scores_the_result_as_written(demo_clip):
    reference, hole, fills = demo_clip
    drifted = fills[0].copy()
    drifted[~hole] = drifted[~hole] // 2  # the background darkened: the composite hides it
    scores = {name: clip_means(VPBENCH, VPBENCH.score(clip(f, reference, hole), "", LearnedMetrics()).frames)["psnr"]
              for name, f in (("clean", fills[0]), ("drifted", drifted))}
    assert scores["clean"] == scores["drifted"]
    without = VPBENCH.score(clip(drifted, reference, hole), "", LearnedMetrics(), replace=False)
    assert clip_means(VPBENCH, without.frames)["psnr"] < scores["drifted"] - 3
    out = [clip_means(HOLE, HOLE.score(clip(f, reference, hole), "", LearnedMetrics()).frames)["out_psnr"]
           for f in (fills[0], drifted)]
    assert out[1] < out[0] - 3


def test_vpbench_benchmark_weights_every_frame_hole_every_clip():
    rows = [{"psnr": 10.0, "hole_psnr": 10.0, "frames": 1}, {"psnr": 20.0, "hole_psnr": 20.0, "frames": 3}]
    assert overall(VPBENCH, rows)["psnr"] == pytest.approx(17.5)
    assert overall(HOLE, rows)["hole_psnr"] == pytest.approx(15.0)


def test_ssim_counts_the_border_pixels_as_torchmetrics_does_since_1_5():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(32, 48, 3))
    b = a.copy()
    b[:3] = rng.uniform(size=(3, 48, 3))  # only rows a cropped window border (5 pixels) would drop
    assert pixel.ssim(a, b) < 0.95
    assert pixel.ssim_map(a, b)[10:-10, 10:-10].mean() == pytest.approx(1.0)


@pytest.mark.slow  # full-size I3D
def test_vpbench_i3d_normalizes_each_video_by_itself_hole_by_the_files_statistics():
    model = InceptionI3d()
    state = random_i3d_state(0)
    model.load_state_dict(state)
    video = np.random.default_rng(1).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    before = [i3d_features(model, video, batch_statistics=b) for b in (True, False)]
    shifted = {k: v + 0.5 if k.endswith("running_mean") else v for k, v in state.items()}
    model.load_state_dict(shifted)
    after = [i3d_features(model, video, batch_statistics=b) for b in (True, False)]
    np.testing.assert_array_equal(before[0], after[0])
    assert not np.allclose(before[1], after[1])


def test_temporal_consistency_scales_frames_only_when_a_value_exceeds_1():
    model = OpenAIClipVision(tiny.tiny_openai_clip_state(0))
    rng = np.random.default_rng(2)
    dark = rng.integers(0, 2, (3, 32, 48, 3)).astype(np.uint8)   # every value <= 1: left as 0..1
    bright = dark.copy()
    bright[0, 0, 0, 0] = 2                                        # one value above 1: all divided by 255
    assert temporal_consistency(model, dark) != pytest.approx(temporal_consistency(model, bright), abs=1e-3)


def test_authors_stride_takes_every_int_fps_over_8th_frame():
    np.testing.assert_array_equal(authors_stride_indices(10, 30.0, 8.0, 4), [10, 13, 16, 19])
    np.testing.assert_array_equal(authors_stride_indices(0, 24.0, 8.0, 3), [0, 3, 6])


# ----------------------------------------------------------------------------- learned metrics' files

def eval_settings(tmp_path, folder=None) -> dict:
    base = Path(folder) if folder else tmp_path / "nothing"
    return {"lpips_backbone": str(base / "squeezenet1_1-b8a52dc0.pth"), "lpips_linear": str(base / "lpips_squeeze.pth"),
            "clip_score_model": str(base / "clip-vit-large-patch14"), "clip_temporal_model": str(base / "ViT-B-32.pt"),
            "i3d_model": str(base / "i3d_rgb_imagenet.pt")}


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    for name in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr("vp_ray.evaluation.weights._package_file", lambda *parts: None)


def test_missing_weights_name_the_file_that_would_enable_each_metric(tmp_path, empty_caches):
    found = find_weights(EvalConfig(**eval_settings(tmp_path)))
    assert not any(w.found for w in found.values())
    notices = [w.notice() for w in found.values()]
    assert [n.split(":")[0] for n in notices] == ["lpips", "clip_score", "temporal_consistency", "fvid"]
    for notice, name in zip(notices, ["squeezenet1_1-b8a52dc0.pth", "clip-vit-large-patch14", "ViT-B-32.pt",
                                      "i3d_rgb_imagenet.pt"]):
        assert name in notice and "\n" not in notice
    learned = load_learned(EvalConfig(**eval_settings(tmp_path)), torch.device("cpu"))
    assert (learned.lpips, learned.clip_score, learned.temporal, learned.i3d) == (None, None, None, None)


@pytest.mark.slow  # full-size I3D
def test_learned_metrics_load_from_files_in_the_released_layouts(tmp_path, empty_caches):
    tiny.write_all(tmp_path / "w")
    settings = EvalConfig(**eval_settings(tmp_path, tmp_path / "w"))
    assert all(w.found for w in find_weights(settings).values())
    learned = load_learned(settings, torch.device("cpu"))
    assert not learned.problems
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert learned.lpips.distance(image / 255.0, image[::-1] / 255.0) > 0
    assert learned.clip_score.score(image, "a garden") >= 0
    assert -1 <= temporal_consistency(learned.temporal, np.stack([image, image[::-1]])) <= 1
    assert i3d_features(learned.i3d, np.stack([image] * 2), True).shape == (1024,)
    (tmp_path / "w" / "i3d_rgb_imagenet.pt").write_bytes(b"not a checkpoint")
    broken = load_learned(settings, torch.device("cpu"))
    assert broken.i3d is None and len(broken.problems) == 1 and broken.problems[0].startswith("fvid: ")


# ----------------------------------------------------------------------------- the Ray job

def finish_run_in_process(cfg) -> None:
    """The run's stages on each row in this process (as the single-video command runs them): the
    clip folders a finished run leaves, without a second Ray job."""
    from vp_ray.clip import records
    from vp_ray.stages.lineup import preflight, run_context

    plan = records.plan_dataset(cfg)
    stages, run = preflight(cfg, plan), run_context(cfg, plan)
    for batch in records.read_batches(plan.path, plan.format):
        for raw in batch.to_pylist():
            rows = pd.DataFrame([raw])
            for stage in stages:
                rows = stage(cfg, plan, run)(rows)
            assert rows.iloc[0]["status"] == "ok", rows.iloc[0]["error"]


@pytest.mark.slow
def test_evaluate_scores_every_clip_of_a_finished_run_and_resumes(ray_local, tmp_path, empty_caches):
    from vp_ray.evaluation.runner import evaluate

    overrides = [f"output_dir={tmp_path / 'out'}", f"dataset.path={tmp_path / 'demo'}", "dataset.demo_num_clips=3",
                 "dataset.demo_num_frames=9", "model.height=64", "model.width=96", "dilate_size=4",
                 "cluster.num_cpus=2", "report=false"]
    finish_run_in_process(compose_config(overrides))
    missing = tmp_path / "out" / "clips" / "demo02_odd_size"
    for path in missing.iterdir():
        path.unlink()
    missing.rmdir()

    cfg = compose_config([*overrides, "task=evaluate", *(f"eval.{k}={v}" for k, v in eval_settings(tmp_path).items())])
    result = evaluate(cfg)
    table = pd.read_parquet(tmp_path / "out" / "evaluation.parquet")
    assert list(table.clip_id) == ["demo00_landscape", "demo01_portrait", "demo02_odd_size"]
    assert list(table.status) == ["scored", "scored", "unscorable"]
    assert "no result" in table.reason[2]
    assert (table.frames[:2] == 9).all() and (table.psnr[:2] > 25).all()
    assert table[["lpips", "clip_score", "temporal_consistency"]].isna().all().all()
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["scored"] == 2 and summary["frames"] == 18 and summary["metrics"]["lpips"] is None
    assert summary["metrics"]["psnr"] == pytest.approx(table.psnr[:2].mean())  # equal lengths
    assert set(summary["not_computed"]) == {"lpips", "clip_score", "temporal_consistency", "fvid"}
    assert len(result.notices) == 4

    cached = sorted((tmp_path / "out" / "evaluation" / "vpbench").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = evaluate(cfg)
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # nothing scored twice
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "evaluation.parquet"), table)
    assert again.scored == 2


def test_vpbench_masked_clip_scores_see_only_the_hole(demo_clip):
    reference, hole, fills = demo_clip
    seen = []

    class Recorder:
        def score(self, image, text):
            seen.append(image.copy())
            return 1.0

    VPBENCH.score(clip(fills[0][:1], reference[:1], hole[:1]), "a wall", LearnedMetrics(clip_score=Recorder()))
    whole, inside = seen
    assert inside[~hole[0]].max() == 0 and (inside[hole[0]] == whole[hole[0]]).all()


def test_an_identical_frame_makes_the_benchmark_psnr_infinite_and_evaluation_json_says_so():
    from vp_ray.evaluation.runner import benchmark

    rows = [{"psnr": float("inf"), "frames": 1}, {"psnr": 30.0, "frames": 1}]
    summary = benchmark(VPBENCH, rows, 2, [])
    assert summary["metrics"]["psnr"] is None and any(note.startswith("psnr is inf") for note in summary["notes"])
    json.dumps(summary, allow_nan=False)
