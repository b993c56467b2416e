"""Assembles and runs the Ray Data pipeline; the only module that knows every stage.

    read CSV/Parquet -> one row per block -> normalize -> prepare (CPU tasks)
      -> segment (SAM2 actors, only if the dataset has click/box prompts)
      -> inpaint (one actor per GPU, one clip per call) -> write (CPU tasks)
      -> the driver's ledger: manifest.parquet + failures.parquet

Rows carry paths and small fields only; frames travel through each clip's work folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import ray
from tqdm import tqdm

from vp_ray import outputs, records
from vp_ray.errors import ConfigError
from vp_ray.manifest import Ledger
from vp_ray.sam2_placement import plan_placement
from vp_ray.stages.inpaint import InpaintClips
from vp_ray.stages.normalize import NormalizeRecords, ragged_row_failure
from vp_ray.stages.prepare import PrepareClips
from vp_ray.stages.write import WriteClips

log = logging.getLogger(__name__)


@dataclass
class DatasetPlan:
    """What preflight learned about the dataset file, without reading its rows into memory."""

    path: str
    format: str
    columns: list[str]
    total: int  # input rows this run accounts for, ragged CSV lines included
    duplicates: dict[str, int]
    ragged: list[records.RaggedRow]  # CSV lines that are not rows: failures before the pipeline

    @property
    def needs_segmentation(self) -> bool:
        return bool({"points", "box"} & set(self.columns))


@dataclass
class RunResult:
    ledger: Ledger
    interrupted: bool
    manifest_path: Path
    failures_path: Path


def plan_dataset(cfg: dict[str, Any]) -> DatasetPlan:
    """Check the dataset before any worker starts: columns, ids, size."""
    dataset = cfg["dataset"]
    fmt, path = dataset["format"], dataset["path"]
    if fmt == "demo":
        from vp_ray.demo import ensure_demo_dataset

        path = str(ensure_demo_dataset(path, num_clips=dataset["demo_num_clips"],
                                       num_frames=dataset["demo_num_frames"], fps=dataset["demo_fps"],
                                       seed=cfg["seed"]))
        fmt = "csv"
    elif fmt not in ("csv", "parquet"):
        raise ConfigError(f"dataset.format {fmt!r} is not csv, parquet or demo")
    columns = records.dataset_columns(path, fmt)
    records.check_columns(columns, dataset["layout"], list(dataset["ignore_columns"]))
    id_rows, ragged = records.read_id_columns(path, fmt, dataset["layout"], columns)
    valid = len(id_rows) if dataset["limit"] < 0 else min(len(id_rows), dataset["limit"])
    if dataset["limit"] >= 0:
        # Only ragged lines before the last row read (valid rows before line j: j - 2 - earlier ragged).
        ragged = [r for i, r in enumerate(ragged) if r.line - 2 - i < valid]
    duplicates = records.duplicate_ids(id_rows[:valid], dataset["layout"])
    return DatasetPlan(path=path, format=fmt, columns=columns, total=valid + len(ragged),
                       duplicates=duplicates, ragged=ragged)


def check_weights(cfg: dict[str, Any], needs_segmentation: bool) -> None:
    """Missing weights fail here, naming every file, before any actor starts loading them."""
    model = cfg["model"]
    if model["name"] in ("videopainter", "tiny") and not cfg["mask_only"] \
            and not model["create_tiny_if_missing"]:
        from vp_ray.models.checkpoint import require_complete

        require_complete(model["base_model_path"], model["branch_path"])
    sam2 = cfg["sam2"]
    if needs_segmentation and not sam2["random_init"] and not os.path.isfile(sam2["checkpoint"]):
        raise ConfigError(f"SAM2 checkpoint not found: {sam2['checkpoint']} (SAM2 turns clicks and boxes "
                          "into masks; see ckpt/README.md, or give masks as files instead)")


def connect(cluster: dict[str, Any]) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": cluster["include_dashboard"],
        "runtime_env": {"env_vars": {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}},
    }
    address = cluster["address"]
    if address in (None, "local") and not (address is None and os.environ.get("RAY_ADDRESS")):
        # Starting a local instance: these size it. (They are not allowed when connecting.)
        kwargs.update(num_cpus=cluster["num_cpus"], num_gpus=cluster["num_gpus"],
                      object_store_memory=cluster["object_store_memory"])
        if cluster["include_dashboard"]:
            kwargs.update(dashboard_host=cluster["dashboard_host"], dashboard_port=cluster["dashboard_port"])
    context = ray.init(address=address, **kwargs)
    if getattr(context, "dashboard_url", None):
        # Ray 2.59+ starts local instances with token authentication: the page asks for it.
        log.info("Ray dashboard: http://%s (token: run `ray get-auth-token`)", context.dashboard_url)


def read_dataset(plan: DatasetPlan) -> ray.data.Dataset:
    if plan.format == "csv":
        # Every column as bytes: our own parser checks types, and bad UTF-8 in one row becomes
        # that row's failure instead of an Arrow error that would fail the whole dataset.
        options = pacsv.ConvertOptions(column_types={c: pa.binary() for c in plan.columns},
                                       check_utf8=False)
        return ray.data.read_csv(plan.path, convert_options=options,
                                 parse_options=pacsv.ParseOptions(invalid_row_handler=records.skip_invalid_row))
    return ray.data.read_parquet(plan.path)


def inpaint_pool_size(cfg: dict[str, Any], gpus: float) -> int:
    """One actor per GPU (``gpus``: those left for inpainting), or as configured."""
    model, cluster = cfg["model"], cfg["cluster"]
    if cluster["inpaint_actors"]:
        return int(cluster["inpaint_actors"])
    if model["num_gpus"] > 0:
        size = int(gpus // model["num_gpus"])
        if size < 1:
            raise ConfigError(f"model {model['name']!r} needs {model['num_gpus']} GPU(s) per actor "
                              f"but the Ray cluster has {gpus:g} for it")
        return size
    return 1


def actor_resources(num_gpus: float, num_cpus: float) -> dict[str, float]:
    """GPU actors get Ray Data's default of 1 CPU unless asked otherwise (both set is 'experimental')."""
    if num_gpus and num_cpus == 1:
        return {"num_gpus": num_gpus}
    return {"num_gpus": num_gpus, "num_cpus": num_cpus}


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


def build_dataset(cfg: dict[str, Any], plan: DatasetPlan) -> ray.data.Dataset:
    cluster, model = cfg["cluster"], cfg["model"]
    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0)
    inpaint_gpus, gpus_for_inpaint = model["num_gpus"], gpus
    holders: dict[str, float] = {}
    if plan.needs_segmentation:
        placement = plan_placement(cfg["sam2"], model["num_gpus"], gpus)
        log.info("SAM2 placement: %s", placement)
        inpaint_gpus, gpus_for_inpaint = placement.inpaint_num_gpus, placement.inpaint_gpus_available
        sam2_resources = actor_resources(placement.sam2_num_gpus, cfg["sam2"]["num_cpus"])
        holders["SAM2"] = cfg["sam2"]["pool_size"] * sam2_resources.get("num_cpus", 1)
    if not cfg["mask_only"]:
        size = 1 if cluster["autoscale"] else inpaint_pool_size(cfg, gpus_for_inpaint)
        inpaint_resources = actor_resources(inpaint_gpus, model["num_cpus"])
        holders["inpainting"] = size * inpaint_resources.get("num_cpus", 1)
    check_cpus(resources.get("CPU", 0), holders)
    # Process death (segfault, host-OOM kill, node loss) is left to Ray: Ray Data restarts its
    # actors and retries their calls (max_restarts=-1, max_task_retries=-1, its documented
    # defaults; passing them is deprecated in 2.60). The stages bound the tries per clip
    # (workdir.count_worker_attempt). Everything else is caught per clip inside the stages.

    ds = read_dataset(plan)
    if cfg["dataset"]["limit"] >= 0:
        ds = ds.limit(cfg["dataset"]["limit"])
    # One clip per block: otherwise a small CSV becomes a few blocks and a single actor
    # would run all the rows of a block one after another while other GPUs idle.
    ds = ds.repartition(target_num_rows_per_block=1)
    base_dir = str(Path(plan.path).resolve().parent)
    ds = ds.map_batches(_stage_task, batch_size=1, batch_format="pandas", num_cpus=0.25,
                        fn_kwargs={"stage": NormalizeRecords, "args": (cfg, base_dir, plan.duplicates)})
    ds = ds.map_batches(_stage_task, batch_size=1, batch_format="pandas",
                        compute=ray.data.TaskPoolStrategy(size=cluster["prepare_concurrency"]),
                        fn_kwargs={"stage": PrepareClips, "args": (cfg,)})
    if plan.needs_segmentation:
        from vp_ray.stages.segment import SegmentStage

        pool = ray.data.ActorPoolStrategy(size=cfg["sam2"]["pool_size"], max_tasks_in_flight_per_actor=1)
        ds = ds.map_batches(SegmentStage, batch_size=1, batch_format="pandas", compute=pool,
                            fn_constructor_kwargs={"cfg": cfg}, udf_modifying_row_count=False,
                            **sam2_resources)
    if not cfg["mask_only"]:
        pool = (ray.data.ActorPoolStrategy(min_size=1, max_size=None, max_tasks_in_flight_per_actor=1)
                if cluster["autoscale"] else
                ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1))
        ds = ds.map_batches(InpaintClips, batch_size=1, batch_format="pandas", compute=pool,
                            fn_constructor_kwargs={"cfg": cfg}, udf_modifying_row_count=False,
                            memory=model["memory"] or None, **inpaint_resources)
    ds = ds.map_batches(_stage_task, batch_size=1, batch_format="pandas",
                        compute=ray.data.TaskPoolStrategy(size=cluster["write_concurrency"]),
                        fn_kwargs={"stage": WriteClips, "args": (cfg,)})
    return ds


def _stage_task(batch, stage, args):
    return stage(*args)(batch)


def configure_ray_data(cfg: dict[str, Any]) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = False
    ctx.execution_no_progress_timeout_s = cfg["cluster"]["no_progress_timeout_s"]
    # Replace an actor that dies while loading its model once or twice; a model that cannot
    # load at all still fails the run instead of retrying forever.
    ctx.max_consecutive_actor_init_deaths = 2


def run(cfg: dict[str, Any]) -> RunResult:
    """Run the whole job for ``cfg`` (a plain, resolved config dict)."""
    output_dir = Path(cfg["output_dir"])
    plan = plan_dataset(cfg)
    check_weights(cfg, plan.needs_segmentation)
    log.info("dataset: %d clip(s) from %s%s", plan.total, plan.path,
             "; click/box prompts: SAM2 stage enabled" if plan.needs_segmentation else "")
    output_dir.mkdir(parents=True, exist_ok=True)
    stale = outputs.remove_stale_temporaries(output_dir)
    if stale:
        log.info("removed %d partial clip folder(s) of an interrupted run", stale)
    connect(cfg["cluster"])
    configure_ray_data(cfg)
    ledger = Ledger(str(output_dir), mask_only=cfg["mask_only"])
    for ragged in plan.ragged:
        ledger.add(ragged_row_failure(ragged, plan.columns, cfg["dataset"]["layout"]))
    interrupted = finished = False
    bar = tqdm(total=plan.total, initial=len(plan.ragged), desc="clips", unit="clip", dynamic_ncols=True)
    try:
        for batch in build_dataset(cfg, plan).iter_batches(batch_size=None, batch_format="pandas"):
            for row in batch.to_dict("records"):
                ledger.add(row)
                bar.update(1)
                bar.set_postfix(ok=len(ledger.done), failed=len(ledger.failed), refresh=False)
        finished = True
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: finished clips are kept; run the same command again to resume")
        ray.shutdown()  # no clip may be committed after the manifest is written
    finally:
        bar.close()
        if not finished:
            # Clips committed by the write stage whose rows had not reached the driver yet.
            found = ledger.add_committed(cfg)
            if found:
                log.info("%d committed clip(s) had not reached the driver yet: in the manifest too", found)
        manifest_path, failures_path = ledger.write()
    return RunResult(ledger, interrupted, manifest_path, failures_path)
