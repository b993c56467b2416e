"""The SAM2 stage: records with clicks or a box get their masks; other records pass through."""

from __future__ import annotations

from typing import Any

from vp_ray.clip import masks as mask_io
from vp_ray.clip import prompts, workdir
from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import add_warning
from vp_ray.config import Config
from vp_ray.models import gpu
from vp_ray.models.sam2.segmenter import Segmenter, load_segmenter, require_checkpoint
from vp_ray.stages import ClipStage, Resources, Role, RunContext


class SegmentStage(ClipStage):
    """A Ray actor holding one SAM2 video predictor; rows without clicks or a box pass through.

    Where the clicks are and how the masks become the inpainter's were decided by the prepare stage
    (the clip's ``ClipInfo``): this stage reads only its own settings."""

    name, title, role = "segment", "segmenting (SAM2)", Role.segment
    reads = ("sam2", "retry")
    timing_column = "time_segment_s"

    def __init__(self, cfg: Config, plan: DatasetPlan, run: RunContext,
                 segmenter: Segmenter | None = None):
        """``segmenter``: one loaded already (the review server's), instead of loading another."""
        super().__init__(cfg, plan, run)
        self.segmenter = segmenter or load_segmenter(self.cfg.sam2)
        self.worker = gpu.where()

    @classmethod
    def resources(cls, cfg: Config) -> Resources:
        # Its GPU share follows sam2.placement (graph.actor_pools); one clip at a time per actor.
        return Resources(num_cpus=cfg.sam2.num_cpus, workers=cfg.sam2.pool_size)

    @classmethod
    def acts_on(cls, row: dict[str, Any]) -> bool:
        return row["mask_kind"] in prompts.PROMPT_KINDS

    @classmethod
    def check(cls, cfg: Config) -> None:
        require_checkpoint(cfg.sam2)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        workdir.count_worker_attempt(row["work_dir"], "segment", self.cfg.retry.max_worker_deaths)
        frames = workdir.load_array(row["work_dir"], workdir.FRAMES)
        info = workdir.load_clip_info(row["work_dir"])
        raw_masks = self.segmenter.segment_clip(frames, info.points, info.box)
        first_area = int(raw_masks[0].sum())
        if first_area < self.cfg.sam2.min_mask_area:
            add_warning(row, f"first-frame mask is {'tiny' if first_area else 'empty'} "
                             f"({first_area} px): move the click onto the object")
        raw_masks = mask_io.require_object(raw_masks)
        masks, masked_video = info.mask_rule.apply(frames, raw_masks)
        workdir.store_masks(row["work_dir"], raw_masks, masks, masked_video)
        row.update(mask_area=float(masks.mean()), segment_worker=self.worker)
        return row
