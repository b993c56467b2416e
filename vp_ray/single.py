"""One video, one command: video + click -> masks -> clean background.

    python -m vp_ray.single --video in.mp4 --click_x 320 --click_y 240 --output_dir out/

It runs the very stages of the batch job (normalize, prepare, segment, inpaint, write) in
this process, one after another, without starting Ray: for a single clip Ray's start-up
would only add time. The files of the clip are then moved up into ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
from omegaconf.errors import MissingMandatoryValue

from vp_ray.errors import ConfigError
from vp_ray.graph import check_weights
from vp_ray.rows import FAILED, rows_to_frame

log = logging.getLogger("vp_ray.single")
REPO_CONF = Path(__file__).resolve().parents[1] / "conf"


# Options that map onto a config key; unset ones keep the config's value (conf/, as launch.py).
CONFIG_OPTIONS = {"model": "model", "num_inference_steps": "model.num_inference_steps",
                  "guidance_scale": "model.guidance_scale", "seed": "seed", "dilate_size": "dilate_size",
                  "target_fps": "target_fps", "max_seconds": "max_seconds", "coords": "dataset.prompt_coords"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = compose([])
    vp_defaults = compose(["model=videopainter"])["model"]
    parser = argparse.ArgumentParser(
        prog="python -m vp_ray.single",
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
    parser.add_argument("--coords", choices=("source", "model"),
                        help="clicks/box are in the video's own pixels (source) or in the resized frame "
                             f"the model sees (model) (default: {defaults['dataset']['prompt_coords']})")
    parser.add_argument("--prompt", default="", help="describe the clean background (default: the "
                                                     "dataset's default prompt)")
    parser.add_argument("--output_dir", required=True, help="where the files go")
    parser.add_argument("--model", help=f"videopainter | tiny | classic (default: {defaults['model']['name']})")
    parser.add_argument("--num_inference_steps", type=int,
                        help=f"denoising steps, videopainter/tiny (default: {vp_defaults['num_inference_steps']})")
    parser.add_argument("--guidance_scale", type=float,
                        help=f"videopainter/tiny (default: {vp_defaults['guidance_scale']:g})")
    parser.add_argument("--seed", type=int, help=f"(default: {defaults['seed']})")
    parser.add_argument("--dilate_size", type=int, help=f"mask dilation in pixels (default: {defaults['dilate_size']})")
    parser.add_argument("--target_fps", type=float, help=f"(default: {defaults['target_fps']:g})")
    parser.add_argument("--max_seconds", type=float, help=f"(default: {defaults['max_seconds']:g})")
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


def compose(overrides: list[str]) -> dict:
    """The plain run config for these overrides, as launch.py composes it (dataset: this one clip)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException

    from vp_ray.config import register_configs, to_plain_config

    register_configs()
    GlobalHydra.instance().clear()  # sam2 initialises a global Hydra of its own when imported
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO_CONF)):
            return to_plain_config(hydra_compose("config", overrides=["dataset=csv", "dataset.path=-",
                                                                      "output_dir=-", *overrides]))
    except (ConfigCompositionException, OmegaConfBaseException) as error:
        raise ConfigError(f"config: {error}") from None


def build_config(args: argparse.Namespace) -> dict:
    overrides = [f"{key}={getattr(args, option)}" for option, key in CONFIG_OPTIONS.items()
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


def run_single(cfg: dict, raw: dict) -> dict:
    """The batch job's stages, in order, on one row."""
    from vp_ray.stages.inpaint import InpaintClips
    from vp_ray.stages.normalize import NormalizeRecords
    from vp_ray.stages.prepare import PrepareClips
    from vp_ray.stages.write import WriteClips

    stages = [("checking", lambda: NormalizeRecords(cfg, os.getcwd(), duplicates={})),
              ("decoding", lambda: PrepareClips(cfg))]
    if raw.get("points") or raw.get("box"):
        from vp_ray.stages.segment import SegmentStage

        stages.append(("segmenting (SAM2)", lambda: SegmentStage(cfg)))
    if not cfg["mask_only"]:
        stages.append(("loading the model and inpainting",
                       lambda: InpaintClips(cfg, progress_bar=True)))
    stages.append(("writing", lambda: WriteClips(cfg)))

    batch = pd.DataFrame([raw])
    for label, make_stage in stages:
        log.info("%s ...", label)
        start = time.perf_counter()
        batch = make_stage()(batch)
        log.info("%s done in %.1f s", label, time.perf_counter() - start)
        if batch.iloc[0]["status"] == FAILED:
            break
    return rows_to_frame(batch.to_dict("records")).iloc[0].to_dict()


def publish(row: dict, output_dir: Path) -> list[Path]:
    """Move the clip's files from the batch layout up into ``output_dir``."""
    moved = []
    for path in sorted(Path(row["output_dir"]).iterdir()):
        target = output_dir / path.name
        os.replace(path, target)
        moved.append(target)
    shutil.rmtree(output_dir / ".vp_ray", ignore_errors=True)
    return moved


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    output_dir = Path(args.output_dir).resolve()
    raw = record_of(args)
    try:
        cfg = build_config(args)
        check_weights(cfg, needs_segmentation=bool(raw.get("points") or raw.get("box")))
        row = run_single(cfg, raw)
    except MissingMandatoryValue as error:
        log.error("missing value: %s", error.full_key)
        return 2
    except ConfigError as error:
        log.error("%s", error)
        return 2
    if row["status"] == FAILED:
        log.error("failed at %s: %s", row["failed_stage"], row["error"])
        shutil.rmtree(output_dir / ".vp_ray", ignore_errors=True)
        return 1
    for warning in filter(None, row["warnings"].split("; ")):
        log.warning("warning: %s", warning)
    files = publish(row, output_dir)
    log.info("wrote %d files to %s: %s", len(files), output_dir, ", ".join(p.name for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
