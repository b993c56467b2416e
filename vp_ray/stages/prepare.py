"""Decode a clip, resample and resize it, load and dilate its masks, into the clip's work folder."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from vp_ray.clip import masks as mask_io
from vp_ray.clip import prompts, video, workdir
from vp_ray.clip.rows import clip_dilate_size, clip_seconds
from vp_ray.config import Config, Preprocess
from vp_ray.errors import ClipError
from vp_ray.models import model_spec, usable_frames
from vp_ray.stages import ClipStage, Resources, Role

FILE_MASK_KINDS = ("npz", "video", "png_dir")


def clip_seed(run_seed: int, clip_id: str) -> int:
    """A per-clip seed from the run seed and the clip id: independent of scheduling order."""
    digest = hashlib.sha256(f"{run_seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class PrepareClips(ClipStage):
    name, title, role = "prepare", "decoding, resampling, resizing, loading masks", Role.feed
    reads = ("model", "dataset", "output_dir", "seed", "target_fps", "max_seconds", "min_frames",
             "resize_mode", "dilate_size", "preprocess")
    timing_column = "time_prepare_s"

    @classmethod
    def resources(cls, cfg: Config) -> Resources:
        return Resources(workers=cfg.cluster.prepare_concurrency)

    @classmethod
    def check(cls, cfg: Config) -> None:
        model_spec(cfg.model)   # an unknown model.name (its frames per call are the registry's)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        cfg, model = self.cfg, self.cfg.model
        max_seconds = cfg.max_seconds if math.isnan(row["max_seconds"]) else row["max_seconds"]
        clip = video.read_clip(
            row["video_path"], start_frame=row["start_frame"], end_frame=row["end_frame"],
            fps=None if math.isnan(row["fps"]) else row["fps"],
            target_fps=cfg.target_fps, max_seconds=max_seconds)
        count = usable_frames(model, len(clip.frames))
        if count < cfg.min_frames:
            raise ClipError(
                f"only {len(clip.frames)} frame(s) at {clip.out_fps:g} fps after resampling "
                f"(source {clip.source_fps:g} fps, frames {row['start_frame']}.."
                f"{row['end_frame'] if row['end_frame'] >= 0 else 'end'}); "
                f"at least {cfg.min_frames} are needed", kind="bad_input")
        frames, indices = clip.frames[:count], clip.indices[:count]
        source_h, source_w = frames.shape[1:3]
        placement = video.placement_for(source_h, source_w, model.height, model.width, cfg.resize_mode)
        points, box = [], None
        if row["mask_kind"] in prompts.PROMPT_KINDS:
            # Clicks outside the frame fail here, before any SAM2 model is loaded or run.
            points, box = prompts.parse_prompts(row["points"], row["box"], placement, cfg.dataset.prompt_coords)
        raw_masks = self.load_masks(row, indices, (source_h, source_w)) \
            if row["mask_kind"] in FILE_MASK_KINDS else None

        preprocess = cfg.preprocess
        rule = mask_io.MaskRule(clip_dilate_size(row, cfg.dilate_size), preprocess is Preprocess.reference)
        if raw_masks is not None:
            # README, "Frames": the rule applied at the source size (reference) or the model's (opencv).
            fitted = mask_io.fit_clip(frames, raw_masks, placement, preprocess, rule.dilate_size)
            mask_io.require_object(fitted.objects)
            fitted_frames = fitted.frames
        else:
            fitted_frames = video.fit_frames(frames, placement, preprocess)
        work_dir = workdir.make_work_dir(cfg.output_dir, row["clip_id"], run=self.run.log_dir)
        workdir.save_array(work_dir, workdir.FRAMES, fitted_frames)
        workdir.save_array(work_dir, workdir.INDICES, indices)
        workdir.save_clip_info(work_dir, workdir.ClipInfo(placement, rule, points, box))
        if raw_masks is not None:
            workdir.save_source_masks(work_dir, raw_masks)
            workdir.store_masks(work_dir, fitted.objects, fitted.masks, fitted.masked_video)
            row["mask_area"] = float(fitted.masks.mean())
        row.update(
            work_dir=str(work_dir), source_height=source_h, source_width=source_w,
            source_fps=clip.source_fps, out_fps=clip.out_fps, num_frames=count,
            seconds=clip_seconds(count, clip.out_fps), effective_max_seconds=max_seconds,
            effective_seed=row["seed"] if row["seed"] >= 0 else clip_seed(cfg.seed, row["clip_id"]),
        )
        return row

    def load_masks(self, row: dict[str, Any], indices, expect_hw):
        kind, path = row["mask_kind"], row["mask_path"]
        if kind == "npz":
            return mask_io.load_npz_masks(path, row["mask_id"], indices, expect_hw)
        if kind == "video":
            return mask_io.load_mask_video(path, indices, expect_hw)
        return mask_io.load_png_masks(path, indices, expect_hw)
