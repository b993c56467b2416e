"""SAM2 mechanics on a random tiny model (masks mean nothing; shapes, prompts and plumbing do),
its hole filling without the compiled extension, and where its actors are placed."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PROGRAMS

from vp_ray.clip import prompts, workdir
from vp_ray.clip.masks import MaskRule
from vp_ray.clip.records import ClipRecord, DatasetPlan
from vp_ray.clip.rows import new_row
from vp_ray.clip.video import placement_for
from vp_ray.config import Config, PlacementMode, RetryConfig, Sam2Config, Sam2Device
from vp_ray.errors import ClipError, ConfigError
from vp_ray.models.sam2 import connected_components
from vp_ray.models.sam2.segmenter import load_segmenter, model_config_name
from vp_ray.runtime.graph import actor_resources
from vp_ray.runtime.sam2_placement import Sam2Placement, plan_placement
from vp_ray.stages.lineup import run_context
from vp_ray.stages.segment import SegmentStage

TINY = Sam2Config(name="tiny_random", config="configs/sam2/sam2_hiera_t.yaml", checkpoint="", random_init=True,
                  image_size=128, device=Sam2Device.cpu, placement=PlacementMode.cpu)


def tiny(**fields) -> Sam2Config:
    return dataclasses.replace(TINY, **fields)


@pytest.fixture(scope="module")
def segmenter():
    return load_segmenter(TINY)


def frames(count=5, height=64, width=96, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (count, height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- hole filling

def flood_fill_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force 8-connected labelling: labels and per-pixel component areas."""
    labels, areas = np.zeros(mask.shape, int), np.zeros(mask.shape, int)
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        label, queue, members = labels.max() + 1, deque([start]), []
        labels[start] = label
        while queue:
            y, x = queue.popleft()
            members.append((y, x))
            for ny in range(y - 1, y + 2):
                for nx in range(x - 1, x + 2):
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = label
                        queue.append((ny, nx))
        for member in members:
            areas[member] = len(members)
    return labels, areas


@pytest.mark.parametrize("density", [0.2, 0.5, 0.8])
def test_opencv_components_match_a_brute_force_flood_fill(density):
    rng = np.random.default_rng(int(density * 10))
    mask = torch.from_numpy(rng.random((3, 1, 18, 25)) < density)
    labels, areas = connected_components.connected_components(mask)
    assert labels.shape == areas.shape == mask.shape and labels.dtype == areas.dtype == torch.int32
    for i in range(3):
        expected_labels, expected_areas = flood_fill_components(mask[i, 0].numpy())
        assert (areas[i, 0].numpy() == expected_areas).all()
        got = labels[i, 0].numpy()
        assert ((got > 0) == (expected_labels > 0)).all()
        # The same partition, numbered differently: labels map one to one.
        pairs = set(zip(got[got > 0], expected_labels[got > 0]))
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def sam2_kernel_only(mask):
    raise AssertionError("sam2's compiled kernel was called")


def test_hole_filling_runs_without_the_compiled_extension(monkeypatch, caplog):
    import sam2.utils.misc as misc

    # As sam2 ships it (an earlier test may have installed ours already); restored afterwards.
    monkeypatch.setattr(misc, "get_connected_components", sam2_kernel_only)
    with caplog.at_level(logging.INFO, logger="vp_ray.models.sam2.connected_components"):
        connected_components.use_compiled_or_opencv()
        connected_components.use_compiled_or_opencv()
    if connected_components.compiled_kernel_error():
        assert len(caplog.records) == 1 and "OpenCV" in caplog.text  # one line, once
    scores = torch.full((1, 1, 16, 16), 5.0)
    scores[0, 0, 2:4, 2:4] = -5.0    # a 4-pixel hole: filled (sam2's video predictor fills up to 8)
    scores[0, 0, 8:11, 8:11] = -5.0  # a 9-pixel hole: kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sam2 warns when it has to skip the step
        filled = misc.fill_holes_in_mask_scores(scores, max_area=8)
    assert (filled[0, 0, 2:4, 2:4] > 0).all() and (filled[0, 0, 8:11, 8:11] < 0).all()


# ----------------------------------------------------------------------------- segmenting

@pytest.mark.slow
def test_clicks_and_boxes_give_a_mask_on_every_frame(segmenter):
    clip = frames()
    steps = []
    masks = segmenter.segment_clip(clip, [(40, 30, 1), (80, 50, 0)], progress=lambda *s: steps.append(s))
    assert masks.shape == (5, 64, 96) and masks.dtype == bool
    assert steps == [(i, 5) for i in range(1, 6)]  # propagation reached every frame
    assert segmenter.segment_clip(clip, [], box=(10, 10, 60, 50)).shape == (5, 64, 96)
    assert segmenter.segment_clip(clip, [(30, 30, 1)], box=(10, 10, 60, 50)).shape == (5, 64, 96)


@pytest.mark.slow
def test_one_segmenter_serves_clips_of_any_length_and_size_in_a_row(segmenter):
    first = segmenter.segment_clip(frames(), [(40, 30, 1)])
    assert segmenter.segment_clip(frames(count=8, height=48, width=80, seed=1), [(5, 5, 1)]).shape == (8, 48, 80)
    assert segmenter.segment_clip(frames(count=1), [(40, 30, 1)]).shape == (1, 64, 96)
    # Nothing of the earlier clips is left in the predictor: the first clip comes out the same.
    assert (segmenter.segment_clip(frames(), [(40, 30, 1)]) == first).all()


def test_a_threshold_below_every_logit_marks_every_pixel():
    everything = load_segmenter(tiny(mask_threshold=-1e9))
    assert everything.segment_clip(frames(count=3), [(40, 30, 1)]).all()


@pytest.mark.parametrize("points,box,message", [
    ([(100, 30, 1)], None, r"click \(100, 30\) lies outside the 96x64 frame"),
    ([(10, -1, 1)], None, r"click \(10, -1\)"),
    ([], (10, 10, 200, 50), r"box \(10, 10, 200, 50\) goes outside the 96x64 frame"),
    ([], None, "no click or box"),
])
def test_prompts_outside_the_frame_fail_before_sam2_runs(segmenter, points, box, message):
    with pytest.raises(ClipError, match=message) as raised:
        segmenter.segment_clip(frames(), points, box)
    assert raised.value.kind == "bad_input"


# ----------------------------------------------------------------------------- prompts

def test_source_coordinates_are_mapped_into_the_model_frame():
    stretch = placement_for(480, 1280, 64, 96, "stretch")
    points, box = prompts.parse_prompts("[[640, 240, 1], [0, 0, 0]]", "[0, 0, 1280, 480]", stretch, "source")
    assert points == [(48.0, 32.0, 1), (0.0, 0.0, 0)] and box == (0.0, 0.0, 96.0, 64.0)
    pad = placement_for(480, 1280, 64, 96, "pad")  # 1280x480 -> 96x36, 14 px bars above and below
    assert prompts.parse_prompts("[[640, 240, 1]]", "", pad, "source") == ([(48.0, 32.0, 1)], None)
    assert prompts.parse_prompts("[[10, 20, 0]]", "", stretch, "model") == ([(10.0, 20.0, 0)], None)
    with pytest.raises(ClipError, match=r"click \(100, 20\) lies outside the 96x64 model frame"):
        prompts.parse_prompts("[[100, 20, 1]]", "", stretch, "model")


@pytest.mark.parametrize("points,box,mode,message", [
    ("[[1281, 10, 1]]", "", "stretch", r"click \(1281, 10\) lies outside the 1280x480 source frame"),
    ("", "[0, 0, 1300, 480]", "stretch", r"box \(0, 0, 1300, 480\) goes outside the 1280x480 source"),
    ("[[5, 240, 1]]", "", "crop", "resize_mode=crop cuts"),
    ("[[5, 5, 2]]", "", "stretch", "label 1"),
    ("[[5, 5]]", "", "stretch", "not JSON"),
    ("", "[50, 10, 40, 60]", "stretch", "x0 < x1"),
    ("", "", "stretch", "no click or box"),
])
def test_bad_source_prompts_name_the_problem(points, box, mode, message):
    with pytest.raises(ClipError, match=message):
        prompts.parse_prompts(points, box, placement_for(480, 1280, 64, 96, mode), "source")


# ----------------------------------------------------------------------------- loading

def test_sam2_and_sam2_1_model_configs_are_found_by_short_names():
    assert model_config_name("sam2_hiera_l.yaml") == "configs/sam2/sam2_hiera_l.yaml"
    assert model_config_name("sam2.1_hiera_l") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    with pytest.raises(ConfigError, match="known: .*configs/sam2.1/sam2.1_hiera_t.yaml"):
        model_config_name("sam3_hiera_l.yaml")


@pytest.mark.slow
def test_a_checkpoint_file_in_the_released_format_loads(tmp_path, segmenter):
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": segmenter.predictor.state_dict()}, path)
    loaded = load_segmenter(tiny(random_init=False, checkpoint=str(path), image_size=None))
    assert loaded.predictor.image_size == 1024  # the config's own size
    for name, value in segmenter.predictor.state_dict().items():
        assert torch.equal(loaded.predictor.state_dict()[name], value), name


def test_unusable_checkpoints_fail_at_load_with_the_reason(tmp_path, segmenter):
    missing = tmp_path / "sam2_hiera_large.pt"
    with pytest.raises(ConfigError, match=f"SAM2 checkpoint not found: {missing}"):
        load_segmenter(tiny(random_init=False, checkpoint=str(missing)))
    sam2_weights = tmp_path / "sam2.pt"
    torch.save({"model": segmenter.predictor.state_dict()}, sam2_weights)
    with pytest.raises(ConfigError, match="does not fit model config configs/sam2.1/sam2.1_hiera_t.yaml"):
        load_segmenter(tiny(config="sam2.1_hiera_t.yaml", random_init=False, checkpoint=str(sam2_weights)))
    code = tmp_path / "code.pt"
    torch.save({"model": ClipRecord("c", "v.mp4")}, code)  # a pickled object, not tensors
    with pytest.raises(ConfigError, match="weights_only=True"):
        load_segmenter(tiny(random_init=False, checkpoint=str(code)))


# ----------------------------------------------------------------------------- the stage

RULE = MaskRule(dilate_size=3, black_out_object=True)   # preprocess=reference, dilate_size=3


def stage_row(tmp_path, clip_id="c", rule=RULE, **fields):
    """A row as the prepare stage leaves it: frames at the model's 96x64 from a 192x128 source, and
    what it decided for the clip (its clicks in the model frame, the mask rule)."""
    work = workdir.make_work_dir(tmp_path, clip_id)
    workdir.save_array(work, workdir.FRAMES, frames())
    record = ClipRecord(clip_id=clip_id, video_path="v.mp4", mask_kind="points", points="[[80, 60, 1]]")
    row = {**new_row(record), "work_dir": str(work), "source_height": 128, "source_width": 192, **fields}
    placement = placement_for(128, 192, 64, 96)
    points, box = prompts.parse_prompts(row["points"], row["box"], placement) if row["points"] or row["box"] \
        else ([], None)
    workdir.save_clip_info(work, workdir.ClipInfo(placement, rule, points, box))
    return row


PLAN = DatasetPlan(path="/data/clips.csv", format="csv", columns=["points", "box"], total=1, duplicates={},
                   ragged=[])


def segment_stage(**sam2) -> SegmentStage:
    cfg = Config(sam2=tiny(**sam2), retry=RetryConfig(max_worker_deaths=1))
    return SegmentStage(cfg, PLAN, run_context(cfg, PLAN))


@pytest.mark.slow
def test_stage_segments_prompted_rows_and_passes_the_others_through(tmp_path):
    stage = segment_stage(mask_threshold=-1e9)  # every pixel: the plumbing is what counts
    given = pd.DataFrame([stage_row(tmp_path, "click"),
                          stage_row(tmp_path, "box", mask_kind="box", points="", box="[20, 20, 100, 90]"),
                          stage_row(tmp_path, "file", mask_kind="npz", points="")])
    out = stage(given).set_index("clip_id")
    assert (out.status == "pending").all() and (out.warnings == "").all()
    for clip_id in ("click", "box"):
        raw = workdir.load_array(out.work_dir[clip_id], workdir.MASKS_RAW)
        assert raw.shape == (5, 64, 96) and raw.all() and workdir.has_array(out.work_dir[clip_id], workdir.MASKS)
        assert out.mask_area[clip_id] == 1.0 and out.time_segment_s[clip_id] > 0
    assert not workdir.has_array(out.work_dir["file"], workdir.MASKS_RAW)
    pd.testing.assert_series_equal(out.loc["file"], given.set_index("clip_id").loc["file"], check_dtype=False)


def test_stage_warns_when_the_click_misses_on_the_first_frame(tmp_path):
    stage = segment_stage()

    class MissesFrameZero:
        def segment_clip(self, clip, points, box=None):
            masks = np.zeros(clip.shape[:3], bool)
            masks[1:, 10:20, 10:20] = True
            return masks

    stage.segmenter = MissesFrameZero()
    out = stage(pd.DataFrame([stage_row(tmp_path)])).iloc[0]
    assert out.status == "pending"
    assert out.warnings == "first-frame mask is empty (0 px): move the click onto the object"
    raw, dilated = (workdir.load_array(out.work_dir, name) for name in (workdir.MASKS_RAW, workdir.MASKS))
    assert raw[1:, 10:20, 10:20].all() and dilated.sum() > raw.sum()
    # preprocess=reference: the model conditions on frames with the undilated object blacked out
    masked = workdir.load_array(out.work_dir, workdir.MASKED_VIDEO)
    np.testing.assert_array_equal(masked, np.where(raw[..., None], 0, frames()))


class Recorded:
    """A segmenter that records the prompts it is given and marks a 10x10 square."""

    def segment_clip(self, clip, points, box=None):
        self.given = (points, box)
        masks = np.zeros(clip.shape[:3], bool)
        masks[:, 20:30, 30:40] = True
        return masks


def test_stage_segments_with_the_clicks_and_the_mask_rule_the_prepare_stage_left(tmp_path):
    """Not the record's own clicks (source pixels) nor the run's dilation: what prepare decided."""
    stage = segment_stage()
    stage.segmenter = Recorded()
    plain = MaskRule(dilate_size=0, black_out_object=False)   # e.g. preprocess=opencv, dilate_size=0
    out = stage(pd.DataFrame([stage_row(tmp_path, "plain", rule=plain)])).iloc[0]
    assert stage.segmenter.given == ([(40.0, 30.0, 1)], None)   # (80, 60) of 192x128, on the 96x64 frame
    raw, masks = (workdir.load_array(out.work_dir, name) for name in (workdir.MASKS_RAW, workdir.MASKS))
    np.testing.assert_array_equal(masks, raw)   # no dilation
    assert not workdir.has_array(out.work_dir, workdir.MASKED_VIDEO)
    out = stage(pd.DataFrame([stage_row(tmp_path, "dilated")])).iloc[0]   # RULE: 3 px, object blacked out
    raw, masks = (workdir.load_array(out.work_dir, name) for name in (workdir.MASKS_RAW, workdir.MASKS))
    assert masks.sum() == 5 * 12 * 12 and raw.sum() == 5 * 10 * 10
    np.testing.assert_array_equal(workdir.load_array(out.work_dir, workdir.MASKED_VIDEO),
                                  np.where(raw[..., None], 0, frames()))


# ----------------------------------------------------------------------------- placement

def test_placement_modes_split_the_gpus():
    shared, dedicated, auto = (tiny(pool_size=2, placement=mode) for mode in
                               (PlacementMode.shared, PlacementMode.dedicated, PlacementMode.auto))
    assert plan_placement(shared, 1, 8) == Sam2Placement(PlacementMode.shared, 0.1, 0.8, 8)
    assert plan_placement(dedicated, 1, 8) == Sam2Placement(PlacementMode.dedicated, 1.0, 1, 6)
    assert plan_placement(auto, 1, 8).mode is PlacementMode.shared
    assert plan_placement(auto, 0, 8).mode is PlacementMode.cpu  # a CPU inpainter
    assert plan_placement(auto, 1, 0).mode is PlacementMode.cpu
    # the SAM2 actor's Ray resources, as graph.py asks for them
    assert actor_resources(plan_placement(auto, 1, 8).sam2_num_gpus, auto.num_cpus) == {"num_gpus": 0.1}
    assert actor_resources(plan_placement(auto, 0, 8).sam2_num_gpus, auto.num_cpus) == \
        {"num_gpus": 0.0, "num_cpus": 1.0}
    for bad, gpus in [({"gpu_fraction": 0.3}, 8), ({"placement": PlacementMode.dedicated, "pool_size": 8}, 8),
                      ({}, 0)]:
        with pytest.raises(ConfigError):
            plan_placement(dataclasses.replace(shared, **bad), 1, gpus)


@pytest.mark.slow
def test_default_placement_leaves_every_gpu_an_inpainting_actor():
    """4 logical GPUs, 3 SAM2 actors placed first, then one inpainting actor per GPU."""
    done = subprocess.run([sys.executable, str(PROGRAMS / "sam2_placement.py")], capture_output=True, text=True,
                          timeout=600)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shared = result["auto"]  # 3 x 0.1 GPU for SAM2, 4 x 0.7 GPU for inpainting
    assert shared["wanted"] == 4 and sorted(map(tuple, shared["placed"])) == [(0,), (1,), (2,), (3,)]
    dedicated = result["dedicated"]  # 1 whole GPU for SAM2, the other 3 for inpainting
    assert dedicated["wanted"] == 3 and len({tuple(g) for g in dedicated["placed"]}) == 3
    trap = result["quarter_gpus"]  # 3 x 0.25 packed onto GPU 0: its inpainting actor never starts
    assert len(trap["placed"]) == 3


def test_a_clip_that_keeps_killing_the_sam2_worker_ends_as_a_failure(tmp_path):
    """Each try is counted in the clip's work folder, which outlives a killed actor process."""
    stage = segment_stage(mask_threshold=-1e9)
    row = stage_row(tmp_path)
    (Path(row["work_dir"]) / "segment.attempts").write_text("1")  # one earlier try died
    assert stage(pd.DataFrame([row])).iloc[0].status == "pending"  # within retry.max_worker_deaths=1
    (Path(row["work_dir"]) / "segment.attempts").write_text("2")  # that one died too
    out = stage(pd.DataFrame([row])).iloc[0]
    assert (out.status, out.failed_stage, out.error_type) == ("failed", "segment", "worker_died")
    assert "segment worker died 2 time(s)" in out.error


def test_where_an_actor_runs_does_not_start_ray_outside_it():
    """The single-video command records where its stages ran without starting a local Ray."""
    code = "import ray; from vp_ray.models import gpu; print(gpu.where().split()[0], ray.is_initialized())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["node=local", "False"]
