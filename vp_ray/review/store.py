"""``<output_dir>/review.parquet``: a reviewer's verdict and edits of each clip, one row per clip.

It is written only through ``ReviewStore.update``, which holds a lock across threads and processes
(the review server's request handlers, and a run that marks its requeued clips done), reads the file
again, changes the rows it was asked to and writes the whole file under a temporary name renamed into
place (``vp_ray.clip.atomic``). So no writer loses another's rows, a reader never sees half a file, and a
process killed while writing leaves the file as it was before: what was acknowledged is on disk.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vp_ray.clip.atomic import atomic_path

REVIEW_FILE = "review.parquet"
LOCK_FILE = ".review.lock"

ACCEPTED, REJECTED, REQUEUED = "accepted", "rejected", "requeued"
VERDICTS = ("", ACCEPTED, REJECTED, REQUEUED)
# A requeue is pending until a run has redone the clip with its edits (done) or tried and failed.
PENDING, DONE, FAILED = "pending", "done", "failed"

SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("verdict", pa.string()),            # "", accepted, rejected, requeued
    ("note", pa.string()),
    # Edits of the clip's record (null: the dataset's value). Clicks and the box are in the pixels of
    # the clip's frame0_original.png (frame_width x frame_height), the frame the reviewer clicked on.
    ("prompt", pa.string()),
    ("seed", pa.int64()),
    ("dilate_size", pa.int64()),
    ("max_seconds", pa.float64()),
    ("points", pa.string()),             # JSON [[x, y, label], ...], label 1 object, 0 background
    ("box", pa.string()),                # JSON [x0, y0, x1, y1]
    ("frame_width", pa.int64()),
    ("frame_height", pa.int64()),
    ("requeue", pa.string()),            # "", pending, done, failed
    ("requeued_at", pa.string()),        # when the edits were last requeued: which edits a run took
    ("requeue_error", pa.string()),      # why the last redo failed
    ("redone_at", pa.string()),
    ("reviewed_at", pa.string()),
])
COLUMNS = SCHEMA.names
EDIT_COLUMNS = ("prompt", "seed", "dilate_size", "max_seconds", "points", "box", "frame_width", "frame_height")


def blank(clip_id: str) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(clip_id=clip_id, verdict="", note="", requeue="", requeued_at="", requeue_error="",
               redone_at="", reviewed_at="")
    return row


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class ReviewStore:
    """The review file of one output folder."""

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / REVIEW_FILE
        self._thread_lock = threading.Lock()

    def read(self) -> dict[str, dict[str, Any]]:
        """Every clip's row, by clip id (no file: none). A reader needs no lock: the file is whole."""
        try:
            table = pq.read_table(self.path)
        except FileNotFoundError:
            return {}
        rows = {}
        for row in table.to_pylist():
            rows[row["clip_id"]] = {**blank(row["clip_id"]), **{k: v for k, v in row.items() if k in COLUMNS}}
        return rows

    def mtime_ns(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: threads of this process, then processes (an advisory file lock)."""
        with self._thread_lock:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / LOCK_FILE, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, clip_ids: list[str],
               change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
        """Apply ``change`` to the current row of each clip (a blank one if it has none): it returns the
        new row, or None to leave it. Read, changed and written under the lock; returns the rows written."""
        with self._locked():
            rows = self.read()
            changed = {}
            for clip_id in clip_ids:
                new = change(dict(rows.get(clip_id) or blank(clip_id)))
                if new is not None:
                    changed[clip_id] = rows[clip_id] = {**new, "clip_id": clip_id}
            if changed:
                self._write(rows)
            return changed

    def _write(self, rows: dict[str, dict[str, Any]]) -> None:
        table = pa.Table.from_pylist([rows[k] for k in sorted(rows)], schema=SCHEMA)
        with atomic_path(self.path) as tmp:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as written:  # on disk before it is renamed into place
                os.fsync(written.fileno())


def verdicts(output_dir: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """(verdict, requeue state) of each reviewed clip, for the manifest."""
    return {clip_id: (row["verdict"] or "", row["requeue"] or "")
            for clip_id, row in ReviewStore(output_dir).read().items()}
