"""Pipeline stages: one callable per stage, each ``pandas.DataFrame -> pandas.DataFrame`` of rows.

Stages know nothing of each other: they read a row (and the files its ``work_dir`` names) and
return the row updated. ``lineup.pipeline`` is the one list of stages, in order, that every runner
uses: ``vp_ray.runtime.graph`` maps it onto Ray Data, ``vp_ray.tools.single`` runs it in-process on one
clip. This module holds what the stages share; ``lineup`` imports the stages, none of them imports it.

Each stage declares what the runners need to know of it, so that nothing finds a stage by its name:
its ``role`` in the run (``graph`` and the backpressure policy go by it), its ``resources`` (what
each of its workers asks Ray for), the settings it ``reads`` (all it is given, and what the
fingerprint of a clip it ``acts_on`` covers: ``ClipSettings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

import pandas as pd

from vp_ray.clip import outputs, runlog
from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import run_stage
from vp_ray.config import Config, output_settings


class Role(Enum):
    """What a stage is to the run."""

    check = "check"      # checks each record: a light task, many at once
    feed = "feed"        # decodes the model's inputs into .work: held back while enough clips wait for the model
    segment = "segment"  # a model making masks from clicks (SAM2 actors), placed beside the inpainting actors
    inpaint = "inpaint"  # the inpainting model (actors, one per GPU)
    write = "write"      # writes a clip's files and empties its .work folder: never held back

    @property
    def is_model(self) -> bool:
        """A model held by long-lived actors: the stage runs as an actor pool."""
        return self in (Role.segment, Role.inpaint)


@dataclass(frozen=True)
class Resources:
    """What each worker of a stage asks Ray for, and how many run (``graph.actor_pools``)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0                 # host memory reserved per worker in bytes (0: none)
    # Tasks at once, or actors in the pool. None: tasks as many as fit; actors one per GPU (or 1).
    workers: int | None = None
    grows: bool = False             # an actor pool that grows onto nodes added mid-run (min 1 actor)
    calls_in_flight: int = 1        # calls queued at an actor, the running one included
    concurrent_calls: int = 1       # calls an actor runs at once (threads)


@dataclass(frozen=True)
class ClipSettings:
    """What a clip's fingerprint covers: the output settings read by the stages that act on it (a
    clip with a mask file skips SAM2, so no ``sam2.*`` setting can make it stale)."""

    settings: dict[str, dict[str, Any]]   # by stage name: the output settings it reads
    stages: tuple[type[ClipStage], ...]

    @classmethod
    def of(cls, cfg: Config, stages: list[type[ClipStage]]) -> ClipSettings:
        return cls({stage.name: output_settings(cfg, stage.reads) for stage in stages}, tuple(stages))

    def for_row(self, row: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for stage in self.stages:
            if stage.acts_on(row):
                settings.update(self.settings[stage.name])
        return settings

    def fingerprint(self, row: dict[str, Any]) -> str:
        return outputs.fingerprint(self.for_row(row), row)


@dataclass(frozen=True)
class RunContext:
    """What the driver decided for this run that its stages need beside the config."""

    clip_settings: ClipSettings
    # The run's log folder: each worker logs to <log_dir>/workers/ (None: no log files, e.g. the
    # driver's own checks).
    log_dir: str | None = None


class StageSettings:
    """The settings a stage declared in ``reads``, and no other: a stage that reads a setting it does
    not declare fails at once, instead of making clips whose fingerprint misses that setting."""

    def __init__(self, cfg: Config, reads: tuple[str, ...], stage: str):
        self.__dict__.update({key: getattr(cfg, key) for key in reads}, _stage=stage)

    def __getattr__(self, name: str) -> Any:   # only called for names not set in __init__
        raise AttributeError(f"the {self.__dict__.get('_stage', '?')} stage reads {name!r} without declaring it "
                             "in its reads")


class ClipStage:
    """One step of the pipeline, applied to each pending row of a batch.

    A stage names itself (``name``: the ``failed_stage`` of its failures), says which config keys
    it reads (``reads``: it is given only those), its ``role`` and its ``resources``. ``check`` runs
    on the driver before anything starts (e.g. missing weights).
    """

    name: ClassVar[str]
    title: ClassVar[str]  # what a person is told while it runs
    role: ClassVar[Role]
    reads: ClassVar[tuple[str, ...]]
    timing_column: ClassVar[str | None] = None

    def __init__(self, cfg: Config, plan: DatasetPlan, run: RunContext):
        runlog.attach(run.log_dir, self.name)
        self.cfg: Config = StageSettings(cfg, self.reads, self.name)  # type: ignore[assignment]
        self.plan = plan
        self.run = run

    @classmethod
    def resources(cls, cfg: Config) -> Resources:
        """What each worker asks for; the default: a light task."""
        return Resources(num_cpus=0.25)

    @classmethod
    def acts_on(cls, row: dict[str, Any]) -> bool:
        """Whether the stage does anything to this clip: one it does not passes by untouched, and is not
        fingerprinted with the stage's settings."""
        return True

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Refuse the run (``ConfigError``) if this stage could not work; the default checks nothing."""

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return run_stage(batch, self.name, self.process, self.timing_column, self.acts_on)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def with_role(stages: list[type[ClipStage]], role: Role) -> type[ClipStage] | None:
    """The run's stage of this role, if it has one."""
    return next((stage for stage in stages if stage.role is role), None)
