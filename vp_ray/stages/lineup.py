"""The stages of a run, in order, checked, and the run's context that follows from them."""

from __future__ import annotations

from vp_ray.clip.records import DatasetPlan
from vp_ray.config import Config
from vp_ray.errors import ConfigError
from vp_ray.stages import ClipSettings, ClipStage, RunContext
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.stages.prepare import PrepareClips
from vp_ray.stages.read import ReadRecords
from vp_ray.stages.segment import SegmentStage
from vp_ray.stages.write import WriteClips


def pipeline(cfg: Config, plan: DatasetPlan) -> list[type[ClipStage]]:
    """The stages of this run, in order."""
    stages: list[type[ClipStage]] = [ReadRecords, PrepareClips]
    if plan.needs_segmentation:
        stages.append(SegmentStage)
    if not cfg.mask_only:
        stages.append(InpaintClips)
    return stages + [WriteClips]


def preflight(cfg: Config, plan: DatasetPlan) -> list[type[ClipStage]]:
    """The stages of this run, each checked: one ``ConfigError`` names everything that is missing."""
    stages = pipeline(cfg, plan)
    problems = []
    for stage in stages:
        try:
            stage.check(cfg)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("; ".join(problems))
    return stages


def run_context(cfg: Config, plan: DatasetPlan, log_dir: str | None = None) -> RunContext:
    """The context of a run of ``pipeline(cfg, plan)``: the settings each stage reads, the log folder."""
    return RunContext(ClipSettings.of(cfg, pipeline(cfg, plan)), log_dir)
