"""Resume on the driver: rows whose clips are complete in ``output_dir`` never enter the pipeline.

A rerun over a finished 10,000-clip output folder must take seconds, start no model and move
no row through Ray. Before Ray starts, the driver lists the committed clip folders; if some of
the dataset's ids are among them, it streams the dataset once, checks those rows exactly as the
pipeline's first stage would (the same record, the same fingerprint, every file intact), hands
the complete ones to the ledger and writes the rest to ``<output_dir>/.pending.parquet``, which
the pipeline reads instead of the dataset. Without committed clips (a first run) nothing is
rewritten. The pipeline's first stage still checks every row it sees (a clip committed since).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from vp_ray import outputs, records
from vp_ray.atomic import atomic_path
from vp_ray.errors import ClipError
from vp_ray.records import DatasetPlan
from vp_ray.rows import DONE_BEFORE

PENDING_FILE = ".pending.parquet"


def committed_ids(output_dir: str | os.PathLike) -> set[str]:
    """Names of the clip folders that hold a ``meta.json`` (complete or stale: checked later)."""
    clips = Path(output_dir) / "clips"
    if not clips.is_dir():
        return set()
    return {entry.name for entry in os.scandir(clips)
            if entry.is_dir() and not entry.name.startswith(".")
            and os.path.exists(os.path.join(entry.path, outputs.META))}


def skip_done(cfg: dict[str, Any], plan: DatasetPlan, add_done: Callable[[dict[str, Any]], None]) -> DatasetPlan:
    """Give each row whose clip is complete to ``add_done``; return the plan of what is left to run.

    The returned plan's ``pending`` is the number of rows the pipeline must still see (0: nothing
    to run) and its ``read_path``/``read_format`` the file holding them.
    """
    from vp_ray.stages.normalize import NormalizeRecords

    output_dir = Path(cfg["output_dir"])
    remove_pending(output_dir)
    committed = committed_ids(output_dir)
    if not committed:
        return plan
    check = NormalizeRecords(cfg, plan)
    dataset, path = cfg["dataset"], output_dir / PENDING_FILE
    rows = pending = 0
    writer: pq.ParquetWriter | None = None
    with atomic_path(path) as tmp:
        for batch in records.read_batches(plan.path, plan.format):
            keep = []
            for index, raw in enumerate(batch.to_pylist()):
                if 0 <= dataset["limit"] <= rows:
                    break
                rows += 1
                if _maybe_id(raw, dataset["layout"]) in committed:
                    row = check.normalize_one(raw)
                    if row["status"] == DONE_BEFORE:
                        add_done(row)
                        continue
                keep.append(index)
            if keep:
                writer = writer or pq.ParquetWriter(tmp, batch.schema)
                writer.write_batch(batch.take(pa.array(keep)))
                pending += len(keep)
        if writer is None:  # an empty file still has the dataset's columns
            writer = pq.ParquetWriter(tmp, _schema(plan))
        writer.close()
    return dataclasses.replace(plan, read_path=str(path), read_format="parquet", pending=pending)


def remove_pending(output_dir: str | os.PathLike) -> None:
    Path(output_dir, PENDING_FILE).unlink(missing_ok=True)


def _maybe_id(raw: dict[str, Any], layout: str) -> str | None:
    try:
        return records.clip_id_of(records.clean({k: v for k, v in raw.items() if k in records.ID_COLUMNS}),
                                  layout)
    except ClipError:
        return None


def _schema(plan: DatasetPlan) -> pa.Schema:
    if plan.format == "csv":
        return pa.schema([(column, pa.binary()) for column in plan.columns])
    return pq.ParquetDataset(plan.path).schema
