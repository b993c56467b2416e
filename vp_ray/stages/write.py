"""Last stage: encode a clip's result and masks into its final folder, then drop its work files."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vp_ray.clip import masks as mask_io
from vp_ray.clip import outputs, video, workdir
from vp_ray.clip.rows import FAILED, OK, RECORD_COLUMNS, STATUS_COLUMNS, SUSPECT, add_warning
from vp_ray.config import Config, QAConfig
from vp_ray.evaluation import qa
from vp_ray.stages import ClipStage, Resources, Role

log = logging.getLogger(__name__)


class WriteClips(ClipStage):
    name, title, role = "write", "encoding and writing the clip's files", Role.write
    reads = ("output_dir", "mask_only", "restore_size", "crf", "qa")
    # No timing_column: process() times itself, so that meta.json holds the same time_write_s.

    @classmethod
    def resources(cls, cfg: Config) -> Resources:
        return Resources(workers=cfg.cluster.write_concurrency)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = super().__call__(batch)
        for work in out.loc[out.status == FAILED, "work_dir"]:
            if work:  # a clip failed here or upstream: its files are of no further use
                workdir.remove_work_dir(work)
        return out

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        committed = self.committed_by_an_earlier_try(row)
        if committed is not None:
            return committed
        start = time.perf_counter()
        work = row["work_dir"]
        frames = workdir.load_array(work, workdir.FRAMES)
        masks = workdir.load_array(work, workdir.MASKS)
        raw_masks = workdir.load_array(work, workdir.MASKS_RAW)
        result = None if cfg.mask_only else workdir.load_array(work, workdir.RESULT)
        if result is not None:  # an OOM retry may have shortened the clip
            frames, masks, raw_masks = frames[:len(result)], masks[:len(result)], raw_masks[:len(result)]
        fps = row["out_fps"]
        indices = workdir.load_array(work, workdir.INDICES)[:len(frames)]
        info = workdir.load_clip_info(work)
        placement = info.placement

        def write_files(folder: Path) -> None:
            if result is not None:
                final = result
                if cfg.restore_size:
                    final = video.restore_frames(result, placement)
                video.write_video(folder / "result.mp4", final, fps, crf=cfg.crf)
                video.write_video(folder / "result_vis.mp4",
                                  outputs.comparison_frames(frames, masks, result), fps, crf=cfg.crf)
            video.write_video(folder / "mask.mp4", outputs.mask_frames(masks), fps, crf=cfg.crf)
            # At the source's size and frame numbers: with the source video and mask_id 1, a
            # record of a later run (e.g. inpainting after a mask-only pass). A mask file's own
            # masks pass through as given; SAM2's are brought back from the model's size.
            source_masks = workdir.load_source_masks(work, row["source_width"])
            source_masks = video.restore_masks(raw_masks, placement) if source_masks is None \
                else source_masks[:len(frames)]
            mask_io.save_vpdata_masks(folder / "all_masks.npz",
                                      mask_io.index_like_source(source_masks, indices))
            outputs.write_png(folder / "frame0_original.png", frames[0])
            # The clicks and box SAM2 was given (none for a mask file), drawn on frame 0.
            outputs.write_png(folder / "frame0_with_mask.png",
                              outputs.overlay(frames[0], masks[0], info.points, info.box))
            outputs.write_png(folder / "mask0.png", masks[0].astype("uint8") * 255)

        def make_meta() -> dict[str, Any]:
            row["time_write_s"] = round(time.perf_counter() - start, 3)
            return {**{k: row[k] for k in RECORD_COLUMNS + STATUS_COLUMNS},
                    "fingerprint": self.run.clip_settings.fingerprint(row)}

        row["status"] = OK
        if result is not None and cfg.qa.enabled:
            score_quality(row, frames, result, masks, raw_masks, cfg.qa)
        row["output_dir"] = str(outputs.clip_dir(cfg.output_dir, row["clip_id"]))
        outputs.commit_clip(cfg.output_dir, row["clip_id"], write_files, make_meta)
        workdir.remove_work_dir(work)
        return row

    def committed_by_an_earlier_try(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The row an earlier try of this write left in the clip's meta.json, if that try committed the
        clip: Ray runs a task again when the node it ran on is lost before its answer comes back, and
        the first try's files are then whole while its work files are gone. None otherwise."""
        if Path(row["work_dir"]).exists():
            return None
        clip_id, output_dir = row["clip_id"], self.cfg.output_dir
        if not outputs.is_complete(output_dir, clip_id, self.run.clip_settings.fingerprint(row)):
            return None
        meta = outputs.read_meta(output_dir, clip_id)
        log.warning("write: already committed by an earlier try of this task (its worker was lost before "
                    "it answered); its files and record are kept")
        return {**row, **{k: meta[k] for k in RECORD_COLUMNS + STATUS_COLUMNS if k in meta},
                "output_dir": str(outputs.clip_dir(output_dir, clip_id))}


def score_quality(row: dict[str, Any], frames: np.ndarray, result: np.ndarray, holes: np.ndarray,
                  objects: np.ndarray, settings: QAConfig) -> None:
    """The clip's quality scores into ``row``; over a threshold, the clip is suspect. A score that
    fails is a warning: the clip's files are still worth writing."""
    try:
        scores = qa.score_clip(frames, result, holes, objects, settings.width)
    except Exception as error:  # noqa: BLE001 - a scoring bug must not cost a finished result
        add_warning(row, f"quality scores not computed: {type(error).__name__}: {error}")
        return
    row.update({name: float("nan") if value is None else value for name, value in scores.items()})
    flags = qa.judge(scores, settings)
    row["qa_flags"] = ",".join(flags)
    if flags:
        row["status"] = SUSPECT
        log.warning("suspect: %s", qa.describe(scores, flags, settings))
