"""Maps the stage list (``vp_ray.stages.lineup.pipeline``) onto Ray Data and runs it.

    the driver's shards of the rows to do (vp_ray.runtime.todo) -> one row per block -> normalize -> prepare (CPU tasks)
      -> segment (SAM2 actors, only if the dataset has click/box prompts)
      -> inpaint (one actor per GPU, one clip per call) -> write (CPU tasks)
      -> the driver's ledger: manifest.parquet + failures.parquet

Rows carry paths and small fields only; frames travel through each clip's work folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import resource
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.data._internal.execution.backpressure_policy import (
    ENABLED_BACKPRESSURE_POLICIES,
    ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
)
from ray.data.context import AutoscalingConfig

from vp_ray.clip import outputs
from vp_ray.clip.records import DatasetPlan
from vp_ray.config import ClusterConfig, Config, VideoPainterModelConfig
from vp_ray.errors import ConfigError
from vp_ray.models import compile_plan
from vp_ray.review import requeue
from vp_ray.runtime import console, grafana, shards, telemetry, todo
from vp_ray.runtime.backpressure import (
    BOUNDED_KEY,
    PER_ACTOR_KEY,
    PREPARERS_KEY,
    WRITERS_KEY,
    Bounded,
    WorkBound,
)
from vp_ray.runtime.manifest import Ledger
from vp_ray.runtime.sam2_placement import plan_placement
from vp_ray.runtime.sampler import Sampler
from vp_ray.runtime.stats_bound import StatsHistoryBound, stats_note
from vp_ray.stages import ClipSettings, ClipStage, Resources, Role, RunContext, with_role
from vp_ray.stages.lineup import preflight
from vp_ray.stages.read import ragged_row_failure

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    ledger: Ledger | None  # None for a dry run
    interrupted: int  # the signal that stopped the run (SIGINT: Ctrl-C, SIGTERM), 0 if none
    manifest_path: Path | None
    failures_path: Path | None
    report_path: Path | None = None
    dry_run: bool = False


def connect(cluster: ClusterConfig, metadata: dict[str, str] | None = None) -> None:
    """Start or join Ray; ``metadata``: the job's (``job_metadata``; a ``ray job submit``'s own wins)."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": cluster.include_dashboard,
        "job_config": ray.job_config.JobConfig(metadata=metadata),
        "runtime_env": {"env_vars": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}},
        "log_to_driver": cluster.worker_logs_to_console,
        "logging_level": logging.WARNING,
    }
    console.quiet_ray_core()
    address = cluster.address
    if address is None:
        running = running_cluster()
        if running:
            log.info("connecting to the Ray cluster running at %s (RAY_ADDRESS or `ray start`); the "
                     "cluster.num_cpus/num_gpus/object_store_memory settings size only a local one", running)
        address = running or "local"
    if address == "local":
        # Starting a local instance: these size it. (They are not allowed when connecting.)
        kwargs.update(num_cpus=cluster.num_cpus, num_gpus=cluster.num_gpus,
                      object_store_memory=cluster.object_store_memory)
        if cluster.metrics_export_port:
            kwargs["_metrics_export_port"] = cluster.metrics_export_port
        if cluster.include_dashboard:
            kwargs.update(dashboard_host=cluster.dashboard_host, dashboard_port=cluster.dashboard_port)
    context = start_local(kwargs) if address == "local" else ray.init(address=address, **kwargs)
    if getattr(context, "dashboard_url", None):
        # Ray 2.59+ starts local instances with token authentication: the page asks for it.
        log.info("Ray dashboard: http://%s (token: run `ray get-auth-token`)", context.dashboard_url)


# Ray waits a fixed 30 s for a new local instance's raylet to register (ray/_private/node.py, no
# setting); on a machine busy with other work it can take longer, and ray.init fails.
LOCAL_START_TRIES = 3
LOCAL_START_TIMEOUT = "timed out during startup"


def start_local(kwargs: dict[str, Any]):
    """``ray.init`` of a new local instance, tried again where Ray's own start-up wait ran out; the
    processes the failed try started are stopped first (they would compete with the next one)."""
    for attempt in range(1, LOCAL_START_TRIES + 1):
        began = time.time()
        try:
            return ray.init(address="local", **kwargs)
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception for this
            if LOCAL_START_TIMEOUT not in str(error):
                raise
            kill_children_started_since(began)
            ray.shutdown()
            if attempt == LOCAL_START_TRIES:
                raise
            log.warning("Ray's local instance did not start within Ray's 30 s (is the machine busy?); "
                        "starting it again (try %d of %d)", attempt + 1, LOCAL_START_TRIES)


def kill_children_started_since(began: float) -> None:
    """Kill this process's descendants started since ``began`` (Unix seconds; a second's slack for
    the process table's clock)."""
    import psutil

    for process in psutil.Process().children(recursive=True):
        try:
            if process.create_time() >= began - 1:
                process.kill()
        except psutil.NoSuchProcess:
            pass


def local_resources(cluster: ClusterConfig) -> dict[str, float] | None:
    """The CPUs and GPUs of the local Ray instance this run would start, known without starting it
    (as Ray counts them where ``cluster.num_cpus``/``num_gpus`` leave it to detect); None when the run
    joins a Ray that runs already, whose resources are known once connected."""
    from ray._private.accelerators import get_accelerator_manager_for_resource
    from ray._private.utils import get_num_cpus

    address = cluster.address
    if ray.is_initialized() or address not in (None, "local") or (address is None and running_cluster()):
        return None
    gpus = cluster.num_gpus
    if gpus is None:
        gpus = get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators()
    return {"CPU": cluster.num_cpus or get_num_cpus(), "GPU": gpus}


def running_cluster() -> str | None:
    """RAY_ADDRESS, or the cluster `ray start` runs on this machine, as ray.init finds them; but
    a `ray start` killed without `ray stop` leaves its address file behind, and ray.init would
    then wait on a dead cluster: its address counts only while its GCS process lives.
    ``RAY_ADDRESS=local`` means, as for ray.init, a new local instance whatever runs here."""
    from ray._private import services

    if os.environ.get("RAY_ADDRESS") == "local":
        return None
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    recorded = services.find_bootstrap_address(None)
    return recorded if recorded and recorded in services.find_gcs_addresses() else None


def read_dataset(plan: DatasetPlan) -> ray.data.Dataset:
    """The rows left to do: the driver's shards (``vp_ray.runtime.todo``), read as the pipeline needs them."""
    return shards.read_shards(plan.read_path)


def run_name(cfg: Config, output_dir: str | None = None) -> str:
    """What the dashboard calls this run: ``vp-ray pexels -> /runs/pexels``."""
    return f"vp-ray {cfg.dataset.name} -> {output_dir or cfg.output_dir}"


def job_metadata(cfg: Config, plan: DatasetPlan) -> dict[str, str]:
    """The Ray job's metadata: its name (the dashboard's job list shows ``job_name``) and what runs."""
    return {"job_name": run_name(cfg), "dataset": str(plan.path), "model": cfg.model.name,
            "output_dir": str(cfg.output_dir), "clips_to_run": str(plan.pending)}


def pool_size(stage: type[ClipStage], ask: Resources, gpus: float) -> int:
    """An actor stage's pool: as it asks, else one actor per GPU (``gpus``: those left for it), else 1."""
    if ask.workers:
        return int(ask.workers)
    if ask.num_gpus > 0:
        size = int(gpus // ask.num_gpus)
        if size < 1:
            raise ConfigError(f"the {stage.name} stage needs {ask.num_gpus:g} GPU(s) per actor "
                              f"but the Ray cluster has {gpus:g} for it")
        return size
    return 1


def with_compile_workload(cfg: Config, clips: int, pools: dict[type[ClipStage], dict[str, Any]]) -> Config:
    """``cfg`` with the denoising steps each inpainting actor is expected to run, for
    ``model.compile_blocks=auto`` (``compile_plan``): ``clips`` shared among the pool's actors (an
    autoscaling pool: among the one it starts with)."""
    inpainter = next((pool for stage, pool in pools.items() if stage.role is Role.inpaint), None)
    cfg = compile_plan.with_workload(cfg, clips, inpainter["compute"].min_size if inpainter else 1)
    if isinstance(cfg.model, VideoPainterModelConfig) and cfg.model.compile_blocks == "auto":
        log.info("model.compile_blocks=auto: about %d denoising steps per inpainting actor (compiling pays "
                 "back from %d on a GPU)", cfg.model.steps_per_actor, compile_plan.BREAK_EVEN_STEPS)
    return cfg


def check_cpus(cluster_cpus: float, holders: dict[str, float]) -> None:
    """Actor pools hold their CPUs for the whole run; the decode/prepare and write tasks need at
    least one more, or the run waits forever. Fail now, saying which pool takes what."""
    needed = sum(holders.values()) + 1
    if cluster_cpus < needed:
        held = ", ".join(f"{name} {cpus:g}" for name, cpus in holders.items())
        raise ConfigError(f"the Ray cluster has {cluster_cpus:g} CPU(s) but needs at least {needed:g}: "
                          f"the actor pools hold {held} and the prepare/write tasks need 1 more. Start "
                          "Ray with more (cluster.num_cpus; logical CPUs may exceed cores) or lower "
                          "model.num_cpus / sam2.num_cpus / sam2.pool_size")


def actor_resources(num_gpus: float, num_cpus: float) -> dict[str, float]:
    """GPU actors get Ray Data's default of 1 CPU unless asked otherwise (both set is 'experimental')."""
    if num_gpus and num_cpus == 1:
        return {"num_gpus": num_gpus}
    return {"num_gpus": num_gpus, "num_cpus": num_cpus}


def placed_gpus(cfg: Config, stages: list[type[ClipStage]], gpus: float) -> tuple[dict[type[ClipStage], float], float]:
    """GPUs per actor of the segmenting and the inpainting stage once the segmenting one is placed
    beside the other (``sam2_placement``), and the GPUs left for the inpainting pool: none and all
    ``gpus`` in a run without a segmenting stage."""
    segmenter, inpainter = with_role(stages, Role.segment), with_role(stages, Role.inpaint)
    if segmenter is None:
        return {}, gpus
    placement = plan_placement(cfg.sam2, cfg.model.num_gpus, gpus)
    log.info("SAM2 placement: %s", placement)
    placed = {segmenter: placement.sam2_num_gpus}
    if inpainter is not None:
        placed[inpainter] = placement.inpaint_num_gpus
    return placed, placement.inpaint_gpus_available


def actor_pools(cfg: Config, stages: list[type[ClipStage]],
                resources: dict[str, float]) -> dict[type[ClipStage], dict[str, Any]]:
    """Each actor stage's pool and Ray resources (``map_batches`` arguments), from what the stage
    asks for (``ClipStage.resources``), on a cluster of these ``resources``.

    Fails (``ConfigError``) before anything starts if the cluster cannot hold them all at once.
    """
    placed, gpus_left = placed_gpus(cfg, stages, resources.get("GPU", 0))
    pools: dict[type[ClipStage], dict[str, Any]] = {}
    holders: dict[str, float] = {}
    for stage in (stage for stage in stages if stage.role.is_model):
        ask = stage.resources(cfg)
        sizes = {"min_size": 1, "max_size": None} if ask.grows else {"size": pool_size(stage, ask, gpus_left)}
        concurrent = {"max_concurrent_calls_per_actor": ask.concurrent_calls, "enable_true_multi_threading": True} \
            if ask.concurrent_calls > 1 else {}
        compute = ray.data.ActorPoolStrategy(**sizes, max_tasks_in_flight_per_actor=ask.calls_in_flight, **concurrent)
        pools[stage] = {"compute": compute, "memory": ask.memory or None,
                        **actor_resources(placed.get(stage, ask.num_gpus), ask.num_cpus)}
        holders[stage.name] = sizes.get("size", 1) * pools[stage].get("num_cpus", 1)
    check_cpus(resources.get("CPU", 0), holders)
    return pools


def build_dataset(cfg: Config, run: RunContext, plan: DatasetPlan, stages: list[type[ClipStage]],
                  pools: dict[type[ClipStage], dict[str, Any]]) -> ray.data.Dataset:
    plan = dataclasses.replace(plan, ragged=[])  # what the workers need of it
    # Process death (segfault, host-OOM kill, node loss) is left to Ray: Ray Data restarts its
    # actors and retries their calls (max_restarts=-1, max_task_retries=-1, its documented
    # defaults; passing them is deprecated in 2.60). The stages bound the tries per clip
    # (workdir.count_worker_attempt). Everything else is caught per clip inside the stages.
    ds = read_dataset(plan)
    configure_ray_data(cfg, stages, ds.context)
    grow_when_full(ds.context, pools)
    # One clip per block: otherwise a small CSV becomes a few blocks and a single actor
    # would run all the rows of a block one after another while other GPUs idle.
    ds = ds.repartition(target_num_rows_per_block=1)
    arguments = {"cfg": cfg, "plan": plan, "run": run}
    for stage in stages:
        if stage in pools:
            ds = ds.map_batches(stage_actor(stage), batch_size=1, batch_format="pandas",
                                udf_modifying_row_count=False, fn_constructor_kwargs=arguments, **pools[stage])
        else:
            ask = stage.resources(cfg)
            workers = {"compute": ray.data.TaskPoolStrategy(size=ask.workers)} if ask.workers else {}
            ds = ds.map_batches(stage_task(stage), batch_size=1, batch_format="pandas", fn_kwargs=arguments,
                                num_cpus=ask.num_cpus, **workers)
    # The dataset's name on the dashboard (Ray Data puts it in its log files' names: no path).
    ds.set_name(run_name(cfg, Path(cfg.output_dir).name))
    return ds


def grow_when_full(ctx: ray.data.DataContext, pools: dict[type[ClipStage], dict[str, Any]]) -> None:
    """Let a growing actor pool grow once its actors hold all the clips they can.

    Ray Data adds actors when the calls in flight per call slot reach 1.75, a default tuned for 4
    calls in flight to a one-call actor. Our inpainting actors hold 2: one call at a time, that is
    at most 2.0 (the pool grows once nearly every actor has a clip waiting); with overlap_clips both
    run at once, at most 1.0, and the pool never grew (Ray's warning: "will not allow it to scale
    up"). The thresholds keep the default's proportion (1.75 of 2.0) to what an actor can hold."""
    growing = [pool["compute"] for pool in pools.values()
               if isinstance(pool.get("compute"), ray.data.ActorPoolStrategy)
               and pool["compute"].min_size != pool["compute"].max_size]
    if not growing:
        return
    fullest = min(c.max_tasks_in_flight_per_actor / (c.max_concurrent_calls_per_actor or 1) for c in growing)
    scale = fullest / 2.0
    default = AutoscalingConfig()
    ctx.autoscaling_config = dataclasses.replace(
        ctx.autoscaling_config,
        actor_pool_util_upscaling_threshold=default.actor_pool_util_upscaling_threshold * scale,
        actor_pool_util_downscaling_threshold=default.actor_pool_util_downscaling_threshold * scale)


# Ray Data names an operator after the function or class it maps: ``MapBatches(prepare)``, the
# stage's name, as the console, the logs and the metrics call it; an actor pool's workers are then
# ``MapWorker(MapBatches(inpaint))`` on the dashboard.
def operator_name(stage: type[ClipStage]) -> str:
    """The name of the Ray Data operator that runs ``stage`` (``stage_task``/``stage_actor``)."""
    return f"MapBatches({stage.name})"


def stage_task(stage):
    """A task stage as a function named after it."""
    def run(batch, cfg, plan, run):
        return stage(cfg, plan, run)(batch)

    run.__name__ = run.__qualname__ = stage.name
    return run


def stage_actor(stage):
    """An actor stage as a subclass named after it."""
    return type(stage.name, (stage,), {"__module__": stage.__module__, "__qualname__": stage.name})


def bounded_operators(stages: list[type[ClipStage]]) -> Bounded:
    """The operators ``WorkBound`` bounds, by the stages' roles: the feeding stage, the last model
    stage (inpainting; SAM2 in a mask-only run; none in a mask-only run of mask files) and the writer."""
    def name(stage: type[ClipStage] | None) -> str | None:
        return None if stage is None else operator_name(stage)

    models = [stage for stage in stages if stage.role.is_model]
    return Bounded(feed=name(with_role(stages, Role.feed)), model=name(models[-1] if models else None),
                   write=name(with_role(stages, Role.write)))


def configure_ray_data(cfg: Config, stages: list[type[ClipStage]], ctx: ray.data.DataContext) -> None:
    """Settings of this run's dataset (``ctx``: its own copy of Ray Data's context, so that other
    datasets of the process, an evaluation's say, run without the bound below)."""
    cluster = cfg.cluster
    console.quiet_ray_data(cluster.ray_progress_bars)
    ctx.execution_options.preserve_order = False
    # Ray Data's own policies, and the bound on clips waiting in .work around the model (backpressure.py);
    # first, asked about every operator at every step, the bound on Ray Data's per-block history (stats_bound.py).
    ctx.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY,
                   [StatsHistoryBound, *ENABLED_BACKPRESSURE_POLICIES, WorkBound])
    ctx.set_config(BOUNDED_KEY, bounded_operators(stages))
    ctx.set_config(PER_ACTOR_KEY, cluster.prepared_per_actor)
    ctx.set_config(WRITERS_KEY, cluster.write_concurrency)
    ctx.set_config(PREPARERS_KEY, cluster.prepare_concurrency)
    # Ray Data's per-operator resource reservations (shares of the CPUs the actor pools leave) and
    # its byte-based downstream-capacity policy starved the write stage when the actor pools hold
    # most CPUs: the pipeline stalled, and Ray Data then ignores every policy to stay live, so
    # prepare ran past the bound (15 of 16 clips in .work, tests/test_scale.py). Our bound covers
    # every stage in clips; the task pools' sizes bound the CPUs.
    ctx.op_resource_reservation_enabled = False
    ctx.downstream_capacity_backpressure_ratio = None
    # When nothing runs (every actor still loading its model), Ray Data ignores backpressure to
    # stay live, and would prepare the whole dataset meanwhile: start once the actors are up.
    ctx.wait_for_min_actors_s = cluster.actor_start_timeout_s
    ctx.execution_no_progress_timeout_s = cluster.no_progress_timeout_s
    # Replace an actor that dies while loading its model once or twice; a model that cannot
    # load at all still fails the run instead of retrying forever.
    ctx.max_consecutive_actor_init_deaths = 2


def run(cfg: Config, log_dir: str | None = None) -> RunResult:
    """Run the whole job for ``cfg``; ``log_dir``: the run's log folder (default: a new one under
    ``<output_dir>/logs/``)."""
    output_dir = Path(cfg.output_dir)
    # 1. Read the dataset, once (vp_ray.runtime.todo): its checks and counts, its rows as shards in .todo.
    start = time.perf_counter()
    review = requeue.read_review(cfg)
    made = not output_dir.exists()
    plan = todo.write_todo(cfg, review.edits, review.redo)
    # 2. Refuse what cannot run. A local instance's resources are known before it starts: a run it
    # cannot hold (and its dry run) is refused leaving nothing behind. A running cluster's are known
    # once connected.
    try:
        stages = preflight(cfg, plan)
        local = local_resources(cfg.cluster)
        pools = actor_pools(cfg, stages, local) if local else None
        if cfg.dry_run:
            from vp_ray.runtime.dryrun import plan_text

            log.info("%s", plan_text(cfg, plan))
    except BaseException:
        todo.remove_todo(output_dir, made)
        raise
    if cfg.dry_run:
        todo.remove_todo(output_dir, made)
        return RunResult(None, 0, None, None, dry_run=True)
    # 3. The ledger takes the clips complete from an earlier run (or, requeuing, every clip not redone).
    run = RunContext(ClipSettings.of(cfg, stages),
                     log_dir or str(output_dir / "logs" / time.strftime("%Y-%m-%d_%H-%M-%S")))
    log.info("dataset: %d clip(s) from %s%s", plan.total, plan.path,
             "; click/box prompts: SAM2 stage enabled" if plan.needs_segmentation else "")
    stale = outputs.remove_stale_temporaries(output_dir)
    if stale:
        log.info("removed %d partial clip folder(s) of an interrupted run", stale)
    ledger = Ledger(str(output_dir), mask_only=cfg.mask_only, qa=cfg.qa)
    plan = todo.skip_complete(cfg, run, plan, ledger.add)
    if review.redo is not None:  # every other clip stays as it is, its rows too
        log.info("review.requeue: %d clip(s) to redo; %d other clip(s) kept as they are",
                 plan.pending, requeue.carry_the_rest(ledger, cfg.output_dir, plan.redo))
    else:
        for ragged in plan.ragged:
            ledger.add(ragged_row_failure(ragged, plan.columns, cfg.dataset.layout))
        if ledger.done_count:
            log.info("%d clip(s) complete from an earlier run, skipped in %.1f s; %d left to run",
                     ledger.done_count, time.perf_counter() - start, plan.pending)
    if plan.pending == 0:
        todo.remove_todo(output_dir)
        return finish(cfg, RunResult(ledger, 0, *ledger.write()))
    # 4. Ray, and the clips through the pipeline into the ledger.
    connect(cfg.cluster, job_metadata(cfg, plan))
    if pools is None:
        try:
            pools = actor_pools(cfg, stages, ray.cluster_resources())
        except ConfigError:
            todo.remove_todo(output_dir)
            raise
    cfg = with_compile_workload(cfg, plan.pending, pools)
    log.info("logs: %s (one file per worker under workers/; grep a clip id)", run.log_dir)
    metrics = telemetry.RunMetrics(cfg.model.name)
    for row in ledger.table(columns=["status", "failed_stage", "error_type"]).itertuples(index=False):
        metrics.record(row._asdict())
    interrupted, finished = 0, False
    status = console.StatusLine(plan.total, ledger.done_count + ledger.failed_count, cfg.cluster.status_every_s)

    dashboard = grafana.DashboardInstaller()
    dashboard.ensure()

    def on_sample(waiting: dict[str, int]) -> None:
        status.set_waiting(waiting)
        metrics.set_waiting(waiting)
        dashboard.ensure()

    sampler = Sampler(output_dir, cfg.cluster.sample_every_s, on_sample)
    dataset = None
    try:
        with sigterm_as_ctrl_c(), sampler, console.known_ray_lines_dropped():
            dataset = build_dataset(cfg, run, plan, stages, pools)
            for batch in dataset.iter_batches(batch_size=None, batch_format="pandas"):
                for row in batch.to_dict("records"):
                    ledger.add(row)
                    metrics.record(row)
                    status.clip_finished(failed=row["status"] == "failed")
        finished = True
        log.info("driver peak RSS %.0f MiB; at most %d clip(s) waited in .work (samples: %s)",
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, sampler.peak_work_clips,
                 sampler.path)
    except KeyboardInterrupt as stop:
        interrupted = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        log.warning("interrupted: finished clips are kept; run the same command again to resume")
        ray.shutdown()  # no clip may be committed after the manifest is written
    finally:
        status.close()
        if not finished:
            # Clips committed by the write stage whose rows had not reached the driver yet.
            found = ledger.add_committed(run.clip_settings)
            if found:
                log.info("%d committed clip(s) had not reached the driver yet: in the manifest too", found)
        if review.pending:
            finished_rows = ledger.table(columns=["clip_id", "status", "error"])
            requeue.mark_redone(cfg.output_dir, finished_rows[finished_rows.clip_id.isin(review.pending)]
                                .to_dict("records"), review)
        manifest_path, failures_path = ledger.write()
        todo.remove_todo(output_dir)
    if finished:
        write_stats(dataset, Path(run.log_dir))
    return finish(cfg, RunResult(ledger, interrupted, manifest_path, failures_path))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop), taken as Ctrl-C is."""


@contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM raises ``Terminated`` in the driver's main thread, so a run stops as on Ctrl-C: the
    clips done so far in the manifest, the report written. (``ray.init`` puts in a handler of its
    own, which exits at once with code 15 and writes nothing: this one goes in after it.)"""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_stats(dataset: ray.data.Dataset, log_dir: Path) -> None:
    """Ray Data's per-operator statistics of the run, beside the run's logs."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "ray_data_stats.txt").write_text(stats_note() + dataset.stats())
    except Exception as error:  # noqa: BLE001 - statistics must never fail a finished run
        log.warning("could not write Ray Data's stats: %s", error)


def finish(cfg: Config, result: RunResult) -> RunResult:
    """The run's report.html, once its manifest is written (never fails the run)."""
    if cfg.report:
        try:
            from vp_ray.runtime.report import write_report

            result.report_path = write_report(cfg.output_dir, config=cfg, max_clips=cfg.report_max_clips)
        except Exception as error:  # noqa: BLE001 - a report must never fail a finished run
            log.warning("could not write report.html: %s", error)
    return result
