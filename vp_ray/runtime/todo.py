"""The rows this run will process, written by the driver as small Parquet shards before Ray starts,
in its one read of the dataset.

Why the driver reads the dataset first, in one streamed pass:

* Resume. A rerun over a finished 10,000-clip output folder must take seconds, start no model and
  move no row through Ray. Rows whose clip folder exists are checked exactly as the pipeline's
  first stage would (the same record, the same fingerprint, every file intact); complete ones go
  straight to the ledger. (The first stage still checks every row it sees.)
* Memory. Ray Data reads a CSV file as one block, and the pipeline splits it into one block per
  row: a 10,000-row file became 10,000 blocks at once, the driver kept a reference to each, and
  the cheap first stage ran through all of them before the GPUs had done 40 clips. Shards of
  ``SHARD_ROWS`` rows are read as the pipeline needs them (``vp_ray.runtime.backpressure``).

Why once: the dataset may be a large file on remote storage. ``write_todo`` checks, counts and
writes its rows in the same pass (``records.plan_dataset``); what later needs the rows again (the ids
that repeat, the resume's check, the dry run) reads the shards. A row whose clip folder exists waits
in ``committed/`` until ``skip_complete``: whether it is complete depends on the duplicate ids, known
only once every row is read.

The shards live in ``<output_dir>/.todo/`` (storage every node reaches, like the rest of
``output_dir``), hold the dataset's own columns (CSV text as bytes, as the first stage expects),
are cut to ``dataset.limit`` and leave out the CSV lines that are not rows (those are failures
already). They are removed when the run ends, and by a run that is refused or only planned.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from vp_ray.clip import outputs, records
from vp_ray.clip.records import DatasetPlan
from vp_ray.clip.rows import DONE_BEFORE
from vp_ray.config import Config, Layout

if TYPE_CHECKING:
    from vp_ray.stages import RunContext

TODO_DIR = ".todo"
COMMITTED_DIR = "committed"  # rows whose clip folder exists, until ``skip_complete`` checks them
SHARD_ROWS = 64


def committed_ids(output_dir: str | os.PathLike) -> set[str]:
    """Names of the clip folders that hold a ``meta.json`` (complete or stale: checked later)."""
    clips = Path(output_dir) / "clips"
    if not clips.is_dir():
        return set()
    return {entry.name for entry in os.scandir(clips)
            if entry.is_dir() and not entry.name.startswith(".")
            and os.path.exists(os.path.join(entry.path, outputs.META))}


def write_todo(cfg: Config, edits: dict[str, dict[str, Any]] | None = None,
               redo: frozenset[str] | None = None) -> DatasetPlan:
    """Read the dataset (its one read) and write its rows within ``dataset.limit`` as shards.

    ``edits``, ``redo``: a review's (``vp_ray.review.requeue``); a requeue run (``redo`` given) writes
    the rows of those clips only. Returns the plan with ``read_path`` (the shards' folder), ``pending``
    (the rows written) and, for a requeue run, ``redo`` cut to the clips found. Rows whose clip folder
    exists wait for ``skip_complete``. A failed read leaves no folder.
    """
    folder = Path(cfg.output_dir) / TODO_DIR
    made = not folder.parent.exists()
    remove_todo(cfg.output_dir)
    folder.mkdir(parents=True)
    committed = set() if redo is not None else committed_ids(cfg.output_dir)
    rows = TodoRows(folder, cfg.dataset.layout, committed, redo)
    try:
        plan = records.plan_dataset(cfg, edits, redo, keep=rows)
    except BaseException:
        rows.close()
        remove_todo(cfg.output_dir, made)
        raise
    rows.close()
    found = {"redo": frozenset(rows.found)} if redo is not None else {}
    return dataclasses.replace(plan, read_path=str(folder), pending=rows.written, **found)


def skip_complete(cfg: Config, run: RunContext, plan: DatasetPlan,
                  add_done: Callable[[dict[str, Any]], None]) -> DatasetPlan:
    """Give each waiting row whose clip is complete to ``add_done``; write the others as shards too.
    Returns the plan with ``pending`` the rows left to run."""
    from vp_ray.stages.read import ReadRecords

    waiting = Path(plan.read_path) / COMMITTED_DIR
    # No log_dir: the driver logs to its own log.
    check = ReadRecords(cfg, plan, dataclasses.replace(run, log_dir=None))
    shards, checked = ShardWriter(Path(plan.read_path)), 0
    for batch in _batches(sorted(waiting.glob("*.parquet"))):
        checked += batch.num_rows
        keep = []
        for index, raw in enumerate(batch.to_pylist()):
            row = check.read_one(raw)
            if row["status"] == DONE_BEFORE:
                add_done(row)
            else:
                keep.append(index)
        shards.add(batch.take(pa.array(keep, pa.int64())))
    shards.close()
    shutil.rmtree(waiting, ignore_errors=True)
    return dataclasses.replace(plan, pending=plan.pending - checked + shards.rows)


def todo_rows(plan: DatasetPlan) -> Iterator[dict[str, Any]]:
    """Every row the dataset gave this run (within ``dataset.limit``, CSV lines that are not rows left
    out), as its reader gave it, from the shards and the rows waiting to be checked."""
    folder = Path(plan.read_path)
    for batch in _batches([*shard_paths(folder), *sorted((folder / COMMITTED_DIR).glob("*.parquet"))]):
        yield from batch.to_pylist()


def shard_paths(folder: str | os.PathLike) -> list[Path]:
    return sorted(Path(folder).glob("*.parquet"))


def remove_todo(output_dir: str | os.PathLike, made: bool = False) -> None:
    """The shards gone; ``output_dir`` too where this run ``made`` it and nothing else is in it (a run
    refused, or only planned, leaves no folder)."""
    shutil.rmtree(Path(output_dir) / TODO_DIR, ignore_errors=True)
    if made:
        try:
            Path(output_dir).rmdir()
        except OSError:  # something else is in it now
            pass


def _batches(paths: Iterable[Path]) -> Iterator[pa.RecordBatch]:
    for path in paths:
        yield from pq.ParquetFile(path).iter_batches()


class TodoRows:
    """``records.plan_dataset``'s rows in: shards of the rows to run, and the rows whose clip folder
    exists apart (``committed/``), or for a requeue run the rows of ``redo`` only."""

    def __init__(self, folder: Path, layout: Layout, committed: set[str], redo: frozenset[str] | None):
        self.folder, self.layout, self.committed, self.redo = folder, layout, committed, redo
        self.shards = ShardWriter(folder)
        self.waiting: pq.ParquetWriter | None = None
        self.waiting_rows = 0
        self.found: set[str] = set()  # the clips of ``redo`` in the dataset

    @property
    def written(self) -> int:
        return self.shards.rows + self.waiting_rows

    def add(self, batch: pa.RecordBatch, ids: list[str | None]) -> None:
        if self.redo is not None:
            keep = [i for i, clip_id in enumerate(ids) if clip_id in self.redo]
            self.found.update(ids[i] for i in keep)
            self.shards.add(_take(batch, keep))
            return
        held = [i for i, clip_id in enumerate(ids) if clip_id in self.committed]
        if not held:
            self.shards.add(batch)
            return
        held_set = set(held)
        self.shards.add(_take(batch, [i for i in range(batch.num_rows) if i not in held_set]))
        if self.waiting is None:
            (self.folder / COMMITTED_DIR).mkdir()
            self.waiting = pq.ParquetWriter(self.folder / COMMITTED_DIR / "rows.parquet", batch.schema)
        self.waiting.write_batch(_take(batch, held))
        self.waiting_rows += len(held)

    def ids(self) -> Iterator[str | None]:
        """The ids of the rows written, read back from the shards (called once the pass is over)."""
        self.close()
        paths = [*shard_paths(self.folder), *sorted((self.folder / COMMITTED_DIR).glob("*.parquet"))]
        for path in paths:
            file = pq.ParquetFile(path)
            columns = [c for c in records.ID_COLUMNS if c in file.schema_arrow.names]
            for batch in file.iter_batches(columns=columns):
                for raw in batch.to_pylist():
                    yield records.row_id(raw, self.layout)

    def close(self) -> None:
        """Write what is held; more rows after this start a new shard."""
        self.shards.close()
        if self.waiting is not None and self.waiting.is_open:
            self.waiting.close()


def _take(batch: pa.RecordBatch, indices: list[int]) -> pa.RecordBatch:
    return batch if len(indices) == batch.num_rows else batch.take(pa.array(indices, pa.int64()))


class ShardWriter:
    """Rows in, ``part-NNNNNN.parquet`` files of ``SHARD_ROWS`` rows out (numbered after those in
    ``folder`` already)."""

    def __init__(self, folder: Path):
        self.folder, self.pieces, self.held, self.rows = folder, [], 0, 0
        self.count = len(shard_paths(folder))

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
