"""What the stages declare and carry: the typed config they read, their roles and resources as the
graph uses them, what the prepare stage decides once for later stages, the inpainter's warnings."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import compose_config
from ray import cloudpickle

from vp_ray.clip import outputs, workdir
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.clip.masks import MaskRule
from vp_ray.clip.records import ClipRecord, DatasetPlan
from vp_ray.clip.rows import new_row
from vp_ray.clip.video import placement_for
from vp_ray.config import (
    ClusterConfig,
    Config,
    DatasetConfig,
    Dtype,
    ModelConfig,
    PlacementMode,
    Preprocess,
    Sam2Config,
    VideoPainterModelConfig,
)
from vp_ray.models import Inpainter
from vp_ray.runtime import graph
from vp_ray.stages import ClipStage, Role
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.stages.lineup import pipeline, run_context
from vp_ray.stages.prepare import PrepareClips
from vp_ray.stages.segment import SegmentStage
from vp_ray.stages.write import WriteClips

PROMPTED = DatasetPlan(path="/data/clips.csv", format="csv", columns=[], total=1, duplicates={}, ragged=[],
                       prompted=1)


# ----------------------------------------------------------------------------- the typed config

def test_the_config_crosses_the_ray_boundary_typed(tmp_path):
    """What a worker unpickles is the driver's typed config: its groups' schemas and its Enums."""
    cfg = compose_config([f"output_dir={tmp_path}", "model=videopainter", "sam2.placement=dedicated"])
    run = run_context(cfg, PROMPTED, log_dir=str(tmp_path / "logs"))
    again, run_again = cloudpickle.loads(cloudpickle.dumps((cfg, run)))
    assert again == cfg and run_again == run
    assert type(again.model) is VideoPainterModelConfig and again.model.dtype is Dtype.bfloat16
    assert again.sam2.placement is PlacementMode.dedicated and again.preprocess is Preprocess.reference
    # Every group slot is typed with its schema (no Any).
    groups = {f.name: f.type for f in dataclasses.fields(Config) if f.name in ("dataset", "model", "cluster", "sam2")}
    assert groups == {"dataset": "DatasetConfig", "model": "ModelConfig", "cluster": "ClusterConfig",
                      "sam2": "Sam2Config"}
    assert isinstance(cfg.model, ModelConfig) and isinstance(cfg.dataset, DatasetConfig)
    assert isinstance(cfg.cluster, ClusterConfig) and isinstance(cfg.sam2, Sam2Config)


def test_a_stage_reads_only_the_settings_it_declares(tmp_path):
    """A setting read without being declared would be missing from the fingerprints of its clips."""

    class Sneaky(ClipStage):
        name, title, role, reads = "sneaky", "reading", Role.check, ("seed",)

        def process(self, row):
            row["prompt"] = self.cfg.sam2.checkpoint
            return row

    cfg = compose_config([f"output_dir={tmp_path}"])
    stage = Sneaky(cfg, PROMPTED, run_context(cfg, PROMPTED))
    assert stage.cfg.seed == 42
    out = stage(pd.DataFrame([new_row(ClipRecord(clip_id="a", video_path="/v.mp4"))])).iloc[0]
    assert out.status == "failed" and "the sneaky stage reads 'sam2' without declaring it" in out.error


def test_the_driver_estimate_is_not_a_setting_a_user_gives(tmp_path):
    from vp_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="model.steps_per_actor=5: must be left unset"):
        compose_config([f"output_dir={tmp_path}", "model=videopainter", "model.steps_per_actor=5"])


# ----------------------------------------------------------------------------- roles and resources

class Masks(SegmentStage):
    name = "masks"


class Paint(InpaintClips):
    name = "paint"


def test_the_graph_sizes_and_places_the_actor_pools_by_the_stages_roles(tmp_path):
    """Stages named otherwise get the same pools: the segmenting one beside the inpainting one."""
    cfg = compose_config([f"output_dir={tmp_path}", "model=videopainter", "sam2.pool_size=4",
                          "sam2.gpu_fraction=0.1", "sam2.num_cpus=2", "model.num_cpus=3"])
    pools = graph.actor_pools(cfg, [PrepareClips, Masks, Paint, WriteClips], {"CPU": 64, "GPU": 8})
    assert set(pools) == {Masks, Paint}
    assert pools[Masks]["num_gpus"] == 0.1 and pools[Masks]["num_cpus"] == 2
    assert pools[Masks]["compute"].min_size == 4 and pools[Masks]["compute"].max_tasks_in_flight_per_actor == 1
    assert pools[Paint]["num_gpus"] == 0.6 and pools[Paint]["num_cpus"] == 3
    # One inpainting actor per GPU, whatever share of it SAM2 takes (8, not 8 / 0.6 = 13).
    assert pools[Paint]["compute"].min_size == 8 and pools[Paint]["compute"].max_tasks_in_flight_per_actor == 2
    alone = graph.actor_pools(cfg, [PrepareClips, Paint, WriteClips], {"CPU": 64, "GPU": 8})
    assert set(alone) == {Paint} and alone[Paint]["num_gpus"] == 1


def test_each_stage_declares_its_role_and_resources(tmp_path):
    cfg = compose_config([f"output_dir={tmp_path}", "cluster.prepare_concurrency=3", "cluster.write_concurrency=5"])
    stages = pipeline(cfg, PROMPTED)
    assert [stage.role for stage in stages] == [Role.check, Role.feed, Role.segment, Role.inpaint, Role.write]
    tasks = {stage.role: stage.resources(cfg) for stage in stages if not stage.role.is_model}
    assert tasks[Role.feed].workers == 3 and tasks[Role.write].workers == 5
    assert tasks[Role.check].workers is None and tasks[Role.check].num_cpus == 0.25   # light: many at once
    assert graph.bounded_operators(stages) == graph.Bounded(
        feed="MapBatches(prepare)", model="MapBatches(inpaint)", write="MapBatches(write)")
    mask_only = pipeline(dataclasses.replace(cfg, mask_only=True), PROMPTED)
    assert graph.bounded_operators(mask_only).model == "MapBatches(segment)"   # the last model stage


# ----------------------------------------------------------------------------- the inpainter's warnings

class Warns(Inpainter):
    def __init__(self, warnings=None):
        if warnings is not None:
            self.last_warnings = warnings

    def inpaint_clip(self, frames, masks, prompt, seed, progress=None, masked_video=None):
        return frames

    def reduce_memory(self):
        return False


@pytest.mark.parametrize("warnings, expected", [(None, ""), (["prompt cut to 226 tokens"], "prompt cut to 226 tokens")])
def test_the_inpainters_warnings_reach_the_clips_row(tmp_path, warnings, expected):
    stage = InpaintClips.__new__(InpaintClips)
    stage.cfg = compose_config([f"output_dir={tmp_path}"])
    stage.inpainter, stage.baseline_bytes, stage.restart_needed, stage.worker = Warns(warnings), 0, False, "w"
    row = {"clip_id": "a", "prompt": "p", "effective_seed": 0, "effective_max_seconds": 1.0, "out_fps": 8.0,
           "num_frames": 9, "warnings": "", "time_condition_s": 0.0}
    frames = np.zeros((9, 8, 8, 3), np.uint8)
    _, row = stage.inpaint_on_gpu(row, frames, np.zeros((9, 8, 8), bool), None, None)
    assert row["warnings"] == expected


# ----------------------------------------------------------------------------- decided once, in prepare

@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    ensure_demo_dataset(folder, num_clips=1, num_frames=9, height=96, width=144, seed=5)
    return str(folder / "demo00_landscape" / "video.mp4")


def test_prepare_decides_the_placement_clicks_and_mask_rule_once_for_the_later_stages(tmp_path, demo_video):
    """A 144x96 source padded into a 96x48 model frame: halved to 72x48, bars left and right."""
    cfg = compose_config([f"output_dir={tmp_path}", "model.height=48", "model.width=96", "resize_mode=pad",
                          "preprocess=opencv", "dilate_size=3", "dataset.prompt_coords=source"])
    run = run_context(cfg, PROMPTED)
    record = ClipRecord(clip_id="c", video_path=demo_video, mask_kind="points", points="[[72.0, 48.0, 1]]",
                        dilate_size=5)
    row = PrepareClips(cfg, PROMPTED, run)(pd.DataFrame([new_row(record)])).iloc[0]
    assert row.status == "pending", row.error
    info = workdir.load_clip_info(row.work_dir)
    assert info.placement == placement_for(96, 144, 48, 96, "pad")
    assert info.points == [(48.0, 24.0, 1)] and info.box is None   # the source's centre, on the model frame
    assert info.mask_rule == MaskRule(dilate_size=5, black_out_object=False)   # the record's own dilation


def test_the_writer_draws_the_clicks_prepare_left_and_restores_its_placement(tmp_path):
    """The record's clicks are in source pixels; frame0_with_mask.png shows them where SAM2 had them."""
    cfg = compose_config([f"output_dir={tmp_path}", "restore_size=true", "qa.enabled=false"])
    work = workdir.make_work_dir(tmp_path, "c")
    frames = np.full((3, 32, 48, 3), 90, np.uint8)
    masks = np.zeros((3, 32, 48), bool)
    masks[:, 4:8, 4:8] = True
    for name, array in ((workdir.FRAMES, frames), (workdir.RESULT, frames), (workdir.INDICES, np.arange(3))):
        workdir.save_array(work, name, array)
    workdir.store_masks(work, masks, masks)
    placement = placement_for(64, 48, 32, 48, "pad")   # a portrait 48x64 source: bars left and right
    workdir.save_clip_info(work, workdir.ClipInfo(placement, MaskRule(0, False), [(30.0, 20.0, 1)], None))
    record = ClipRecord(clip_id="c", video_path="/v.mp4", mask_kind="points", points="[[999, 999, 1]]")
    row = {**new_row(record), "work_dir": str(work), "out_fps": 8.0, "num_frames": 3, "source_height": 64,
           "source_width": 48}
    row = WriteClips(cfg, None, run_context(cfg, PROMPTED)).process(row)
    shown = cv2.cvtColor(cv2.imread(str(outputs.clip_dir(tmp_path, "c") / "frame0_with_mask.png")), cv2.COLOR_BGR2RGB)
    assert shown[20, 30].tolist() == [0, 255, 0]   # the click, at the model-frame pixel prepare decided
    from vp_ray.clip.video import read_video

    result, _ = read_video(outputs.clip_dir(tmp_path, "c") / "result.mp4")
    assert result.shape[1:3] == (64, 48)   # restore_size: back at the source's size through the placement
    assert json.loads((outputs.clip_dir(tmp_path, "c") / "meta.json").read_text())["fingerprint"] == \
        run_context(cfg, PROMPTED).clip_settings.fingerprint(row)
