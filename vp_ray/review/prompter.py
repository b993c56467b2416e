"""SAM2 for the review server: a click on frame 0 answered with its mask at once, and on request the
mask tracked over the clip by the batch job's own stages (the mask-only path).

SAM2 runs in the server's process, loaded on the first click (a reviewer who only judges never pays
for it). Each clip's frame-0 image features are kept (a few clips' worth), so a further click runs
only SAM2's prompt encoder and mask decoder. One request uses the model at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vp_ray.clip.records import DatasetPlan
from vp_ray.config import Config

log = logging.getLogger(__name__)
KEPT_FRAMES = 4


class Prompter:
    """``cfg``: the run config the previews follow (its ``sam2`` group, frame settings and
    ``dilate_size``), with ``output_dir`` the folder tracked previews are made in."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._segmenter = None
        self._lock = threading.Lock()
        self._states: OrderedDict[tuple[str, int], dict] = OrderedDict()

    @property
    def loaded(self) -> bool:
        return self._segmenter is not None

    def _load(self):
        if self._segmenter is None:
            from vp_ray.models.sam2.segmenter import load_segmenter

            log.info("loading SAM2 (%s) for the review's clicks", self.cfg.sam2.name)
            self._segmenter = load_segmenter(self.cfg.sam2)
        return self._segmenter

    def first_frame(self, key: tuple[str, int], frame: np.ndarray, points: list, box: list | None,
                    dilate_size: int) -> tuple[np.ndarray, np.ndarray]:
        """SAM2's mask of ``frame`` (RGB, the clip's frame 0 as the model saw it; ``key`` names it, its
        file's modification time included) for these prompts in its pixels, and that mask dilated as
        the inpainter would fill it."""
        from vp_ray.clip.masks import dilate_masks

        with self._lock:
            segmenter = self._load()
            state = self._states.pop(key, None)
            mask, state = segmenter.segment_first_frame(frame, [tuple(p) for p in points],
                                                        tuple(box) if box else None, state)
            self._states[key] = state
            while len(self._states) > KEPT_FRAMES:
                self._states.popitem(last=False)
        return mask, dilate_masks(mask[None], dilate_size)[0]

    def tracked(self, record: dict[str, Any], preview: Path) -> dict[str, Any]:
        """Run the batch job's read, prepare and segment stages on ``record`` (a ``ClipRecord``'s fields)
        in this process, and write its frames with the tracked (dilated) mask tinted to ``preview``
        (an mp4). Returns the final row (failed: ``error`` says why)."""
        from vp_ray.clip import outputs, video, workdir
        from vp_ray.clip.atomic import atomic_path
        from vp_ray.clip.rows import FAILED, new_row, rows_to_frame
        from vp_ray.stages.lineup import run_context
        from vp_ray.stages.prepare import PrepareClips
        from vp_ray.stages.segment import SegmentStage

        cfg = dataclasses.replace(self.cfg, mask_only=True)
        plan = DatasetPlan(path=str(Path(cfg.output_dir) / "-"), format="csv", columns=[], total=1,
                           duplicates={}, ragged=[], prompted=1)
        run = run_context(cfg, plan)
        batch = rows_to_frame([new_row(_record(record))])
        with self._lock:
            segmenter = self._load()
            for stage in (PrepareClips(cfg, plan, run), SegmentStage(cfg, plan, run, segmenter=segmenter)):
                batch = stage(batch)
        row = batch.iloc[0].to_dict()
        try:
            if row["status"] == FAILED:
                return row
            frames = workdir.load_array(row["work_dir"], workdir.FRAMES)
            masks = workdir.load_array(row["work_dir"], workdir.MASKS)
            tinted = np.stack([outputs.overlay(frame, mask) for frame, mask in zip(frames, masks)])
            preview.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(preview) as tmp:
                video.write_video(tmp, tinted, row["out_fps"], crf=cfg.crf)
            return row
        finally:
            if row.get("work_dir"):
                workdir.remove_work_dir(row["work_dir"])


def _record(fields: dict[str, Any]):
    from vp_ray.clip.records import ClipRecord
    from vp_ray.clip.rows import coerce

    known = ClipRecord.__dataclass_fields__
    return ClipRecord(**coerce({k: v for k, v in fields.items() if k in known}))
