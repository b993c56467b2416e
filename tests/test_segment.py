"""SAM2 mechanics on a random tiny model (masks mean nothing; shapes, prompts and plumbing do)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy import ndimage

from vp_ray import segment, workdir
from vp_ray.errors import ClipError, ConfigError
from vp_ray.rows import ClipRecord, new_row
from vp_ray.stages.segment import SegmentStage
from vp_ray.video import placement_for

TINY = {"config": "configs/sam2/sam2_hiera_t.yaml", "checkpoint": "", "random_init": True,
        "image_size": 256, "device": "cpu", "placement": "cpu", "pool_size": 1, "gpu_fraction": 0.1,
        "dedicated_gpus": 1, "min_mask_area": 64, "mask_threshold": 0.0}


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    return segment.load_segmenter(TINY)


def frames(count=6, height=64, width=96, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (count, height, width, 3), dtype=np.uint8)


def test_opencv_connected_components_match_a_brute_force_labelling():
    rng = np.random.default_rng(1)
    mask = torch.from_numpy(rng.random((3, 1, 20, 30)) > 0.6)
    labels, areas = segment.connected_components(mask)
    for i in range(3):
        expected, count = ndimage.label(mask[i, 0].numpy(), structure=np.ones((3, 3)))
        sizes = np.bincount(expected.ravel())
        assert ((labels[i, 0].numpy() > 0) == (expected > 0)).all()
        assert (areas[i, 0].numpy() == np.where(expected > 0, sizes[expected], 0)).all()
        # Same partition: each of our labels maps onto exactly one reference label.
        pairs = {(a, b) for a, b in zip(labels[i, 0].numpy().ravel(), expected.ravel()) if b}
        assert len(pairs) == count


def test_missing_compiled_extension_switches_hole_filling_to_opencv():
    import sam2.utils.misc as misc

    uses_c = segment.ensure_postprocessing()
    assert uses_c or misc.get_connected_components is segment.connected_components


def test_a_click_gives_a_mask_on_every_frame(segmenter):
    clip = frames()
    masks = segmenter.segment_clip(clip, [(40, 30, 1), (80, 50, 0)])
    assert masks.shape == (6, 64, 96) and masks.dtype == bool
    boxed = segmenter.segment_clip(clip, [], box=(10, 10, 60, 50))
    assert boxed.shape == (6, 64, 96)
    # State is reset between clips: a second, longer clip works the same way.
    assert segmenter.segment_clip(frames(count=9, seed=2), [(5, 5, 1)]).shape == (9, 64, 96)
    steps = []
    segmenter.segment_clip(clip, [(40, 30, 1)], progress=lambda done, total: steps.append((done, total)))
    assert steps[-1] == (6, 6) and len(steps) == 6


@pytest.mark.parametrize("points,box,message", [
    ([(100, 30, 1)], None, r"click \(100, 30\)"),
    ([(10, -1, 1)], None, "outside"),
    ([], (10, 10, 200, 50), "box"),
    ([], None, "no click or box"),
])
def test_prompts_outside_the_frame_fail_clearly(segmenter, points, box, message):
    with pytest.raises(ClipError, match=message):
        segmenter.segment_clip(frames(), points, box)


def test_source_coordinates_are_mapped_into_the_model_frame():
    placement = placement_for(480, 1280, 64, 96, "stretch")
    points, box = segment.parse_prompts(json.dumps([[640, 240, 1]]), json.dumps([0, 0, 1280, 480]),
                                        placement, "source")
    assert points == [(48.0, 32.0, 1)] and box == (0.0, 0.0, 96.0, 64.0)
    points, _ = segment.parse_prompts(json.dumps([[10, 20, 0]]), "", placement, "model")
    assert points == [(10.0, 20.0, 0)]


def test_a_checkpoint_file_in_the_released_format_loads(tmp_path, segmenter):
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": segmenter.predictor.state_dict()}, path)
    loaded = segment.load_segmenter({**TINY, "random_init": False, "checkpoint": str(path)})
    for name, value in segmenter.predictor.state_dict().items():
        assert torch.equal(loaded.predictor.state_dict()[name], value), name
    with pytest.raises(ConfigError, match="not found"):
        segment.load_segmenter({**TINY, "random_init": False, "checkpoint": str(tmp_path / "none.pt")})


def stage_row(tmp_path, clip, **fields):
    work = workdir.make_work_dir(tmp_path, "c")
    workdir.save_array(work, workdir.FRAMES, clip)
    record = ClipRecord(clip_id="c", video_path="v.mp4", mask_kind="points",
                        points=json.dumps([[40, 30, 1]]))
    return {**new_row(record), "work_dir": str(work), "source_height": 64, "source_width": 96, **fields}


def stage_cfg():
    return {"sam2": TINY, "dilate_size": 3, "resize_mode": "stretch", "dataset": {"prompt_coords": "source"}}


def test_stage_writes_masks_and_flags_an_empty_first_frame(tmp_path):
    import pandas as pd

    stage = SegmentStage(stage_cfg())

    class FirstFrameEmpty:
        def segment_clip(self, clip, points, box=None, threshold=0.0):
            masks = np.zeros(clip.shape[:3], bool)
            masks[1:, 10:20, 10:20] = True
            return masks

    stage.segmenter = FirstFrameEmpty()
    out = stage(pd.DataFrame([stage_row(tmp_path, frames())])).iloc[0]
    assert out.status == "pending" and "first-frame mask is empty" in out.warnings
    assert workdir.load_array(out.work_dir, workdir.MASKS_RAW)[1:, 10:20, 10:20].all()
    assert workdir.load_array(out.work_dir, workdir.MASKS).sum() > workdir.load_array(
        out.work_dir, workdir.MASKS_RAW).sum()  # dilated


def test_stage_fails_a_click_outside_the_source_frame(tmp_path):
    import pandas as pd

    stage = SegmentStage(stage_cfg())
    row = stage_row(tmp_path, frames(), points=json.dumps([[500, 30, 1]]))
    out = stage(pd.DataFrame([row])).iloc[0]
    assert out.status == "failed" and out.failed_stage == "segment"
    assert "outside the 96x64 source frame" in out.error


def test_placement_modes():
    cfg = {**TINY, "placement": "shared", "pool_size": 2, "gpu_fraction": 0.1}
    shared = segment.plan_placement(cfg, 1.0, 8)
    assert (shared.sam2_num_gpus, shared.inpaint_num_gpus, shared.inpaint_gpus_available) == (0.1, 0.8, 8)
    dedicated = segment.plan_placement({**cfg, "placement": "dedicated"}, 1.0, 8)
    assert (dedicated.sam2_num_gpus, dedicated.inpaint_num_gpus, dedicated.inpaint_gpus_available) == (0.5, 1.0, 7)
    assert segment.plan_placement({**cfg, "placement": "auto"}, 1.0, 0).mode == "cpu"
    with pytest.raises(ConfigError):
        segment.plan_placement({**cfg, "gpu_fraction": 0.6}, 1.0, 8)


PLACEMENT_SCRIPT = textwrap.dedent('''
    import json, sys, ray
    from vp_ray.segment import plan_placement
    gpus, sam2_actors, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    class Probe:
        def where(self):
            return ray.get_gpu_ids()

    if mode == "naive":   # the trap: fractional SAM2 actors first, then 0.75-GPU inpainters
        sam2_gpus, inpaint_gpus, inpaint_count = 0.25, 0.75, gpus
    else:
        cfg = {"placement": mode, "pool_size": sam2_actors, "gpu_fraction": 0.1, "dedicated_gpus": 1}
        p = plan_placement(cfg, 1.0, gpus)
        sam2_gpus, inpaint_gpus, inpaint_count = p.sam2_num_gpus, p.inpaint_num_gpus, int(p.inpaint_gpus_available)
    sam2 = [Probe.options(num_gpus=sam2_gpus).remote() for _ in range(sam2_actors)]
    ray.get([a.where.remote() for a in sam2])           # SAM2 pool placed first: the worst case
    inpaint = [Probe.options(num_gpus=inpaint_gpus).remote() for _ in range(inpaint_count)]
    ready, _ = ray.wait([a.where.remote() for a in inpaint], num_returns=inpaint_count, timeout=20)
    print(json.dumps({"wanted": inpaint_count, "placed": len(ready),
                      "gpus": sorted(str(ray.get(r)) for r in ready)}))
''')


@pytest.mark.parametrize("mode,expect_all", [("shared", True), ("dedicated", True), ("naive", False)])
def test_every_inpainting_actor_is_placed_next_to_the_sam2_pool(mode, expect_all):
    done = subprocess.run([sys.executable, "-c", PLACEMENT_SCRIPT, "4", "3", mode],
                          capture_output=True, text=True, timeout=180)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if expect_all:
        assert result["placed"] == result["wanted"], result
        assert len(set(result["gpus"])) == result["wanted"]  # one per GPU
    else:
        assert result["placed"] < result["wanted"], result  # shows the trap is real
