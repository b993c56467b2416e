"""Pipeline stages: one callable per stage, each ``pandas.DataFrame -> pandas.DataFrame`` of rows.

Stages know nothing of each other: they read a row (and the files its ``work_dir`` names) and
return the row updated. ``pipeline`` is the one list of stages, in order, that every runner uses:
``vp_ray.graph`` maps it onto Ray Data, ``vp_ray.single`` runs it in-process on one clip.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

from vp_ray import runlog
from vp_ray.errors import ConfigError
from vp_ray.records import DatasetPlan
from vp_ray.rows import run_stage


class ClipStage:
    """One step of the pipeline, applied to each pending row of a batch.

    A stage names itself (``name``: the ``failed_stage`` of its failures), says which config keys
    it reads (``reads``: it is given only those, so a stage cannot depend on a setting unseen), and
    where it runs (``actor``: a long-lived Ray actor that loads a model once; otherwise a task).
    ``check`` runs on the driver before anything starts (e.g. missing weights).
    """

    name: ClassVar[str]
    title: ClassVar[str]  # what a person is told while it runs
    reads: ClassVar[tuple[str, ...]]
    timing_column: ClassVar[str | None] = None
    actor: ClassVar[bool] = False
    # Task stages: the cluster setting that bounds how many run at once (None: a light stage).
    concurrency: ClassVar[str | None] = None

    def __init__(self, cfg: dict[str, Any], plan: DatasetPlan):
        runlog.attach(cfg.get("log_dir"), self.name)
        self.cfg = {key: cfg[key] for key in self.reads}
        self.plan = plan

    @classmethod
    def check(cls, cfg: dict[str, Any]) -> None:
        """Refuse the run (``ConfigError``) if this stage could not work; the default checks nothing."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return run_stage(batch, self.name, self.process, self.timing_column)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def pipeline(cfg: dict[str, Any], plan: DatasetPlan) -> list[type[ClipStage]]:
    """The stages of this run, in order."""
    from vp_ray.stages.inpaint import InpaintClips
    from vp_ray.stages.normalize import NormalizeRecords
    from vp_ray.stages.prepare import PrepareClips
    from vp_ray.stages.segment import SegmentStage
    from vp_ray.stages.write import WriteClips

    stages: list[type[ClipStage]] = [NormalizeRecords, PrepareClips]
    if plan.needs_segmentation:
        stages.append(SegmentStage)
    if not cfg["mask_only"]:
        stages.append(InpaintClips)
    return stages + [WriteClips]


def preflight(cfg: dict[str, Any], plan: DatasetPlan) -> list[type[ClipStage]]:
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
