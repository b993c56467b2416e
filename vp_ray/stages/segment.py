"""The SAM2 stage: records with clicks or a box get their masks; other records pass through."""

from __future__ import annotations

from typing import Any

from vp_ray import gpu, prompts, segment, video, workdir
from vp_ray import masks as mask_io
from vp_ray.records import DatasetPlan
from vp_ray.rows import add_warning, clip_dilate_size
from vp_ray.stages import ClipStage


class SegmentStage(ClipStage):
    """A Ray actor holding one SAM2 video predictor; rows without clicks or a box pass through."""

    name, title = "segment", "segmenting (SAM2)"
    reads = ("sam2", "retry", "dataset", "resize_mode", "dilate_size", "preprocess")
    timing_column = "time_segment_s"
    actor = True

    def __init__(self, cfg: dict[str, Any], plan: DatasetPlan, segmenter: segment.Segmenter | None = None):
        """``segmenter``: one loaded already (the review server's), instead of loading another."""
        super().__init__(cfg, plan)
        self.segmenter = segmenter or segment.load_segmenter(self.cfg["sam2"])
        self.worker = gpu.where()

    @classmethod
    def check(cls, cfg: dict[str, Any]) -> None:
        segment.require_checkpoint(cfg["sam2"])

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["mask_kind"] not in prompts.PROMPT_KINDS:
            return row
        workdir.count_worker_attempt(row["work_dir"], "segment", self.cfg["retry"]["max_worker_deaths"])
        frames = workdir.load_array(row["work_dir"], workdir.FRAMES)
        placement = video.placement_for(row["source_height"], row["source_width"], frames.shape[1],
                                        frames.shape[2], self.cfg["resize_mode"])
        points, box = prompts.parse_prompts(row["points"], row["box"], placement,
                                            self.cfg["dataset"]["prompt_coords"])
        raw_masks = self.segmenter.segment_clip(frames, points, box)
        first_area = int(raw_masks[0].sum())
        if first_area < self.cfg["sam2"]["min_mask_area"]:
            add_warning(row, f"first-frame mask is {'tiny' if first_area else 'empty'} "
                             f"({first_area} px): move the click onto the object")
        raw_masks = mask_io.require_object(raw_masks)
        masks = mask_io.dilate_masks(raw_masks, clip_dilate_size(row, self.cfg["dilate_size"]))
        # preprocess=reference: the original blacks the object out with the undilated mask.
        masked_video = mask_io.black_out(frames, raw_masks) if self.cfg["preprocess"] == "reference" else None
        workdir.store_masks(row["work_dir"], raw_masks, masks, masked_video)
        row.update(mask_area=float(masks.mean()), segment_worker=self.worker)
        return row
