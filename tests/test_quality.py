"""Quality scores without ground truth: synthetic clips of known faults, each ranked worst and flagged by
its own score; a flagged clip is written as any other, marked suspect, and judged again on resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config

from vp_ray.clip import outputs, workdir
from vp_ray.clip.demo import background
from vp_ray.clip.masks import MaskRule
from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import new_row
from vp_ray.clip.video import placement_for
from vp_ray.config import QAConfig
from vp_ray.evaluation import qa
from vp_ray.runtime.graph import RunResult
from vp_ray.runtime.manifest import Ledger
from vp_ray.runtime.summary import format_summary
from vp_ray.stages import ClipSettings, RunContext
from vp_ray.stages.write import WriteClips

T, H, W = 17, 64, 96
THRESHOLDS = QAConfig()
FAULT_OF = {"qa_drift": "drift", "qa_flicker": "flicker", "qa_seam": "seam", "qa_object": "object"}


def scene(scale: int = 1):
    """A textured background panning one pixel a frame, a magenta disc crossing it, the disc's masks
    and the holes (the masks dilated by 8 pixels): source, clean background, holes, objects."""
    wide = background(H, W + T, np.random.default_rng(0))
    clean = np.stack([wide[:, t:t + W] for t in range(T)])
    yy, xx = np.mgrid[0:H, 0:W]
    objects = np.stack([(yy - 32) ** 2 + (xx - (25 + 3 * t)) ** 2 <= 10 ** 2 for t in range(T)])
    holes = np.stack([cv2.dilate(o.view(np.uint8), np.ones((17, 17), np.uint8)).astype(bool) for o in objects])
    source = np.where(objects[..., None], np.array([250, 20, 250], np.uint8), clean)
    if scale > 1:  # the same scene, bigger: the scores then run on frames shrunk back
        source, clean = (np.repeat(np.repeat(a, scale, axis=1), scale, axis=2) for a in (source, clean))
        holes, objects = (np.repeat(np.repeat(m, scale, axis=1), scale, axis=2) for m in (holes, objects))
    return source, clean, holes, objects


def fills(source, clean, holes, objects) -> dict[str, np.ndarray]:
    """Results of known quality: the true background, and one fault each."""
    level = clean.astype(np.int16)
    # Fades from nothing on the hole's outline to full strength 4 pixels in: a flicker with no seam.
    inner = np.stack([np.minimum(cv2.distanceTransform(h.view(np.uint8), cv2.DIST_L2, 3) / 4, 1) for h in holes])
    alternating = 25 * (-1) ** np.arange(len(clean))[:, None, None]
    return {name: np.clip(fill, 0, 255).astype(np.uint8) for name, fill in {
        "clean": level,
        "flicker": level + (inner * alternating)[..., None].astype(np.int16),   # the hole +-25, frame by frame
        "object": np.where(objects[..., None], source, clean),                  # the object painted back
        "seam": level + 30 * holes[..., None],                                  # the hole 30 levels too bright
        "drift": level + np.array([20, -10, 15], np.int16),                     # the whole frame's colours moved
    }.items()}


@pytest.fixture(scope="module")
def scored():
    source, _, holes, objects = scene()
    return {name: qa.score_clip(source, fill, holes, objects) for name, fill in fills(*scene()).items()}


@pytest.mark.parametrize("score", list(qa.SCORES))
def test_each_score_ranks_its_fault_worst_and_the_clean_fill_best(scored, score):
    values = {case: scores[score] for case, scores in scored.items()}
    fault = FAULT_OF[score]
    assert max(values, key=values.get) == fault, values
    assert all(values["clean"] <= value * 1.01 + 1e-9 for value in values.values()), values  # ties within rounding
    assert values[fault] > 1.2 * max(v for case, v in values.items() if case != fault), values


def test_each_fault_is_flagged_by_its_own_score_and_no_other(scored):
    flagged = {case: qa.judge(scores, THRESHOLDS) for case, scores in scored.items()}
    assert flagged == {"clean": [], "flicker": ["flicker"], "object": ["object"], "seam": ["seam"],
                       "drift": ["drift"]}
    assert qa.describe(scored["seam"], ["seam"], THRESHOLDS) == f"seam {scored['seam']['qa_seam']:.2f} > 2"


def test_frames_shrunk_for_the_scores_still_show_each_fault():
    """At 3x the size with width=96, flicker, seam and object run on frames shrunk back to 64x96."""
    big = scene(scale=3)
    flagged = {case: qa.judge(qa.score_clip(big[0], fill, *big[2:], width=96), THRESHOLDS)
               for case, fill in fills(*big).items()}
    assert flagged == {"clean": [], "flicker": ["flicker"], "object": ["object"], "seam": ["seam"],
                       "drift": ["drift"]}


def test_a_score_that_cannot_be_measured_is_none():
    source, clean, holes, objects = scene()
    no_hole = qa.score_clip(source, clean, np.zeros_like(holes), np.zeros_like(objects))
    assert no_hole == {"qa_drift": pytest.approx(no_hole["qa_drift"]), "qa_flicker": None, "qa_seam": None,
                       "qa_object": None}
    assert qa.score_clip(source[:1], clean[:1], holes[:1], objects[:1])["qa_flicker"] is None
    # A grey object on grey: whether it came back cannot be told by its colours.
    grey = np.full_like(source, 128)
    assert qa.score_clip(grey, grey, holes, objects)["qa_object"] is None
    assert qa.judge({"qa_seam": None, "qa_drift": float("nan")}, THRESHOLDS) == []
    assert qa.judge({"qa_seam": 9.0}, dataclasses.replace(THRESHOLDS, max_seam=None)) == []


def prepared_clip(tmp_path, result, **qa_settings):
    """One clip of the scene as prepare and inpaint leave it, and the write stage to take it: (stage, row)."""
    source, _, holes, objects = scene()
    cfg = compose_config([f"output_dir={tmp_path}", "model.height=64", "model.width=96",
                          *(f"qa.{key}={value}" for key, value in qa_settings.items())])
    work = workdir.make_work_dir(tmp_path, "c")
    for name, array in ((workdir.FRAMES, source), (workdir.RESULT, result), (workdir.INDICES, np.arange(T))):
        workdir.save_array(work, name, array)
    workdir.store_masks(work, objects, holes)
    row = {**new_row(ClipRecord(clip_id="c", video_path="/v.mp4", mask_kind="npz")), "work_dir": str(work),
           "out_fps": 8.0, "num_frames": T, "source_height": H, "source_width": W}
    placement = placement_for(H, W, H, W)
    workdir.save_clip_info(work, workdir.ClipInfo(placement, MaskRule(0, False)))   # as prepare leaves it
    return WriteClips(cfg, None, RunContext(ClipSettings.of(cfg, [WriteClips]))), row


def write_clip(tmp_path, result, **qa_settings):
    """The write stage on one prepared clip of the scene, in this process: its row and meta.json."""
    stage, row = prepared_clip(tmp_path, result, **qa_settings)
    return stage.process(row), outputs.read_meta(tmp_path, "c")


def test_a_write_tried_again_after_it_committed_keeps_the_clip_and_its_record(tmp_path):
    """Ray tries a task again when the node it ran on is lost before its answer came back: the first
    try committed the clip and removed its work files; the second gives back the committed row."""
    stage, row = prepared_clip(tmp_path, fills(*scene())["seam"])
    work = Path(row["work_dir"])
    first = stage.process(dict(row))
    meta = (outputs.clip_dir(tmp_path, "c") / "meta.json").read_text()
    assert not work.exists()
    again = stage.process(dict(row))
    assert (again["status"], again["qa_flags"], again["time_write_s"]) == \
        (first["status"], first["qa_flags"], first["time_write_s"]) == ("suspect", "seam", first["time_write_s"])
    assert (outputs.clip_dir(tmp_path, "c") / "meta.json").read_text() == meta   # not written again
    # Work files gone but the clip not committed (or committed with other settings): a failure, as before.
    (outputs.clip_dir(tmp_path, "c") / "meta.json").unlink()
    with pytest.raises(FileNotFoundError):
        stage.process(dict(row))


def test_a_suspect_clip_is_written_whole_with_its_scores_in_meta_json(tmp_path):
    scene_fills = fills(*scene())
    row, meta = write_clip(tmp_path, scene_fills["seam"])
    assert row["status"] == meta["status"] == "suspect" and meta["qa_flags"] == "seam"
    assert meta["qa_seam"] > 2 and meta["qa_object"] == 0.0
    assert (outputs.clip_dir(tmp_path, "c") / "result.mp4").is_file()
    assert set(meta["files"]) >= set(outputs.RESULT_FILES)

    row, meta = write_clip(tmp_path / "off", scene_fills["seam"], enabled="false")
    assert row["status"] == meta["status"] == "ok" and meta["qa_seam"] is None and meta["qa_flags"] == ""


def test_the_manifest_judges_every_finished_clip_with_this_runs_thresholds(tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}"])
    settings = ClipSettings.of(cfg, [WriteClips])   # the stage that scores the clips
    assert "qa" not in settings.for_row({})  # thresholds change no file: a resumed run keeps its clips

    def clip(clip_id, **fields):
        return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")),
                "output_dir": str(outputs.clip_dir(tmp_path, clip_id)), **fields}

    # Done by an earlier run whose thresholds let a seam of 2.5 through.
    earlier = clip("earlier", status="ok", qa_seam=2.5, qa_drift=0.0)
    outputs.commit_clip(tmp_path, "earlier", lambda folder: None,
                        lambda: {**earlier, "fingerprint": settings.fingerprint(earlier)})
    ledger = Ledger(str(tmp_path), qa=cfg.qa)
    ledger.add(clip("earlier", status="done_before"))
    ledger.add(clip("painted_back", status="suspect", qa_object=0.9, qa_flags="object"))
    ledger.add(clip("fine", status="ok", qa_drift=1.0, qa_flicker=1.1, qa_seam=1.0, qa_object=0.0))
    ledger.add(clip("unscored", status="ok"))
    manifest = pd.read_parquet(ledger.write()[0]).set_index("clip_id")
    assert manifest["status"].to_dict() == {"earlier": "suspect", "painted_back": "suspect", "fine": "ok",
                                            "unscored": "ok"}
    assert manifest.loc["earlier", "qa_flags"] == "seam" and manifest.loc["painted_back", "qa_flags"] == "object"
    assert pd.isna(manifest.loc["unscored", "qa_seam"]) and manifest["qa_seam"].dtype == "float64"
    # A suspect clip is a finished clip: not a failure, so the run's exit code is not 1.
    assert not ledger.failed_count and ledger.done_count == 4
    summary = dict(line.split("  ", 1) for line in format_summary(
        RunResult(ledger, False, None, None), str(tmp_path), wall_seconds=1.0).splitlines() if "  " in line)
    assert summary["clips suspect (quality scores)"].strip() == "2 (seam 1, object 1)"
    assert summary["clips done before (resumed)"].strip() == "1"

    # Looser thresholds on the next resume: the same stored scores, judged ok.
    looser = Ledger(str(tmp_path), qa=dataclasses.replace(cfg.qa, max_seam=None))
    looser.add(clip("earlier", status="done_before"))
    assert pd.read_parquet(looser.write()[0]).loc[0, "status"] == "done_before"
    assert json.loads((outputs.clip_dir(tmp_path, "earlier") / "meta.json").read_text())["qa_seam"] == 2.5
