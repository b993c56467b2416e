"""Clip folders are committed whole, and a resumed run can tell complete ones from stale ones."""

from __future__ import annotations

import copy
import json
from enum import Enum

import numpy as np
import pytest
from conftest import compose_config, compose_dictconfig
from omegaconf import DictConfig, OmegaConf

from vp_ray.clip import outputs
from vp_ray.clip.records import ClipRecord, DatasetPlan
from vp_ray.clip.rows import new_row
from vp_ray.config import SET_BY_THE_DRIVER, load_config
from vp_ray.config import _fields as config_fields
from vp_ray.models import MODELS
from vp_ray.runtime.manifest import Ledger
from vp_ray.stages import ClipSettings
from vp_ray.stages.lineup import pipeline

SETTINGS = {"model": {"name": "classic", "inpaint_radius": 5}, "seed": 1, "max_seconds": 6.0}
# A dataset with click prompts: its runs have every stage, SAM2's included.
PROMPTED = DatasetPlan(path="/data/clips.csv", format="csv", columns=[], total=2, duplicates={}, ragged=[],
                       prompted=1)


def row(clip_id="a", **fields):
    return {**new_row(ClipRecord(clip_id=clip_id, video_path="/v.mp4")), **fields}


def write_two_files(folder):
    (folder / "result.mp4").write_bytes(b"x" * 10)
    (folder / "mask0.png").write_bytes(b"y" * 5)


def clip_settings(overrides, plan=PROMPTED):
    """What the clips' fingerprints cover in a run of these overrides."""
    cfg = compose_config(overrides) if isinstance(overrides, list) else load_config(overrides)
    return ClipSettings.of(cfg, pipeline(cfg, plan))


def test_committed_clip_is_complete_until_a_file_changes(tmp_path):
    fp = outputs.fingerprint(SETTINGS, row())
    outputs.commit_clip(tmp_path, "a", write_two_files, lambda: {"fingerprint": fp})
    assert outputs.is_complete(tmp_path, "a", fp)
    assert not outputs.is_complete(tmp_path, "a", "another-fingerprint")
    (outputs.clip_dir(tmp_path, "a") / "result.mp4").write_bytes(b"truncated")
    assert not outputs.is_complete(tmp_path, "a", fp)


def test_failed_write_leaves_no_folder_under_the_final_name(tmp_path):
    def crash(folder):
        (folder / "result.mp4").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        outputs.commit_clip(tmp_path, "a", crash, dict)
    assert not outputs.clip_dir(tmp_path, "a").exists()
    assert list((tmp_path / "clips").iterdir()) == []


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "clips" / ".a.tmp-1234").mkdir(parents=True)
    assert outputs.remove_stale_temporaries(tmp_path) == 1
    assert list((tmp_path / "clips").iterdir()) == []


def test_fingerprint_covers_the_record_and_the_output_settings():
    base = outputs.fingerprint(SETTINGS, row())
    assert outputs.fingerprint({**SETTINGS, "seed": 2}, row()) != base
    assert outputs.fingerprint(SETTINGS, row(prompt="other")) != base
    # The same row after a trip through Ray/pandas (numpy scalars) hashes the same.
    assert outputs.fingerprint(SETTINGS, row(start_frame=np.int64(0), fps=np.float64("nan"))) == base


def mutated(value, annotation: str):
    """Another valid value of a config field, by its current value (or its type when null)."""
    if isinstance(value, bool):
        return not value
    if annotation == "bool | str":   # true, false or auto
        return True if value == "auto" else "auto"
    if isinstance(value, Enum):
        members = list(type(value))
        return members[(members.index(value) + 1) % len(members)]
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 if value else 1.0
    if isinstance(value, str):
        return value + "x"
    if OmegaConf.is_list(value):
        if "int" in annotation:   # e.g. a [low, high] range: keep its length, move its end
            return [*value[:-1], value[-1] - 1]
        return [*value, 1.0] if "float" in annotation else [*value, "x"]
    return {"Optional[bool]": True, "Optional[int]": 64, "Optional[float]": 10.0,
            "Optional[str]": "auto"}[annotation]


CLICKED = {"mask_kind": "points", "points": "[[10.0, 20.0, 1]]"}   # a clip every stage acts on


@pytest.mark.parametrize("model", ["classic", "videopainter", "faulty"])
def test_each_setting_that_can_change_output_flips_the_fingerprint_and_no_other(tmp_path, model):
    """By exclusion: every schema field is in unless marked output=False (resources, placement,
    logging, where things are), so a field added later is covered without touching this test. (A
    clip with clicks, which every stage acts on: each output setting is read by one of them.)"""
    composed = compose_dictconfig([f"output_dir={tmp_path}", f"model={model}"])
    base = clip_settings(composed).fingerprint(row(**CLICKED))
    checked = []

    def walk(node, prefix):
        for name, value, spec in config_fields(node):
            key = prefix + name
            if isinstance(value, DictConfig):
                walk(value, key + ".")
                continue
            if spec.metadata.get("check") is SET_BY_THE_DRIVER:   # not a setting: refused if given
                continue
            changed = copy.deepcopy(composed)
            other = mutated(value, str(spec.type)) if key != "model.name" else \
                next(name for name in sorted(MODELS) if name != value)  # names must be registered
            OmegaConf.update(changed, key, other, merge=False)
            flipped = clip_settings(changed).fingerprint(row(**CLICKED)) != base
            assert flipped == spec.metadata.get("output", True), key
            checked.append(key)

    walk(composed, "")
    assert len(checked) >= 60  # every field of every group was tried
    for key in ("sam2.checkpoint", "sam2.mask_threshold", "sam2.config", "dataset.prompt_coords", "seed"):
        assert key in checked  # each of these flips it (asserted above)
    assert "model.num_gpus" in checked and "cluster.num_cpus" in checked  # and these do not
    assert "retry.oom_max_seconds" in checked and "retry.use_memory_savers" in checked  # nor these


def test_a_clip_with_a_mask_file_ignores_the_sam2_settings(tmp_path):
    """SAM2 never sees a clip whose masks come from a file: another checkpoint, threshold or SAM2
    model must not make it stale. A clip with clicks is made by SAM2 and goes stale."""
    base = [f"output_dir={tmp_path}", "model=classic"]
    from_files = [row(mask_kind=kind, mask_path="/m/a", mask_id=1 if kind == "npz" else -1)
                  for kind in ("npz", "video", "png_dir")]
    clicked = row(**CLICKED)
    before = clip_settings(base)
    for changed in (["sam2=tiny_random"], ["sam2.checkpoint=/other/sam2.pt", "sam2.mask_threshold=0.5",
                                           "sam2.min_mask_area=1"]):
        after = clip_settings(base + changed)
        for from_file in from_files:
            assert after.fingerprint(from_file) == before.fingerprint(from_file), (changed, from_file["mask_kind"])
        assert after.fingerprint(clicked) != before.fingerprint(clicked), changed
    # The same in a run whose dataset has no clicks at all (no SAM2 stage).
    alone = DatasetPlan(path="/data/clips.csv", format="csv", columns=[], total=1, duplicates={}, ragged=[])
    assert clip_settings(base, alone).fingerprint(from_files[0]) == before.fingerprint(from_files[0])


def test_the_retry_settings_change_no_fingerprint(tmp_path):
    """They decide only what happens after an out-of-memory error, which the clip's row records."""
    base = [f"output_dir={tmp_path}", "model=videopainter"]
    before = clip_settings(base)
    after = clip_settings(base + ["retry.oom_max_seconds=[3.0]", "retry.use_memory_savers=false",
                                  "retry.max_worker_deaths=5"])
    for clip in (row(mask_kind="npz", mask_path="/m/a.npz", mask_id=1), row(**CLICKED)):
        assert after.fingerprint(clip) == before.fingerprint(clip)


def test_the_seed_and_the_inpainters_settings_still_count_for_a_clip_with_a_mask_file(tmp_path):
    base = [f"output_dir={tmp_path}", "model=videopainter"]
    from_file = row(mask_kind="npz", mask_path="/m/a.npz", mask_id=1)
    before = clip_settings(base).fingerprint(from_file)
    for changed in ("seed=7", "model.num_inference_steps=30", "model.guidance_scale=5", "dilate_size=8", "crf=20"):
        assert clip_settings(base + [changed]).fingerprint(from_file) != before, changed
    assert outputs.fingerprint({}, row(seed=3)) != outputs.fingerprint({}, row(seed=4))   # the record's own seed


def test_comparison_video_has_four_panels():
    frames = np.full((2, 4, 6, 3), 100, np.uint8)
    masks = np.zeros((2, 4, 6), bool)
    masks[:, 1, 1] = True
    panels = outputs.comparison_frames(frames, masks, frames)
    assert panels.shape == (2, 4, 24, 3)
    assert panels[0, 1, 6 + 1].tolist() == [0, 0, 0]          # masked: object blacked out
    assert panels[0, 1, 12 + 1].tolist() == [255, 255, 255]  # mask panel


def test_ledger_writes_one_row_per_clip(tmp_path):
    fp = outputs.fingerprint(SETTINGS, row("old"))
    outputs.commit_clip(tmp_path, "old", write_two_files, lambda: {"fingerprint": fp, "num_frames": 17})
    ledger = Ledger(str(tmp_path))
    ledger.add(row("new", status="ok", output_dir=str(tmp_path / "clips/new"), num_frames=49,
                   memory_plan="text_encoder_offload + large VAE tiles", attention_backend="flash"))
    ledger.add(row("old", status="done_before"))
    ledger.add(row("bad", status="failed", failed_stage="prepare", error_type="decode", error="boom"))
    manifest_path, failures_path = ledger.write()
    import pandas as pd

    manifest = pd.read_parquet(manifest_path).set_index("clip_id")
    assert sorted(manifest.index) == ["new", "old"]
    assert manifest.loc["old", "num_frames"] == 17  # read back from the earlier run's meta.json
    # The plan the clip ran with; null where none is known (an earlier run's clip, a model without plans).
    assert manifest.loc["new", "memory_plan"] == "text_encoder_offload + large VAE tiles"
    assert pd.isna(manifest.loc["old", "memory_plan"])
    assert manifest.loc["new", "attention_backend"] == "flash" and pd.isna(manifest.loc["old", "attention_backend"])
    failures = pd.read_parquet(failures_path)
    assert failures.to_dict("records")[0]["error_type"] == "decode"
    assert ledger.duplicates() == []
    assert json.loads((outputs.clip_dir(tmp_path, "old") / "meta.json").read_text())["files"] == {
        "mask0.png": 5, "result.mp4": 10}


def test_meta_json_is_strict_json_with_null_for_values_not_given(tmp_path):
    clip = row(fps=float("nan"), max_seconds=np.float64("nan"))
    outputs.commit_clip(tmp_path, "a", write_two_files, lambda: dict(clip))
    text = (outputs.clip_dir(tmp_path, "a") / "meta.json").read_text()
    meta = json.loads(text, parse_constant=lambda name: pytest.fail(f"meta.json holds bare {name}"))
    assert meta["fps"] is None and meta["max_seconds"] is None
    # Read back from meta.json, the record hashes as it did in the run that wrote it.
    assert outputs.fingerprint(SETTINGS, meta) == outputs.fingerprint(SETTINGS, clip)


def test_interrupted_run_manifest_lists_every_committed_clip(tmp_path):
    """Rows still on their way to the driver when Ctrl-C came: their committed folders count."""
    settings = clip_settings([f"output_dir={tmp_path}"])
    for clip_id in ("a", "b", "c"):
        clip = row(clip_id, status="ok", num_frames=24, output_dir=str(outputs.clip_dir(tmp_path, clip_id)))
        outputs.commit_clip(tmp_path, clip_id, write_two_files,
                            lambda clip=clip: {**clip, "fingerprint": settings.fingerprint(clip)})
    stale = row("d", status="ok")  # committed under other settings: a resume would redo it
    outputs.commit_clip(tmp_path, "d", write_two_files,
                        lambda: {**stale, "fingerprint": clip_settings([f"output_dir={tmp_path}", "seed=9"])
                                 .fingerprint(stale)})
    ledger = Ledger(str(tmp_path))
    ledger.add(row("a", status="ok", output_dir=str(outputs.clip_dir(tmp_path, "a"))))
    assert ledger.add_committed(settings) == 2
    import pandas as pd

    manifest = pd.read_parquet(ledger.write()[0])
    assert sorted(manifest["clip_id"]) == ["a", "b", "c"] and ledger.duplicates() == []
