"""python -m vp_ray.tools.compare: the paper's metrics of an approximate run against the exact one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vp_ray.clip import video
from vp_ray.clip.outputs import clip_dir
from vp_ray.tools.compare import main as compare_main
from vp_ray.tools.compare import paper_metrics


def test_paper_metrics_are_taskevaluates_definitions_whole_frame_and_inside_the_hole():
    rng = np.random.default_rng(0)
    exact = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    masks = np.zeros((3, 32, 48), bool)
    masks[:, 8:24, 12:36] = True
    other = exact.copy()
    other[masks] = 255 - other[masks]
    scores = paper_metrics(exact, other, masks)
    inside = ((exact[masks].astype(float) - other[masks]) / 255) ** 2
    assert scores["hole_mse"] == pytest.approx(inside.mean())
    assert scores["paper_mse"] == pytest.approx(inside.sum() / exact.size)
    assert scores["paper_psnr"] > scores["hole_psnr"]
    assert np.isnan(scores["paper_lpips"])  # no LPIPS weights given
    assert paper_metrics(exact, exact, masks)["paper_psnr"] == np.inf


def test_compare_adds_the_paper_metrics_to_each_clip_and_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vp_ray.tools.compare.load_lpips_if_found", lambda: None)
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    masks = np.zeros((5, 32, 48), bool)
    masks[:, 8:24, 12:36] = True
    changed = base.copy()
    changed[masks] = changed[masks] // 2
    for name, result in (("exact", base), ("fast", changed)):
        folder = clip_dir(tmp_path / name, "c1")
        folder.mkdir(parents=True)
        video.write_video(folder / "result.mp4", result, 8)
        video.write_video(folder / "mask.mp4", np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1), 8)
        pd.DataFrame({"clip_id": ["c1"]}).to_parquet(tmp_path / name / "manifest.parquet")
    compare_main([str(tmp_path / "exact"), str(tmp_path / "fast")])
    row = pd.read_csv(tmp_path / "fast" / "compare" / "compare.csv").iloc[0]
    assert row.hole_psnr < row.paper_psnr and 0 < row.paper_ssim < 1 and row.hole_mse > row.paper_mse
    assert "the paper's metrics, OTHER against EXACT" in capsys.readouterr().out
