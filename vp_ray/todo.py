"""The rows this run will process, written by the driver as small Parquet shards before Ray starts.

Two reasons to read the dataset on the driver first, in one streamed pass:

* Resume. A rerun over a finished 10,000-clip output folder must take seconds, start no model and
  move no row through Ray. Rows whose clip folder exists are checked exactly as the pipeline's
  first stage would (the same record, the same fingerprint, every file intact); complete ones go
  straight to the ledger. (The first stage still checks every row it sees.)
* Memory. Ray Data reads a CSV file as one block, and the pipeline splits it into one block per
  row: a 10,000-row file became 10,000 blocks at once, the driver kept a reference to each, and
  the cheap first stage ran through all of them before the GPUs had done 40 clips. Shards of
  ``SHARD_ROWS`` rows are read as the pipeline needs them (``vp_ray.backpressure``).

The shards live in ``<output_dir>/.todo/`` (storage every node reaches, like the rest of
``output_dir``), hold the dataset's own columns (CSV text as bytes, as the first stage expects),
are cut to ``dataset.limit`` and leave out the CSV lines that are not rows (those are failures
already). They are removed when the run ends.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from vp_ray import outputs, records
from vp_ray.config import Config
from vp_ray.records import DatasetPlan
from vp_ray.rows import DONE_BEFORE

if TYPE_CHECKING:
    from vp_ray.stages import RunContext

TODO_DIR = ".todo"
SHARD_ROWS = 64


def committed_ids(output_dir: str | os.PathLike) -> set[str]:
    """Names of the clip folders that hold a ``meta.json`` (complete or stale: checked later)."""
    clips = Path(output_dir) / "clips"
    if not clips.is_dir():
        return set()
    return {entry.name for entry in os.scandir(clips)
            if entry.is_dir() and not entry.name.startswith(".")
            and os.path.exists(os.path.join(entry.path, outputs.META))}


def write_todo(cfg: Config, run: RunContext, plan: DatasetPlan,
               add_done: Callable[[dict[str, Any]], None]) -> DatasetPlan:
    """Give each row whose clip is complete to ``add_done``; write the others as shards.

    A requeue run (``review.requeue``) writes the rows of ``plan.redo`` only, unchecked, and nothing
    else. Returns the plan with ``read_path`` (the shards' folder), ``pending`` (how many rows they
    hold; 0: nothing left to run) and, for a requeue run, ``redo`` cut to the clips found.
    """
    if cfg.review.requeue:
        return _write_redo(cfg, plan)
    from vp_ray.stages.normalize import NormalizeRecords

    folder = Path(cfg.output_dir) / TODO_DIR
    remove_todo(cfg.output_dir)
    folder.mkdir(parents=True)
    committed = committed_ids(cfg.output_dir)
    # No log_dir: the driver logs to its own log.
    check = NormalizeRecords(cfg, plan, dataclasses.replace(run, log_dir=None)) if committed else None
    limit, layout = cfg.dataset.limit, cfg.dataset.layout
    shards = ShardWriter(folder)
    rows = 0
    for batch in records.read_batches(plan.path, plan.format):
        keep = []
        for index, raw in enumerate(batch.to_pylist() if check else range(batch.num_rows)):
            if 0 <= limit <= rows:
                break
            rows += 1
            if check and records.row_id(raw, layout) in committed:
                row = check.normalize_one(raw)
                if row["status"] == DONE_BEFORE:
                    add_done(row)
                    continue
            keep.append(index)
        shards.add(batch if len(keep) == batch.num_rows else batch.take(pa.array(keep, pa.int64())))
    shards.close()
    return dataclasses.replace(plan, read_path=str(folder), pending=shards.rows)


def _write_redo(cfg: Config, plan: DatasetPlan) -> DatasetPlan:
    folder = Path(cfg.output_dir) / TODO_DIR
    remove_todo(cfg.output_dir)
    folder.mkdir(parents=True)
    limit, layout = cfg.dataset.limit, cfg.dataset.layout
    shards, found, rows = ShardWriter(folder), set(), 0
    for batch in records.read_batches(plan.path, plan.format):
        keep = []
        for index, raw in enumerate(batch.to_pylist()):
            if 0 <= limit <= rows:
                break
            rows += 1
            clip_id = records.row_id(raw, layout)
            if clip_id in plan.redo:
                keep.append(index)
                found.add(clip_id)
        if keep:
            shards.add(batch.take(pa.array(keep, pa.int64())))
    shards.close()
    return dataclasses.replace(plan, read_path=str(folder), pending=shards.rows, redo=frozenset(found))


def remove_todo(output_dir: str | os.PathLike) -> None:
    shutil.rmtree(Path(output_dir) / TODO_DIR, ignore_errors=True)


class ShardWriter:
    """Rows in, ``part-NNNNNN.parquet`` files of ``SHARD_ROWS`` rows out."""

    def __init__(self, folder: Path):
        self.folder, self.pieces, self.held, self.rows, self.count = folder, [], 0, 0, 0

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.pieces.append(batch)
            self.held += batch.num_rows
        while self.held >= SHARD_ROWS:
            self._write(SHARD_ROWS)

    def close(self) -> None:
        if self.held:
            self._write(self.held)

    def _write(self, size: int) -> None:
        table = pa.Table.from_batches(self.pieces)
        pq.write_table(table.slice(0, size), self.folder / f"part-{self.count:06d}.parquet")
        rest = table.slice(size)
        self.pieces, self.held = rest.to_batches(), rest.num_rows
        self.rows += size
        self.count += 1

