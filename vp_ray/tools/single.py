"""One video, one command: video + click -> masks -> clean background.

    python -m vp_ray.tools.single --video in.mp4 --click_x 320 --click_y 240 --output_dir out/

It runs the batch job's own stage list (``vp_ray.stages.lineup.pipeline``) in this process, one stage
after another, without starting Ray: for a single clip Ray's start-up would only add time. The
clip's files are then moved up into ``--output_dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from enum import Enum
from pathlib import Path

import pandas as pd

from vp_ray import config
from vp_ray.clip import records, video
from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.outputs import META
from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import FAILED, SUSPECT, rows_to_frame
from vp_ray.config import Config, ModelConfig, load_config
from vp_ray.errors import ClipError, ConfigError
from vp_ray.evaluation import qa
from vp_ray.models.compile_plan import with_workload
from vp_ray.stages.lineup import preflight, run_context

log = logging.getLogger("vp_ray.tools.single")


# Options that set a config key: (key, type, help). Unset ones keep the run config's value.
CONFIG_OPTIONS = {
    "model": ("model", str, "videopainter | tiny | classic"),
    "num_inference_steps": ("model.num_inference_steps", int, "denoising steps, videopainter/tiny"),
    "guidance_scale": ("model.guidance_scale", float, "videopainter/tiny"),
    "seed": ("seed", int, "run seed"),
    "dilate_size": ("dilate_size", int, "mask dilation in pixels"),
    "target_fps": ("target_fps", float, "frames are resampled to this rate"),
    "max_seconds": ("max_seconds", float, "clip length limit"),
    "coords": ("dataset.prompt_coords", str, "clicks/box in the video's own pixels (source) or in the "
                                             "resized frame the model sees (model)"),
}
MODELS_WITH_STEPS = ("videopainter", "tiny")  # the models the model.* options above apply to


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = compose([])
    per_model = {name: compose([f"model={name}"]).model for name in MODELS_WITH_STEPS}
    parser = argparse.ArgumentParser(
        prog="python -m vp_ray.tools.single",
        description="Remove an object from one video: click on it in frame 0, get the clean video. "
                    "Unset options keep the values of the run config (conf/), as for launch.py.")
    parser.add_argument("--video", required=True, help="input video file")
    parser.add_argument("--click_x", type=float, help="x of a click on the object in frame 0")
    parser.add_argument("--click_y", type=float, help="y of a click on the object in frame 0")
    parser.add_argument("--point", nargs=3, type=float, action="append", default=[],
                        metavar=("X", "Y", "LABEL"),
                        help="another click: LABEL 1 = on the object, 0 = background (repeatable)")
    parser.add_argument("--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"),
                        help="a box around the object in frame 0")
    parser.add_argument("--mask", help="use this mask instead of clicks: all_masks.npz (with "
                                       "--mask_id), a mask video, or a folder of PNGs")
    parser.add_argument("--mask_id", type=int, default=1, help="object label in --mask npz (default: 1)")
    parser.add_argument("--prompt", default="", help="describe the clean background (default: the "
                                                     "dataset's default prompt)")
    parser.add_argument("--output_dir", required=True, help="where the files go")
    for option, (key, kind, text) in CONFIG_OPTIONS.items():
        default = shown_default(key, defaults, per_model)
        parser.add_argument(f"--{option}", type=kind, help=f"{text} (default: {default})")
    parser.add_argument("--mask_only", action="store_true",
                        help="only segment and write the mask files (fast preview of the click)")
    parser.add_argument("overrides", nargs="*",
                        help="more config overrides, as for launch.py (e.g. model.memory_mode=resident)")
    args = parser.parse_args(argv)
    if (args.click_x is None) != (args.click_y is None):
        parser.error("--click_x and --click_y go together")
    if args.click_x is None and not args.point and not args.box and not args.mask:
        parser.error("say what to remove: --click_x/--click_y, --point, --box or --mask")
    return args


def shown_default(key: str, defaults: Config, per_model: dict[str, ModelConfig]) -> str:
    """A setting's default as --help shows it; a model's setting is each model's own (steps: 50 for
    videopainter, 4 for tiny)."""
    def text(value) -> str:
        if isinstance(value, Enum):
            return value.value
        return f"{value:g}" if isinstance(value, float) else str(value)

    section, _, name = key.rpartition(".")
    if section == "model":
        values = {model: getattr(cfg, name) for model, cfg in per_model.items()}
        if len(set(values.values())) == 1:
            return text(next(iter(values.values())))
        return "the model's own: " + ", ".join(f"{text(value)} for {model}" for model, value in values.items())
    value = getattr(getattr(defaults, section) if section else defaults, name)
    return text(value.name if dataclasses.is_dataclass(value) else value)


def compose(overrides: list[str]) -> Config:
    """The run config for these overrides, as launch.py's (the dataset: this one clip)."""
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return load_config(config.compose(["dataset=csv", "dataset.path=-", "output_dir=-", *overrides]))
    except (ConfigCompositionException, OmegaConfBaseException) as error:
        raise ConfigError(f"config: {error}") from None


def build_config(args: argparse.Namespace) -> Config:
    overrides = [f"{key}={getattr(args, option)}" for option, (key, _, _) in CONFIG_OPTIONS.items()
                 if getattr(args, option) is not None]
    overrides += [f"mask_only={str(args.mask_only).lower()}",
                  f"output_dir={Path(args.output_dir).resolve() / '.vp_ray'}"]
    return compose(overrides + list(args.overrides))


def record_of(args: argparse.Namespace) -> dict:
    points = [[args.click_x, args.click_y, 1]] if args.click_x is not None else []
    points += [[x, y, int(label)] for x, y, label in args.point]
    raw = {"clip_id": "clip", "video_path": os.path.abspath(args.video), "prompt": args.prompt}
    if args.mask:
        raw.update(mask_path=os.path.abspath(args.mask), mask_id=args.mask_id)
    else:
        raw.update(points=json.dumps(points) if points else None,
                   box=json.dumps(args.box) if args.box else None)
    return raw


def clip_frames(cfg: Config, video_path: str) -> int | None:
    """Frames the prepare stage will cut this video to, from its container (None where it cannot
    tell: the prepare stage then says why, or finds out)."""
    try:
        info = video.probe_video(video_path)
    except ClipError:
        return None
    if not info.fps > 0:
        return None
    indices, _ = video.sample_indices(info.num_frames or video.UNKNOWN_LENGTH, info.fps, cfg.target_fps,
                                      cfg.max_seconds)
    return len(indices)


def run_single(cfg: Config, raw: dict) -> dict:
    """The batch job's stages, in order, on one row, in this process."""
    # One clip, one actor: model.compile_blocks=auto decides by this clip's windows and steps.
    cfg = with_workload(cfg, clips=1, actors=1, frames=clip_frames(cfg, raw["video_path"]))
    columns = [key for key, value in raw.items() if value is not None]
    plan = DatasetPlan(path=os.path.join(os.getcwd(), "-"), format="csv", columns=columns, total=1,
                       duplicates={}, ragged=[], prompted=int(records.needs_sam2(raw)))
    batch = pd.DataFrame([raw])
    run = run_context(cfg, plan)
    for stage in preflight(cfg, plan):
        log.info("%s ...", stage.title)
        start = time.perf_counter()
        batch = stage(cfg, plan, run)(batch)
        log.info("%s done in %.1f s", stage.title, time.perf_counter() - start)
        if batch.iloc[0]["status"] == FAILED:
            break
    return rows_to_frame(batch.to_dict("records")).iloc[0].to_dict()


def point_meta_here(output_dir: Path) -> None:
    """meta.json names the folder its files are now in; the batch layout's work folder is gone."""
    meta = json.loads((output_dir / META).read_text())
    meta.pop("work_dir", None)
    meta["output_dir"] = str(output_dir)
    with atomic_path(output_dir / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, allow_nan=False))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    try:
        cfg = build_config(args)
        row = run_single(cfg, record_of(args))
    except ConfigError as error:
        log.error("%s", error)
        return 2
    if row["status"] == FAILED:
        log.error("failed at %s: %s", row["failed_stage"], row["error"])
    else:
        for warning in filter(None, row["warnings"].split("; ")):
            log.warning("warning: %s", warning)
        if row["status"] == SUSPECT:
            log.warning("suspect (quality scores over their thresholds): %s",
                        qa.describe(row, row["qa_flags"].split(","), cfg.qa))
        names = sorted(path.name for path in Path(row["output_dir"]).iterdir())
        for name in names:  # up from the batch layout into --output_dir
            os.replace(Path(row["output_dir"]) / name, output_dir / name)
        point_meta_here(output_dir)
        log.info("wrote %d files to %s: %s", len(names), output_dir, ", ".join(names))
    shutil.rmtree(output_dir / ".vp_ray", ignore_errors=True)
    return 1 if row["status"] == FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
